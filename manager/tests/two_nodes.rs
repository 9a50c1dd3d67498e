//! Two lanesd processes ("nodes", each in its own netns) sharing one file
//! datastore: hundreds of concurrent ADDs through the shim never produce a
//! duplicate address; when blocks run out a node borrows, and with
//! strictAffinity it refuses with a clear error instead.

mod support;

use std::collections::HashSet;
use std::thread;

use serde_json::Value;
use support::*;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;

fn pods_per_node() -> usize {
    std::env::var("LANES_TEST_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// Run `f` over `items` on `width` threads at a time.
fn parallel<T: Send + 'static, R: Send + 'static>(items: Vec<T>, width: usize, f: fn(T) -> R) -> Vec<R> {
    let mut out = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        let batch: Vec<_> = it.by_ref().take(width).map(|x| thread::spawn(move || f(x))).collect();
        out.extend(batch.into_iter().map(|t| t.join().unwrap()));
    }
    out
}

#[test]
fn two_nodes_concurrent_adds_no_duplicates() {
    if !prerequisites("two_nodes_concurrent_adds_no_duplicates", &["ip"]) {
        return;
    }
    let n = pods_per_node();
    let n1 = Node::new("node1", SEED_POOL);
    let n2 = Node::with_store("node2", &n1.dir, &n1.store);
    let names: Vec<String> = (0..2 * n).map(|_| unique("litc-")).collect();
    parallel(names.clone(), 64, |name| run("ip", &["netns", "add", &name]));
    let _guards: Vec<Netns> = names.iter().map(|name| Netns { name: name.clone() }).collect();
    // All 2×n ADDs in flight at once, half to each daemon.
    let jobs: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let node = if i % 2 == 0 { &n1 } else { &n2 };
            cni_env(node, "ADD", &format!("c{i}"), &format!("/run/netns/{name}"))
        })
        .collect();
    let started = std::time::Instant::now();
    let results = parallel(jobs, 2 * n, |e| shim_exec(None, &e, CONF));
    let took = started.elapsed();
    let mut ips = HashSet::new();
    for (code, out) in &results {
        assert_eq!(*code, 0, "ADD failed: {out}");
        assert!(ips.insert(result_ip(out)), "duplicate address {}", result_ip(out));
    }
    eprintln!(
        "{} concurrent ADDs on two nodes in {took:?}, 0 duplicates",
        results.len()
    );
    // Both daemons agree with what the store holds.
    let (_, show) = n1.lanesctl(&["-o", "json", "ipam", "show", "--allocations"]);
    let v: Value = serde_json::from_str(&show).unwrap();
    let stored: usize = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["used"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(stored, 2 * n);
    // DEL everything concurrently too; the store ends empty.
    let dels: Vec<_> = (0..2 * n)
        .map(|i| cni_env(if i % 2 == 0 { &n1 } else { &n2 }, "DEL", &format!("c{i}"), ""))
        .collect();
    for (code, out) in parallel(dels, 2 * n, |e| shim_exec(None, &e, CONF)) {
        assert_eq!(code, 0, "DEL failed: {out}");
    }
    let (_, show) = n2.lanesctl(&["-o", "json", "ipam", "show"]);
    let v: Value = serde_json::from_str(&show).unwrap();
    assert!(v["blocks"].as_array().unwrap().iter().all(|b| b["used"] == 0), "{show}");
}

#[test]
fn borrowing_and_strict_affinity() {
    if !prerequisites("borrowing_and_strict_affinity", &["ip"]) {
        return;
    }
    // 4 blocks of 16 addresses.
    let pool = "apiVersion: lanes.dev/v1\nkind: IPPool\nmetadata:\n  name: small\nspec:\n  cidr: 10.50.0.0/26\n  blockSize: 28\n";
    let n1 = Node::new("node1", pool);
    let n2 = Node::with_store("node2", &n1.dir, &n1.store);
    let pods: Vec<Netns> = (0..64).map(|_| Netns::new("litb-")).collect();
    let mut ips = HashSet::new();
    // node1 takes 3 blocks' worth (and a bit), node2 fills the last block.
    for (i, p) in pods.iter().enumerate().take(40) {
        let (code, out) = n1.shim(&cni_env(&n1, "ADD", &format!("a{i}"), &p.path()), CONF);
        assert_eq!(code, 0, "{out}");
        assert!(ips.insert(result_ip(&out)));
    }
    for (i, p) in pods.iter().enumerate().skip(40).take(16) {
        let (code, out) = n2.shim(&cni_env(&n2, "ADD", &format!("b{i}"), &p.path()), CONF);
        assert_eq!(code, 0, "{out}");
        assert!(ips.insert(result_ip(&out)));
    }
    // node2's only block is full and none is left: it borrows from node1's.
    let (code, out) = n2.shim(&cni_env(&n2, "ADD", "borrower", &pods[56].path()), CONF);
    assert_eq!(code, 0, "{out}");
    let borrowed = result_ip(&out);
    assert!(ips.insert(borrowed.clone()), "borrowed address is not a duplicate");
    let (_, show) = n2.lanesctl(&["-o", "json", "ipam", "show", "--allocations"]);
    let v: Value = serde_json::from_str(&show).unwrap();
    let alloc = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["allocations"].as_array().unwrap().clone())
        .find(|a| a["ip"] == borrowed.as_str())
        .expect("borrowed allocation listed");
    assert_eq!(
        (alloc["node"].as_str(), alloc["borrowed"].as_bool()),
        (Some("node2"), Some(true))
    );
    // The borrowed /32 is wired on node2 like any other pod.
    assert!(n2.netns.routes().contains(&format!("{borrowed} dev lan")));
    // strictAffinity: refuse instead of borrowing, and say why.
    let strict = format!("{pool}---\napiVersion: projectcalico.org/v3\nkind: IPAMConfig\nmetadata:\n  name: default\nspec:\n  strictAffinity: true\n");
    std::fs::write(n1.store.join("resources.yaml"), strict).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out) = n2.shim(&cni_env(&n2, "ADD", "strict", &pods[57].path()), CONF);
    assert_eq!((code, out["code"].as_u64()), (1, Some(100)), "{out}");
    assert!(out["details"].as_str().unwrap().contains("strictAffinity"), "{out}");
    assert!(!n2
        .netns
        .links()
        .contains(&lanes_manager::dataplane::host_ifname("strict", "eth0")));
}
