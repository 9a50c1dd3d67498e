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
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use sha2::{Digest, Sha256};

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
    let vteps = vteps(&sorted);
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
            out.skipped.push(skip(format!("node address {} is this node's", remote.node_ip)));
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
                    out.skipped.push(skip("node has no VTEP yet (VXLAN MAC or address unknown)".into()));
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
/// order. Nodes are visited by name; one reusing an earlier node's MAC or IP gets an error.
fn vteps<'a>(sorted: &[&'a RemoteBlock]) -> BTreeMap<&'a str, Result<Vtep, String>> {
    let mut first: BTreeMap<&str, Vtep> = BTreeMap::new();
    for r in sorted.iter().filter(|r| r.kind == EncapKind::Vxlan && r.block.addr().is_ipv4()) {
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
        let taken = macs.get(&vtep.mac).map(|n| (n, "MAC")).or(ips.get(&vtep.ip).map(|n| (n, "address")));
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
mod tests {
    use super::*;

    fn remote(block: &str, node: &str, node_ip: &str, mode: EncapMode, kind: EncapKind) -> RemoteBlock {
        let n: u8 = node.trim_start_matches("node").parse().unwrap_or(99);
        RemoteBlock {
            block: block.parse().unwrap(),
            node: node.into(),
            node_ip: node_ip.parse().unwrap(),
            vtep_mac: Some(vtep_mac(node)),
            vtep_ip: Some(Ipv4Addr::new(10, 244, n, 0)),
            mode,
            kind,
        }
    }

    fn local() -> Ipv4Net {
        "192.168.0.11/24".parse().unwrap()
    }

    use EncapKind::{Ipip, Vxlan};
    use EncapMode::{Always, CrossSubnet};

    #[test]
    fn vxlan_always_routes_via_the_vtep_with_fdb_and_neighbour() {
        let plan = plan(local(), &[remote("10.244.2.0/26", "node2", "192.168.0.12", Always, Vxlan)]);
        assert_eq!(
            plan.routes,
            [PlannedRoute {
                dst: "10.244.2.0/26".parse().unwrap(),
                gateway: "10.244.2.0".parse().unwrap(),
                dev: RouteDev::Tunnel(VXLAN_DEVICE.into()),
                onlink: true,
            }]
        );
        let mac = vtep_mac("node2");
        assert_eq!(
            plan.fdb,
            [FdbEntry {
                dev: VXLAN_DEVICE.into(),
                mac,
                dst: "192.168.0.12".parse().unwrap()
            }]
        );
        assert_eq!(
            plan.neighbors,
            [NeighEntry {
                dev: VXLAN_DEVICE.into(),
                ip: "10.244.2.0".parse().unwrap(),
                mac
            }]
        );
        assert!(plan.skipped.is_empty() && plan.uses_tunnel(VXLAN_DEVICE) && !plan.uses_tunnel(IPIP_DEVICE));
    }

    #[test]
    fn cross_subnet_is_native_on_the_same_subnet_only() {
        let plan = plan(
            local(),
            &[
                remote("10.244.3.0/26", "node3", "192.168.0.13", CrossSubnet, Vxlan),
                remote("10.244.2.0/26", "node2", "192.168.2.12", CrossSubnet, Vxlan),
            ],
        );
        let native = &plan.routes[1];
        assert_eq!(native.dst.to_string(), "10.244.3.0/26");
        assert_eq!(native.gateway.to_string(), "192.168.0.13");
        assert_eq!((&native.dev, native.onlink), (&RouteDev::Underlay, false));
        let tunnel = &plan.routes[0];
        assert_eq!(tunnel.gateway.to_string(), "10.244.2.0");
        assert_eq!((&tunnel.dev, tunnel.onlink), (&RouteDev::Tunnel(VXLAN_DEVICE.into()), true));
        // Felix programs every known VTEP, used by a route or not: no churn when modes change.
        assert_eq!(plan.fdb.len(), 2);
        assert_eq!(plan.neighbors.len(), 2);
        assert_eq!(plan.tunnel_devices().into_iter().collect::<Vec<_>>(), [VXLAN_DEVICE]);
    }

    #[test]
    fn ipip_routes_via_the_node_address_without_l2_entries() {
        let plan = plan(
            local(),
            &[
                remote("10.244.2.0/26", "node2", "192.168.2.12", CrossSubnet, Ipip),
                remote("10.244.3.0/26", "node3", "192.168.0.13", CrossSubnet, Ipip),
                remote("10.244.4.0/26", "node4", "192.168.0.14", Always, Ipip),
            ],
        );
        let got: Vec<(String, String, Option<&str>)> = plan
            .routes
            .iter()
            .map(|r| {
                let dev = match &r.dev {
                    RouteDev::Tunnel(d) => Some(d.as_str()),
                    RouteDev::Underlay => None,
                };
                (r.dst.to_string(), r.gateway.to_string(), dev)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("10.244.2.0/26".into(), "192.168.2.12".into(), Some(IPIP_DEVICE)),
                ("10.244.3.0/26".into(), "192.168.0.13".into(), None),
                ("10.244.4.0/26".into(), "192.168.0.14".into(), Some(IPIP_DEVICE)),
            ]
        );
        assert!(plan.routes.iter().all(|r| r.onlink == (r.dev != RouteDev::Underlay)));
        assert!(plan.fdb.is_empty() && plan.neighbors.is_empty());
    }

    #[test]
    fn order_of_inputs_does_not_matter_and_blocks_are_normalised() {
        let mut inputs = vec![
            remote("10.244.2.5/26", "node2", "192.168.2.12", Always, Vxlan),
            remote("10.244.2.64/26", "node2", "192.168.2.12", Always, Vxlan),
            remote("10.244.3.0/26", "node3", "192.168.0.13", CrossSubnet, Vxlan),
            remote("10.244.5.0/26", "node5", "192.168.0.15", CrossSubnet, Ipip),
        ];
        let first = plan(local(), &inputs);
        inputs.reverse();
        assert_eq!(plan(local(), &inputs), first);
        assert_eq!(first.routes[0].dst.to_string(), "10.244.2.0/26");
        assert_eq!(first.fdb.len(), 2, "one FDB entry per node, not per block");
    }

    #[test]
    fn unusable_inputs_are_skipped_with_a_reason() {
        let mut no_vtep = remote("10.244.6.0/26", "node6", "192.168.2.16", Always, Vxlan);
        no_vtep.vtep_mac = None;
        let mut same_mac = remote("10.244.8.0/26", "node8", "192.168.2.18", Always, Vxlan);
        same_mac.vtep_mac = Some(vtep_mac("node7"));
        let plan = plan(
            local(),
            &[
                remote("fd00:10:244::/122", "node2", "192.168.2.12", Always, Vxlan),
                remote("10.244.1.0/26", "node1", "192.168.0.11", Always, Vxlan),
                remote("10.244.2.0/26", "node2", "192.168.2.12", Always, Vxlan),
                remote("10.244.2.0/26", "node9", "192.168.2.19", Always, Vxlan),
                no_vtep,
                remote("10.244.7.0/26", "node7", "192.168.2.17", Always, Vxlan),
                same_mac,
            ],
        );
        let reasons: Vec<(String, &str, &str)> = plan
            .skipped
            .iter()
            .map(|s| (s.block.to_string(), s.node.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "10.244.1.0/26".into(),
                    "node1",
                    "node address 192.168.0.11 is this node's"
                ),
                ("10.244.2.0/26".into(), "node9", "block already routed to node node2"),
                (
                    "10.244.6.0/26".into(),
                    "node6",
                    "node has no VTEP yet (VXLAN MAC or address unknown)"
                ),
                ("10.244.8.0/26".into(), "node8", "VTEP MAC already used by node node7"),
                ("fd00:10:244::/122".into(), "node2", "IPv6 blocks are not encapsulated yet"),
            ]
        );
        let dsts: Vec<String> = plan.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, ["10.244.2.0/26", "10.244.7.0/26"]);
        let vtep_nodes: Vec<String> = plan.fdb.iter().map(|f| f.dst.to_string()).collect();
        assert_eq!(vtep_nodes.len(), 3, "node2, node7 and node9 (its VTEP is valid) : {vtep_nodes:?}");
    }

    #[test]
    fn vtep_mac_is_stable_unicast_and_locally_administered() {
        let mac = vtep_mac("node1");
        assert_eq!(mac, vtep_mac("node1"));
        assert_ne!(mac, vtep_mac("node2"));
        assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}");
        // A fixed vector: changing it would change every node's VTEP on upgrade.
        assert_eq!(crate::dataplane::link::format_mac(&mac), "a6:49:e4:c5:a3:6d");
    }
}
