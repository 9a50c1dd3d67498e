//! The node's allocator: an in-memory view of the blocks this node owns (and
//! the foreign blocks it borrowed from), kept honest by compare-and-swap on
//! each block's revision.
//!
//! Order of preference, as in Calico: a free address in a confirmed block
//! affine to this node; else claim a new block (pending → blackhole → confirmed)
//! while `maxBlocksPerHost` allows; else borrow one address from another
//! node's block unless `strictAffinity`. Every allocation is durably written
//! before the address is returned, so no address is handed out twice, across
//! nodes, restarts or a kill -9 at any point.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::Mutex;

use super::block::{block_key, pool_block_count, pool_blocks, Allocation, Block, BlockState, HandleKey, BLOCKS_PREFIX};
use crate::store::{to_value, Revision, StateStore, StoreError};

/// Bound on compare-and-swap retries for one request; each retry means
/// another writer changed a block we read, so this only trips under a storm.
const MAX_ATTEMPTS: usize = 64;

/// A pool this request may allocate from, as far as IPAM cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolChoice {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
}

/// IPAMConfig knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub strict_affinity: bool,
    /// 0 = unlimited.
    pub max_blocks_per_host: u32,
    pub auto_allocate_blocks: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            strict_affinity: false,
            max_blocks_per_host: 0,
            auto_allocate_blocks: true,
        }
    }
}

/// Side effects a claim needs before it may be confirmed (the blackhole route).
#[async_trait]
pub trait BlockHooks: Send + Sync {
    async fn block_claimed(&self, cidr: IpNet) -> Result<(), String>;
}

/// Hooks that do nothing (tests, and IPAM-only tools).
pub struct NoHooks;

#[async_trait]
impl BlockHooks for NoHooks {
    async fn block_claimed(&self, _cidr: IpNet) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no IP pool to allocate from: {0}")]
    NoPool(String),
    #[error("no free address: {0}")]
    Exhausted(String),
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
    #[error("block {cidr}: {reason}")]
    Claim { cidr: IpNet, reason: String },
    #[error("gave up after {MAX_ATTEMPTS} conflicting writes; try again")]
    Contention,
}

/// What `assign` hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub ip: IpAddr,
    pub block: IpNet,
    /// From another node's block.
    pub borrowed: bool,
    /// The handle already held this address (a repeated ADD).
    pub existing: bool,
}

#[derive(Clone)]
struct Cached {
    block: Block,
    revision: Revision,
}

#[derive(Default)]
struct State {
    /// Blocks affine to this node, plus foreign blocks we hold addresses in.
    blocks: BTreeMap<IpNet, Cached>,
    /// Handle → blocks it holds addresses in.
    handles: HashMap<HandleKey, BTreeSet<IpNet>>,
    /// Per block, where the next search starts.
    hints: HashMap<IpNet, u32>,
}

pub struct Ipam {
    node: String,
    store: Arc<dyn StateStore>,
    hooks: Arc<dyn BlockHooks>,
    state: Mutex<State>,
}

impl Ipam {
    /// Load this node's view from the store and finish any claim a previous
    /// run left pending (program its blackhole, then confirm it).
    pub async fn start(node: &str, store: Arc<dyn StateStore>, hooks: Arc<dyn BlockHooks>) -> Result<Ipam, IpamError> {
        let ipam = Ipam {
            node: node.to_string(),
            store,
            hooks,
            state: Mutex::new(State::default()),
        };
        ipam.resync().await?;
        let pending: Vec<IpNet> = {
            let st = ipam.state.lock().await;
            st.blocks
                .values()
                .filter(|c| c.block.is_affine_to(node) && c.block.state == BlockState::Pending)
                .map(|c| c.block.cidr)
                .collect()
        };
        for cidr in pending {
            let mut st = ipam.state.lock().await;
            ipam.confirm(&mut st, cidr).await?;
        }
        Ok(ipam)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Rebuild the in-memory view from the store.
    pub async fn resync(&self) -> Result<(), IpamError> {
        let entries = self.store.list(BLOCKS_PREFIX).await?;
        let mut fresh = State::default();
        for e in entries {
            let block: Block = e.decode()?;
            let mine = block.is_affine_to(&self.node);
            let mut holds = false;
            for a in block.allocations.values().filter(|a| a.node == self.node) {
                holds = true;
                fresh.handles.entry(a.handle()).or_default().insert(block.cidr);
            }
            if mine || holds {
                fresh.blocks.insert(
                    block.cidr,
                    Cached {
                        block,
                        revision: e.revision,
                    },
                );
            }
        }
        let mut st = self.state.lock().await;
        fresh.hints = std::mem::take(&mut st.hints);
        *st = fresh;
        Ok(())
    }

    /// Give `alloc`'s handle one address from `pools` (in preference order).
    /// A handle that already holds an address gets that address back.
    pub async fn assign(&self, alloc: Allocation, pools: &[PoolChoice], policy: Policy) -> Result<Assigned, IpamError> {
        if pools.is_empty() {
            return Err(IpamError::NoPool(format!(
                "no enabled IP pool matches node {} (check the pools' nodeSelector and disabled)",
                self.node
            )));
        }
        let handle = alloc.handle();
        let mut st = self.state.lock().await;
        if let Some(existing) = self.existing(&st, &handle) {
            return Ok(existing);
        }
        for _ in 0..MAX_ATTEMPTS {
            match self.try_affine(&mut st, &alloc, pools).await? {
                Step::Done(a) => return Ok(a),
                Step::Retry => continue,
                Step::NoSpace => {}
            }
            if self.try_claim(&mut st, pools, policy).await? {
                continue;
            }
            if policy.strict_affinity {
                return Err(IpamError::Exhausted(self.exhausted_reason(&st, pools, policy, true)));
            }
            match self.try_borrow(&mut st, &alloc, pools).await? {
                Step::Done(a) => return Ok(a),
                Step::Retry => continue,
                Step::NoSpace => return Err(IpamError::Exhausted(self.exhausted_reason(&st, pools, policy, false))),
            }
        }
        Err(IpamError::Contention)
    }

    fn existing(&self, st: &State, handle: &HandleKey) -> Option<Assigned> {
        let cidr = st.handles.get(handle)?.iter().next()?;
        let cached = st.blocks.get(cidr)?;
        let (ip, _) = cached.block.held_by(handle).into_iter().next()?;
        Some(Assigned {
            ip,
            block: *cidr,
            borrowed: !cached.block.is_affine_to(&self.node),
            existing: true,
        })
    }

    async fn try_affine(&self, st: &mut State, alloc: &Allocation, pools: &[PoolChoice]) -> Result<Step, IpamError> {
        let candidates: Vec<IpNet> = st
            .blocks
            .values()
            .filter(|c| {
                c.block.is_affine_to(&self.node)
                    && c.block.state == BlockState::Confirmed
                    && c.block.free() > 0
                    && in_pools(pools, &c.block.cidr)
            })
            .map(|c| c.block.cidr)
            .collect();
        // Prefer blocks of the first pool listed, then by address.
        let mut candidates = candidates;
        candidates.sort_by_key(|c| (pool_rank(pools, c), *c));
        match candidates.first() {
            Some(cidr) => self.allocate_in(st, *cidr, alloc).await,
            None => Ok(Step::NoSpace),
        }
    }

    /// CAS one allocation into a cached block; on conflict refresh the block.
    async fn allocate_in(&self, st: &mut State, cidr: IpNet, alloc: &Allocation) -> Result<Step, IpamError> {
        let Some(cached) = st.blocks.get(&cidr).cloned() else {
            return Ok(Step::Retry);
        };
        let hint = st.hints.get(&cidr).copied().unwrap_or(0);
        let mut block = cached.block.clone();
        let Some((ord, ip)) = block.allocate(alloc.clone(), hint) else {
            return Ok(Step::NoSpace);
        };
        let key = block_key(&cidr);
        match self
            .store
            .update(&key, &to_value(&key, &block)?, &cached.revision)
            .await
        {
            Ok(revision) => {
                let borrowed = !block.is_affine_to(&self.node);
                st.blocks.insert(cidr, Cached { block, revision });
                st.hints.insert(cidr, ord.wrapping_add(1));
                st.handles.entry(alloc.handle()).or_default().insert(cidr);
                Ok(Step::Done(Assigned {
                    ip,
                    block: cidr,
                    borrowed,
                    existing: false,
                }))
            }
            Err(e) if e.is_conflict() || matches!(e, StoreError::NotFound { .. }) => {
                self.refresh(st, cidr).await?;
                Ok(Step::Retry)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn refresh(&self, st: &mut State, cidr: IpNet) -> Result<(), IpamError> {
        match self.store.get(&block_key(&cidr)).await? {
            Some(e) => {
                let block: Block = e.decode()?;
                st.blocks.insert(
                    cidr,
                    Cached {
                        block,
                        revision: e.revision,
                    },
                );
            }
            None => {
                st.blocks.remove(&cidr);
            }
        }
        Ok(())
    }

    /// Claim one more block for this node; false when policy or the pools
    /// leave none to claim.
    async fn try_claim(&self, st: &mut State, pools: &[PoolChoice], policy: Policy) -> Result<bool, IpamError> {
        if !policy.auto_allocate_blocks {
            return Ok(false);
        }
        let owned = st.blocks.values().filter(|c| c.block.is_affine_to(&self.node)).count() as u32;
        if policy.max_blocks_per_host != 0 && owned >= policy.max_blocks_per_host {
            return Ok(false);
        }
        let taken: BTreeSet<String> = self.store.list_keys(BLOCKS_PREFIX).await?.into_iter().collect();
        for pool in pools {
            let Some(blocks) = pool_blocks(pool.cidr, pool.block_size) else {
                continue;
            };
            // Start each node at its own offset so nodes rarely race for the
            // same block; wrap around to cover the whole pool.
            let count = pool_block_count(pool.cidr, pool.block_size);
            let all: Vec<IpNet> = blocks.collect();
            let start = (fnv(&self.node) % count.max(1)) as usize % all.len().max(1);
            for cidr in all[start..].iter().chain(all[..start].iter()) {
                if taken.contains(&block_key(cidr)) {
                    continue;
                }
                let block = Block::new(*cidr, &self.node);
                let key = block.key();
                match self.store.create(&key, &to_value(&key, &block)?).await {
                    Ok(revision) => {
                        st.blocks.insert(*cidr, Cached { block, revision });
                        self.confirm(st, *cidr).await?;
                        return Ok(true);
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(false)
    }

    /// Pending → (blackhole programmed) → confirmed. If the hook fails the
    /// claim is withdrawn so the block does not sit unusable.
    async fn confirm(&self, st: &mut State, cidr: IpNet) -> Result<(), IpamError> {
        let key = block_key(&cidr);
        if let Err(reason) = self.hooks.block_claimed(cidr).await {
            if let Some(c) = st.blocks.remove(&cidr) {
                if c.block.allocations.is_empty() {
                    let _ = self.store.delete(&key, &c.revision).await;
                }
            }
            return Err(IpamError::Claim { cidr, reason });
        }
        for _ in 0..MAX_ATTEMPTS {
            let Some(cached) = st.blocks.get(&cidr).cloned() else {
                return Ok(());
            };
            if cached.block.state == BlockState::Confirmed {
                return Ok(());
            }
            let mut block = cached.block.clone();
            block.state = BlockState::Confirmed;
            match self
                .store
                .update(&key, &to_value(&key, &block)?, &cached.revision)
                .await
            {
                Ok(revision) => {
                    st.blocks.insert(cidr, Cached { block, revision });
                    tracing::info!(block = %cidr, "claimed and confirmed block");
                    return Ok(());
                }
                Err(e) if e.is_conflict() => self.refresh(st, cidr).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention)
    }

    async fn try_borrow(&self, st: &mut State, alloc: &Allocation, pools: &[PoolChoice]) -> Result<Step, IpamError> {
        let entries = self.store.list(BLOCKS_PREFIX).await?;
        let mut candidates: Vec<(Block, Revision)> = Vec::new();
        for e in entries {
            let block: Block = e.decode()?;
            if !block.is_affine_to(&self.node)
                && block.state == BlockState::Confirmed
                && block.free() > 0
                && in_pools(pools, &block.cidr)
            {
                candidates.push((block, e.revision));
            }
        }
        candidates.sort_by_key(|(b, _)| (pool_rank(pools, &b.cidr), b.cidr));
        let Some((block, revision)) = candidates.into_iter().next() else {
            return Ok(Step::NoSpace);
        };
        let cidr = block.cidr;
        st.blocks.insert(cidr, Cached { block, revision });
        let step = self.allocate_in(st, cidr, alloc).await?;
        if let Step::Done(ref a) = step {
            tracing::info!(ip = %a.ip, block = %cidr, "borrowed an address from another node's block");
        } else if !st.handles.values().any(|b| b.contains(&cidr)) {
            st.blocks.remove(&cidr);
        }
        Ok(step)
    }

    fn exhausted_reason(&self, st: &State, pools: &[PoolChoice], policy: Policy, strict: bool) -> String {
        let owned = st.blocks.values().filter(|c| c.block.is_affine_to(&self.node)).count();
        let names: Vec<String> = pools.iter().map(|p| format!("{} ({})", p.name, p.cidr)).collect();
        let mut why = format!(
            "node {} has {owned} block(s), all full, in pool(s) {}",
            self.node,
            names.join(", ")
        );
        if policy.max_blocks_per_host != 0 && owned as u32 >= policy.max_blocks_per_host {
            why.push_str(&format!("; maxBlocksPerHost={} reached", policy.max_blocks_per_host));
        } else if !policy.auto_allocate_blocks {
            why.push_str("; autoAllocateBlocks is false");
        } else {
            why.push_str("; no unclaimed block left in the pool(s)");
        }
        if strict {
            why.push_str("; strictAffinity is true, so addresses are not borrowed from other nodes' blocks");
        } else {
            why.push_str("; no other node's block has a free address either");
        }
        why
    }

    /// Release every address `handle` holds. Idempotent: unknown handles
    /// release nothing.
    pub async fn release(&self, handle: &HandleKey) -> Result<Vec<IpAddr>, IpamError> {
        let mut st = self.state.lock().await;
        let Some(cidrs) = st.handles.get(handle).cloned() else {
            return Ok(Vec::new());
        };
        let mut released = Vec::new();
        for cidr in cidrs {
            released.extend(self.release_in(&mut st, cidr, handle).await?);
            if let Some(set) = st.handles.get_mut(handle) {
                set.remove(&cidr);
            }
            let still_used = st.handles.values().any(|b| b.contains(&cidr));
            if let Some(c) = st.blocks.get(&cidr) {
                if !c.block.is_affine_to(&self.node) && !still_used {
                    st.blocks.remove(&cidr);
                }
            }
        }
        st.handles.remove(handle);
        Ok(released)
    }

    async fn release_in(&self, st: &mut State, cidr: IpNet, handle: &HandleKey) -> Result<Vec<IpAddr>, IpamError> {
        let key = block_key(&cidr);
        for _ in 0..MAX_ATTEMPTS {
            let Some(cached) = st.blocks.get(&cidr).cloned() else {
                return Ok(Vec::new());
            };
            let mut block = cached.block.clone();
            let ips = block.release(handle);
            if ips.is_empty() {
                return Ok(ips);
            }
            match self
                .store
                .update(&key, &to_value(&key, &block)?, &cached.revision)
                .await
            {
                Ok(revision) => {
                    st.blocks.insert(cidr, Cached { block, revision });
                    return Ok(ips);
                }
                Err(e) if e.is_conflict() || matches!(e, StoreError::NotFound { .. }) => self.refresh(st, cidr).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention)
    }

    /// The addresses `handle` holds, with their allocation records.
    pub async fn held_by(&self, handle: &HandleKey) -> Vec<(IpAddr, Allocation, IpNet)> {
        let st = self.state.lock().await;
        let Some(cidrs) = st.handles.get(handle) else {
            return Vec::new();
        };
        cidrs
            .iter()
            .filter_map(|c| st.blocks.get(c))
            .flat_map(|c| {
                c.block
                    .held_by(handle)
                    .into_iter()
                    .map(|(ip, a)| (ip, a.clone(), c.block.cidr))
            })
            .collect()
    }

    /// Every address held by this node's workloads.
    pub async fn local_allocations(&self) -> Vec<(IpAddr, Allocation, IpNet)> {
        let st = self.state.lock().await;
        let mut out = Vec::new();
        for c in st.blocks.values() {
            for (ord, a) in &c.block.allocations {
                if a.node == self.node {
                    out.push((c.block.ip_at(*ord), a.clone(), c.block.cidr));
                }
            }
        }
        out
    }

    /// Confirmed blocks affine to this node (what gets a blackhole route).
    pub async fn confirmed_blocks(&self) -> Vec<IpNet> {
        let st = self.state.lock().await;
        st.blocks
            .values()
            .filter(|c| c.block.is_affine_to(&self.node) && c.block.state == BlockState::Confirmed)
            .map(|c| c.block.cidr)
            .collect()
    }

    /// Every block in the store, any node (for `lanesctl ipam show`).
    pub async fn all_blocks(&self) -> Result<Vec<Block>, IpamError> {
        let mut out = Vec::new();
        for e in self.store.list(BLOCKS_PREFIX).await? {
            out.push(e.decode()?);
        }
        Ok(out)
    }
}

enum Step {
    Done(Assigned),
    Retry,
    NoSpace,
}

fn in_pools(pools: &[PoolChoice], block: &IpNet) -> bool {
    pools.iter().any(|p| p.cidr.contains(block))
}

fn pool_rank(pools: &[PoolChoice], block: &IpNet) -> usize {
    pools.iter().position(|p| p.cidr.contains(block)).unwrap_or(usize::MAX)
}

/// FNV-1a: a stable spread of node names over block offsets.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
