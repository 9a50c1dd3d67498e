//! An IPAM block: a CIDR of `blockSize` cut from a pool, affine to one node,
//! holding its allocations. This is the unit stored and compare-and-swapped
//! in the datastore (Calico's `IPAMBlock`), so every allocation is one write.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Store key folder for blocks.
pub const BLOCKS_PREFIX: &str = "ipam/blocks/";

/// A claim is `Pending` until the node has programmed the block's blackhole
/// route, then `Confirmed`; only confirmed blocks are advertised or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BlockState {
    Pending,
    Confirmed,
}

/// Who holds an address and why; kept in the block like Calico's attributes,
/// so ADD costs one datastore write and DEL/GC/restart can find everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub container_id: String,
    pub ifname: String,
    /// The node whose workload holds the address (differs from the block's
    /// affinity when borrowed).
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(default)]
    pub created_unix: i64,
}

impl Allocation {
    pub fn handle(&self) -> HandleKey {
        HandleKey::new(&self.container_id, &self.ifname)
    }
}

/// IPAM handle: one per (container id, interface), as CNI identifies an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleKey {
    pub container_id: String,
    pub ifname: String,
}

impl HandleKey {
    pub fn new(container_id: &str, ifname: &str) -> Self {
        HandleKey {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        }
    }
}

impl std::fmt::Display for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.container_id, self.ifname)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    #[schemars(with = "String")]
    pub cidr: IpNet,
    /// Node name; None for a block nobody owns (not produced today, but a
    /// released affinity must not make the block unreadable).
    pub affinity: Option<String>,
    pub state: BlockState,
    /// Ordinal (offset in the block) → holder.
    // As a string-keyed map: Kubernetes' structural schemas have no patternProperties.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Allocation>")]
    pub allocations: BTreeMap<u32, Allocation>,
}

impl Block {
    pub fn new(cidr: IpNet, node: &str) -> Self {
        Block {
            cidr: cidr.trunc(),
            affinity: Some(node.to_string()),
            state: BlockState::Pending,
            allocations: BTreeMap::new(),
        }
    }

    pub fn key(&self) -> String {
        block_key(&self.cidr)
    }

    /// Number of addresses in the block (capped for huge v6 blocks, which
    /// validation does not allow anyway: blockSize ≥ 116).
    pub fn size(&self) -> u32 {
        let host_bits = u32::from(self.cidr.max_prefix_len() - self.cidr.prefix_len());
        1u32.checked_shl(host_bits).unwrap_or(u32::MAX)
    }

    pub fn used(&self) -> u32 {
        self.allocations.len() as u32
    }

    pub fn free(&self) -> u32 {
        self.size() - self.used()
    }

    pub fn is_affine_to(&self, node: &str) -> bool {
        self.affinity.as_deref() == Some(node)
    }

    /// The address at `ordinal` (0 = the block's network address).
    pub fn ip_at(&self, ordinal: u32) -> IpAddr {
        match self.cidr {
            IpNet::V4(n) => IpAddr::V4((u32::from(n.network()).wrapping_add(ordinal)).into()),
            IpNet::V6(n) => IpAddr::V6((u128::from(n.network()).wrapping_add(u128::from(ordinal))).into()),
        }
    }

    pub fn ordinal_of(&self, ip: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        let off = match (self.cidr, ip) {
            (IpNet::V4(n), IpAddr::V4(a)) => u128::from(u32::from(a) - u32::from(n.network())),
            (IpNet::V6(n), IpAddr::V6(a)) => u128::from(a) - u128::from(n.network()),
            _ => return None,
        };
        u32::try_from(off).ok()
    }

    /// The first free ordinal at or after `hint`, wrapping around. Starting
    /// after the last one handed out avoids giving a just-released address to
    /// the next pod while stale ARP/conntrack entries may still point at it.
    pub fn next_free(&self, hint: u32) -> Option<u32> {
        let size = self.size();
        (0..size)
            .map(|i| (hint.wrapping_add(i)) % size)
            .find(|o| !self.allocations.contains_key(o))
    }

    /// Record `alloc` at the next free ordinal; returns the address.
    pub fn allocate(&mut self, alloc: Allocation, hint: u32) -> Option<(u32, IpAddr)> {
        let ord = self.next_free(hint)?;
        self.allocations.insert(ord, alloc);
        Some((ord, self.ip_at(ord)))
    }

    /// Remove every address held by `handle`; returns them.
    pub fn release(&mut self, handle: &HandleKey) -> Vec<IpAddr> {
        let ords: Vec<u32> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.container_id == handle.container_id && a.ifname == handle.ifname)
            .map(|(o, _)| *o)
            .collect();
        ords.into_iter()
            .map(|o| {
                self.allocations.remove(&o);
                self.ip_at(o)
            })
            .collect()
    }

    /// (address, allocation) pairs held by `handle`.
    pub fn held_by(&self, handle: &HandleKey) -> Vec<(IpAddr, &Allocation)> {
        self.allocations
            .iter()
            .filter(|(_, a)| a.container_id == handle.container_id && a.ifname == handle.ifname)
            .map(|(o, a)| (self.ip_at(*o), a))
            .collect()
    }
}

/// `10.244.1.64/26` → `ipam/blocks/10.244.1.64-26` (v6 colons are fine in keys).
pub fn block_key(cidr: &IpNet) -> String {
    format!("{BLOCKS_PREFIX}{}-{}", cidr.network(), cidr.prefix_len())
}

/// The blocks of `block_size` inside `pool`, in order; None if blockSize
/// does not fit the pool (validation rejects such pools).
pub fn pool_blocks(pool: IpNet, block_size: u8) -> Option<impl Iterator<Item = IpNet>> {
    if block_size < pool.prefix_len() || block_size > pool.max_prefix_len() {
        return None;
    }
    pool.trunc().subnets(block_size).ok()
}

/// How many blocks the pool has (saturating; used for the claim start offset).
pub fn pool_block_count(pool: IpNet, block_size: u8) -> u64 {
    let bits = u32::from(block_size.saturating_sub(pool.prefix_len()));
    1u64.checked_shl(bits).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(cid: &str) -> Allocation {
        Allocation {
            container_id: cid.into(),
            ifname: "eth0".into(),
            node: "n1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_and_ordinals() {
        let b = Block::new("10.244.1.77/26".parse().unwrap(), "n1");
        assert_eq!(b.cidr.to_string(), "10.244.1.64/26");
        assert_eq!(b.size(), 64);
        assert_eq!(b.ip_at(0).to_string(), "10.244.1.64");
        assert_eq!(b.ip_at(63).to_string(), "10.244.1.127");
        assert_eq!(b.ordinal_of("10.244.1.70".parse().unwrap()), Some(6));
        assert_eq!(b.ordinal_of("10.244.1.128".parse().unwrap()), None);
        assert_eq!(b.key(), "ipam/blocks/10.244.1.64-26");
        let v6 = Block::new("fd00:10::/122".parse().unwrap(), "n1");
        assert_eq!(v6.size(), 64);
        assert_eq!(v6.ip_at(5).to_string(), "fd00:10::5");
        assert_eq!(v6.ordinal_of("fd00:10::5".parse().unwrap()), Some(5));
    }

    #[test]
    fn allocate_until_full_then_release() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), "n1");
        let mut got = Vec::new();
        for i in 0..4 {
            got.push(b.allocate(alloc(&format!("c{i}")), 0).unwrap().1.to_string());
        }
        assert_eq!(got, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert!(b.allocate(alloc("c9"), 0).is_none());
        assert_eq!(b.free(), 0);
        let h = HandleKey::new("c1", "eth0");
        assert_eq!(b.held_by(&h).len(), 1);
        assert_eq!(b.release(&h), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(b.release(&h).is_empty());
        assert_eq!(b.allocate(alloc("c5"), 2).unwrap().1.to_string(), "10.0.0.1");
    }

    #[test]
    fn hint_avoids_immediate_reuse() {
        let mut b = Block::new("10.0.0.0/29".parse().unwrap(), "n1");
        b.allocate(alloc("a"), 0);
        b.release(&HandleKey::new("a", "eth0"));
        // Next allocation continues after the last one instead of reusing .0.
        assert_eq!(b.allocate(alloc("b"), 1).unwrap().0, 1);
        assert_eq!(b.next_free(7), Some(7));
    }

    #[test]
    fn pool_cutting() {
        let blocks: Vec<_> = pool_blocks("10.0.0.0/24".parse().unwrap(), 26).unwrap().collect();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[3].to_string(), "10.0.0.192/26");
        assert!(pool_blocks("10.0.0.0/24".parse().unwrap(), 23).is_none());
        assert_eq!(pool_block_count("10.244.0.0/16".parse().unwrap(), 26), 1024);
    }

    #[test]
    fn serde_round_trip() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), "n1");
        b.allocate(alloc("x"), 0);
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["state"], "pending");
        assert_eq!(v["allocations"]["0"]["containerId"], "x");
        assert_eq!(serde_json::from_value::<Block>(v).unwrap(), b);
    }
}
