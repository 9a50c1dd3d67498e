//! Cross-node routes for IPIP and VXLAN pools, as Felix programs them: a pure plan.
//!
//! For encapsulated pools lanesd, not BIRD, owns the routes to other nodes' blocks (see
//! DESIGN.md, "Route ownership"). The daemon turns the datastore's block affinities into
//! [`RemoteBlock`]s; [`plan`] decides, per block, how to reach it:
//!
//! ```text
//! # through the tunnel: mode Always, or CrossSubnet with the node on another subnet
//! ip route replace <block> via <vtep_ip> dev vxlan.lanes onlink proto 76     # VXLAN
//! ip route replace <block> via <node_ip> dev ipip.lanes onlink proto 76      # IPIP
//! # natively: CrossSubnet with the node on our subnet
//! ip route replace <block> via <node_ip> proto 76
//! # VXLAN only, once per remote node that has a VTEP:
//! bridge fdb replace <vtep_mac> dev vxlan.lanes dst <node_ip> self permanent
//! ip neigh replace <vtep_ip> lladdr <vtep_mac> dev vxlan.lanes nud permanent
//! ```
//!
//! [`super::Dataplane::sync_encap`] then makes the kernel match the plan exactly. Everything
//! here is deterministic: the same set of inputs, in any order, gives the same plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use sha2::{Digest, Sha256};

use super::link::format_mac;

/// The VXLAN device lanesd owns (Calico: `vxlan.calico`).
pub const VXLAN_DEVICE: &str = "vxlan.lanes";
/// The IPIP device lanesd owns (Calico uses the fallback `tunl0`).
pub const IPIP_DEVICE: &str = "ipip.lanes";
/// Calico's default VXLAN network identifier.
pub const VXLAN_VNI: u32 = 4096;
/// The IANA VXLAN port, Calico's default.
pub const VXLAN_PORT: u16 = 4789;

/// When a pool encapsulates (`ipipMode` / `vxlanMode`; `Never` pools are BIRD's and not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncapMode {
    Always,
    /// Only towards nodes outside the local node's subnet.
    CrossSubnet,
}

/// Which encapsulation a pool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncapKind {
    Vxlan,
    Ipip,
}

/// One block (or borrowed `/32`) affine to another node, from an encapsulated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBlock {
    pub block: IpNet,
    pub node: String,
    /// The node's underlay address (its BGP / primary interface address).
    pub node_ip: Ipv4Addr,
    /// The MAC of the node's VXLAN device (see [`vtep_mac`]); VXLAN only.
    pub vtep_mac: Option<[u8; 6]>,
    /// The node's tunnel address, the `/32` on its `vxlan.lanes`; VXLAN only.
    pub vtep_ip: Option<Ipv4Addr>,
    pub mode: EncapMode,
    pub kind: EncapKind,
}

/// Where a planned route leaves the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteDev {
    /// A tunnel device by name ([`VXLAN_DEVICE`] or [`IPIP_DEVICE`]).
    Tunnel(String),
    /// Whatever interface the kernel routes the gateway through (the node's uplink).
    Underlay,
}

/// `<dst> via <gateway> [dev <tunnel> onlink] proto 76`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlannedRoute {
    pub dst: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dev: RouteDev,
    /// Set for tunnel routes: the gateway is not on any subnet of the device.
    pub onlink: bool,
}

/// `bridge fdb replace <mac> dev <dev> dst <dst> self permanent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    pub dev: String,
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
}

/// `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighEntry {
    pub dev: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// An input [`plan`] could not use, with the reason (for logs and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub block: IpNet,
    pub node: String,
    pub reason: String,
}

/// What the kernel should hold for the remote blocks, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncapPlan {
    pub routes: Vec<PlannedRoute>,
    pub fdb: Vec<FdbEntry>,
    pub neighbors: Vec<NeighEntry>,
    pub skipped: Vec<Skipped>,
}

impl EncapPlan {
    /// The distinct tunnel devices the routes go through, sorted (each must exist).
    pub fn tunnel_devices(&self) -> BTreeSet<&str> {
        self.routes
            .iter()
            .filter_map(|r| match &r.dev {
                RouteDev::Tunnel(name) => Some(name.as_str()),
                RouteDev::Underlay => None,
            })
            .collect()
    }

    /// Whether any route leaves through the tunnel `dev`.
    pub fn uses_tunnel(&self, dev: &str) -> bool {
        self.tunnel_devices().contains(dev)
    }
}

impl fmt::Display for PlannedRoute {
    /// As `ip route` arguments: `10.244.2.0/26 via 10.244.2.0 dev vxlan.lanes onlink proto 76`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.dst, self.gateway)?;
        if let RouteDev::Tunnel(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        f.write_str(" proto 76")
    }
}

impl fmt::Display for FdbEntry {
    /// As `bridge fdb` arguments: `<mac> dev vxlan.lanes dst <node_ip> self permanent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mac = format_mac(&self.mac);
        write!(f, "{mac} dev {} dst {} self permanent", self.dev, self.dst)
    }
}

impl fmt::Display for NeighEntry {
    /// As `ip neigh` arguments: `<vtep_ip> lladdr <mac> dev vxlan.lanes nud permanent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mac = format_mac(&self.mac);
        write!(f, "{} lladdr {mac} dev {} nud permanent", self.ip, self.dev)
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}: {}", self.block, self.node, self.reason)
    }
}

/// The MAC of a node's VXLAN device: `sha256("lanes-vtep/" + node)`'s first 6 bytes, made a
/// locally administered unicast address. Stable, so a restarted node keeps its VTEP.
pub fn vtep_mac(node: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("lanes-vtep/{node}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// Decides how to reach every remote block; `local` is this node's underlay address with its
/// prefix length, which defines "the same subnet" for [`EncapMode::CrossSubnet`].
///
/// Skipped (and reported): IPv6 blocks (not encapsulated yet), blocks on `local`'s own address,
/// a second node claiming the same block (the first node by name keeps it), and VXLAN tunnel
/// routes to a node without a complete VTEP or whose VTEP MAC or IP another node already uses.
pub fn plan(local: Ipv4Net, remotes: &[RemoteBlock]) -> EncapPlan {
    let mut sorted: Vec<&RemoteBlock> = remotes.iter().collect();
    sorted.sort_by(|a, b| (a.block.trunc(), &a.node, a.node_ip).cmp(&(b.block.trunc(), &b.node, b.node_ip)));
    let vteps = vteps(&sorted, local.addr());
    let mut out = EncapPlan::default();
    let mut owner: BTreeMap<Ipv4Net, &str> = BTreeMap::new();
    for remote in sorted {
        let skip = |reason: String| Skipped {
            block: remote.block.trunc(),
            node: remote.node.clone(),
            reason,
        };
        let IpNet::V4(dst) = remote.block.trunc() else {
            out.skipped.push(skip("IPv6 blocks are not encapsulated yet".into()));
            continue;
        };
        if remote.node_ip == local.addr() {
            out.skipped
                .push(skip(format!("node address {} is this node's", remote.node_ip)));
            continue;
        }
        if let Some(first) = owner.get(&dst) {
            out.skipped.push(skip(format!("block already routed to node {first}")));
            continue;
        }
        let tunnel = remote.mode == EncapMode::Always || !local.contains(&remote.node_ip);
        let route = match (tunnel, remote.kind) {
            (false, _) => PlannedRoute {
                dst,
                gateway: remote.node_ip,
                dev: RouteDev::Underlay,
                onlink: false,
            },
            (true, EncapKind::Ipip) => PlannedRoute {
                dst,
                gateway: remote.node_ip,
                dev: RouteDev::Tunnel(IPIP_DEVICE.into()),
                onlink: true,
            },
            (true, EncapKind::Vxlan) => match vteps.get(remote.node.as_str()) {
                Some(Ok(vtep)) => PlannedRoute {
                    dst,
                    gateway: vtep.ip,
                    dev: RouteDev::Tunnel(VXLAN_DEVICE.into()),
                    onlink: true,
                },
                Some(Err(reason)) => {
                    out.skipped.push(skip(reason.clone()));
                    continue;
                }
                None => {
                    out.skipped
                        .push(skip("node has no VTEP yet (VXLAN MAC or address unknown)".into()));
                    continue;
                }
            },
        };
        owner.insert(dst, &remote.node);
        out.routes.push(route);
    }
    for vtep in vteps.values().filter_map(|v| v.as_ref().ok()) {
        let dev = VXLAN_DEVICE.to_string();
        out.fdb.push(FdbEntry {
            dev: dev.clone(),
            mac: vtep.mac,
            dst: vtep.node_ip,
        });
        out.neighbors.push(NeighEntry {
            dev,
            ip: vtep.ip,
            mac: vtep.mac,
        });
    }
    out.routes.sort();
    out.fdb.sort();
    out.neighbors.sort();
    out
}

/// A remote node's VXLAN endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vtep {
    ip: Ipv4Addr,
    mac: [u8; 6],
    node_ip: Ipv4Addr,
}

/// The VTEP of every VXLAN node with complete VTEP data, taken from its first block in sorted
/// order, except one on `local` (this node). Nodes are visited by name; one reusing an earlier
/// node's MAC or IP gets an error.
fn vteps<'a>(sorted: &[&'a RemoteBlock], local: Ipv4Addr) -> BTreeMap<&'a str, Result<Vtep, String>> {
    let mut first: BTreeMap<&str, Vtep> = BTreeMap::new();
    let usable = |r: &&&RemoteBlock| r.kind == EncapKind::Vxlan && r.block.addr().is_ipv4() && r.node_ip != local;
    for r in sorted.iter().filter(usable) {
        if let (Some(ip), Some(mac)) = (r.vtep_ip, r.vtep_mac) {
            first.entry(&r.node).or_insert(Vtep {
                ip,
                mac,
                node_ip: r.node_ip,
            });
        }
    }
    let (mut macs, mut ips) = (BTreeMap::new(), BTreeMap::new());
    let mut out = BTreeMap::new();
    for (node, vtep) in first {
        let taken = macs
            .get(&vtep.mac)
            .map(|n| (n, "MAC"))
            .or(ips.get(&vtep.ip).map(|n| (n, "address")));
        let checked = match taken {
            Some((other, what)) => Err(format!("VTEP {what} already used by node {other}")),
            None => {
                macs.insert(vtep.mac, node);
                ips.insert(vtep.ip, node);
                Ok(vtep)
            }
        };
        out.insert(node, checked);
    }
    out
}

#[cfg(test)]
mod tests;
