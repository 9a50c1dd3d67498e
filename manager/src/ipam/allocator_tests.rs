use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::store::file::FileStore;

fn pool(cidr: &str, block_size: u8) -> PoolChoice {
    PoolChoice {
        name: format!("pool-{cidr}"),
        cidr: cidr.parse().unwrap(),
        block_size,
    }
}

fn alloc(node: &str, cid: &str) -> Allocation {
    Allocation {
        container_id: cid.into(),
        ifname: "eth0".into(),
        node: node.into(),
        ..Default::default()
    }
}

async fn node(dir: &std::path::Path, name: &str) -> Ipam {
    let store = Arc::new(FileStore::open(dir).unwrap());
    Ipam::start(name, store, Arc::new(NoHooks)).await.unwrap()
}

#[tokio::test]
async fn claims_blocks_and_reuses_handle() {
    let d = tempfile::tempdir().unwrap();
    let n1 = node(d.path(), "n1").await;
    let pools = [pool("10.0.0.0/24", 28)];
    let a = n1.assign(alloc("n1", "c1"), &pools, Policy::default()).await.unwrap();
    assert!(!a.borrowed && !a.existing);
    assert_eq!(a.block.prefix_len(), 28);
    // Same handle again: same address (a repeated ADD).
    let again = n1.assign(alloc("n1", "c1"), &pools, Policy::default()).await.unwrap();
    assert_eq!((again.ip, again.existing), (a.ip, true));
    assert_eq!(n1.confirmed_blocks().await, vec![a.block]);
    // 16 addresses per block: the 17th needs a second block.
    let mut ips = HashSet::from([a.ip]);
    for i in 2..=17 {
        ips.insert(
            n1.assign(alloc("n1", &format!("c{i}")), &pools, Policy::default())
                .await
                .unwrap()
                .ip,
        );
    }
    assert_eq!(ips.len(), 17);
    assert_eq!(n1.confirmed_blocks().await.len(), 2);
}

#[tokio::test]
async fn release_is_idempotent_and_persists() {
    let d = tempfile::tempdir().unwrap();
    let pools = [pool("10.0.0.0/24", 28)];
    let ip = {
        let n1 = node(d.path(), "n1").await;
        let ip = n1
            .assign(alloc("n1", "c1"), &pools, Policy::default())
            .await
            .unwrap()
            .ip;
        n1.assign(alloc("n1", "c2"), &pools, Policy::default()).await.unwrap();
        assert_eq!(n1.release(&HandleKey::new("c1", "eth0")).await.unwrap(), vec![ip]);
        assert!(n1.release(&HandleKey::new("c1", "eth0")).await.unwrap().is_empty());
        ip
    };
    // A restarted allocator sees c2 held and c1 free, and never repeats c2's address.
    let n1 = node(d.path(), "n1").await;
    let held: Vec<_> = n1
        .local_allocations()
        .await
        .into_iter()
        .map(|(_, a, _)| a.container_id)
        .collect();
    assert_eq!(held, vec!["c2"]);
    let c3 = n1.assign(alloc("n1", "c3"), &pools, Policy::default()).await.unwrap();
    assert_ne!(
        Some(c3.ip),
        n1.held_by(&HandleKey::new("c2", "eth0")).await.first().map(|x| x.0)
    );
    assert!(n1.held_by(&HandleKey::new("c1", "eth0")).await.is_empty());
    let _ = ip;
}

#[tokio::test]
async fn borrows_when_pool_is_fully_claimed_unless_strict() {
    let d = tempfile::tempdir().unwrap();
    // 2 blocks of 4 addresses.
    let pools = [pool("10.0.0.0/29", 30)];
    let n1 = node(d.path(), "n1").await;
    let n2 = node(d.path(), "n2").await;
    n1.assign(alloc("n1", "a"), &pools, Policy::default()).await.unwrap();
    n2.assign(alloc("n2", "b"), &pools, Policy::default()).await.unwrap();
    for i in 0..3 {
        n2.assign(alloc("n2", &format!("b{i}")), &pools, Policy::default())
            .await
            .unwrap();
    }
    // n2's block is full and no block is left: strict refuses with a reason…
    let strict = Policy {
        strict_affinity: true,
        ..Policy::default()
    };
    let err = n2
        .assign(alloc("n2", "s"), &pools, strict)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("strictAffinity"), "{err}");
    // …otherwise n2 borrows from n1's block.
    let b = n2
        .assign(alloc("n2", "borrower"), &pools, Policy::default())
        .await
        .unwrap();
    assert!(b.borrowed);
    assert!(!n1.confirmed_blocks().await.is_empty());
    // n1's stale cache hits a conflict, refreshes, and still never duplicates.
    let mut all = HashSet::new();
    for (ip, _, _) in n1
        .local_allocations()
        .await
        .into_iter()
        .chain(n2.local_allocations().await)
    {
        assert!(all.insert(ip), "duplicate {ip}");
    }
    let n1b = n1.assign(alloc("n1", "a2"), &pools, Policy::default()).await.unwrap();
    assert!(all.insert(n1b.ip), "duplicate {}", n1b.ip);
    // Releasing the borrowed address writes into n1's block.
    assert_eq!(
        n2.release(&HandleKey::new("borrower", "eth0")).await.unwrap(),
        vec![b.ip]
    );
    // Everything used: a clear error.
    for i in 0..2 {
        let _ = n1
            .assign(alloc("n1", &format!("f{i}")), &pools, Policy::default())
            .await;
    }
    let err = n1
        .assign(alloc("n1", "zz"), &pools, Policy::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no free address"), "{err}");
}

#[tokio::test]
async fn max_blocks_per_host_and_no_pool() {
    let d = tempfile::tempdir().unwrap();
    let pools = [pool("10.0.0.0/24", 30)];
    let n1 = node(d.path(), "n1").await;
    let policy = Policy {
        max_blocks_per_host: 1,
        strict_affinity: true,
        ..Policy::default()
    };
    for i in 0..4 {
        n1.assign(alloc("n1", &format!("c{i}")), &pools, policy).await.unwrap();
    }
    let err = n1
        .assign(alloc("n1", "c5"), &pools, policy)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("maxBlocksPerHost=1"), "{err}");
    let err = n1.assign(alloc("n1", "c6"), &[], policy).await.unwrap_err().to_string();
    assert!(err.contains("no IP pool"), "{err}");
}

struct CountingHooks(AtomicUsize, bool);

#[async_trait]
impl BlockHooks for CountingHooks {
    async fn block_claimed(&self, _cidr: IpNet) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        if self.1 {
            Err("blackhole route failed".into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn pending_claim_is_confirmed_on_restart_and_failed_hook_withdraws() {
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(d.path()).unwrap());
    // A claim left pending by a crash between create and confirm.
    let b = Block::new("10.0.0.0/28".parse().unwrap(), "n1");
    store
        .create(&b.key(), &serde_json::to_value(&b).unwrap())
        .await
        .unwrap();
    let hooks = Arc::new(CountingHooks(AtomicUsize::new(0), false));
    let n1 = Ipam::start("n1", store.clone(), hooks.clone()).await.unwrap();
    assert_eq!(hooks.0.load(Ordering::SeqCst), 1);
    assert_eq!(n1.confirmed_blocks().await, vec![b.cidr]);
    // A hook failure withdraws the fresh claim and reports the block.
    let bad = Ipam::start("n2", store.clone(), Arc::new(CountingHooks(AtomicUsize::new(0), true)))
        .await
        .unwrap();
    let err = bad
        .assign(alloc("n2", "x"), &[pool("10.1.0.0/24", 28)], Policy::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("blackhole route failed"), "{err}");
    assert_eq!(store.list_keys(BLOCKS_PREFIX).await.unwrap().len(), 1);
}

/// Two allocators (as two lanesd processes) hammering one store with
/// concurrent requests, with borrowing at the end: no address twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_concurrent_no_duplicates() {
    let d = tempfile::tempdir().unwrap();
    let pools = [pool("10.0.0.0/26", 29)];
    let n1 = Arc::new(node(d.path(), "n1").await);
    let n2 = Arc::new(node(d.path(), "n2").await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (n, name) = if i % 2 == 0 {
            (n1.clone(), "n1")
        } else {
            (n2.clone(), "n2")
        };
        let pools = pools.clone();
        tasks.push(tokio::spawn(async move {
            n.assign(alloc(name, &format!("c{i}")), &pools, Policy::default()).await
        }));
    }
    let mut ips = HashSet::new();
    for t in tasks {
        let a = t.await.unwrap().unwrap();
        assert!(ips.insert(a.ip), "duplicate {}", a.ip);
    }
    assert_eq!(ips.len(), 64);
    assert!(n1
        .assign(alloc("n1", "extra"), &pools, Policy::default())
        .await
        .is_err());
}
