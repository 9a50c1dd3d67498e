//! The desired state of this node's BGP speaker: what [`super::desired::build`] computes from
//! the resources and what [`super::render::render`] turns into a BIRD config. Plain data, with
//! no reference to the resource types, so it can be built by hand in tests.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Everything BIRD needs to know, already resolved (passwords are the secrets themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// `router id`: the node's IPv4 address.
    pub router_id: Ipv4Addr,
    /// The node's AS: Node `spec.bgp.asNumber`, else BGPConfiguration `asNumber`, else 64512.
    pub local_as: u32,
    /// Listen only on this address (`strict bind`); `None`: all addresses.
    pub listen_address: Option<IpAddr>,
    pub listen_port: u16,
    pub log_severity: LogSeverity,
    /// Set when this node is a route reflector.
    pub rr_cluster_id: Option<Ipv4Addr>,
    /// Sorted by name; names and (address, port) pairs are unique.
    pub peers: Vec<Peer>,
    /// Prefixes this node originates into BGP, sorted, one entry per prefix.
    pub originate: Vec<Origination>,
    /// Pools whose cross-node routes lanesd programs itself (IPIP/VXLAN): BIRD never exports
    /// routes inside them to the kernel.
    pub kernel_exclude: Vec<IpNet>,
    /// This node's blocks: routes for them (or inside them, except single addresses, which are
    /// borrowed ones living on other nodes) are never exported to the kernel.
    pub own_blocks: Vec<IpNet>,
    /// /32 (/128) static routes to peers through a gateway (BGPPeer `reachableBy`), exported to
    /// the kernel only.
    pub reachable: Vec<(IpAddr, IpAddr)>,
    /// Interfaces whose addresses BIRD does not read as connected routes (`ignoredInterfaces`).
    pub ignored_interfaces: Vec<String>,
    /// Peerings or settings that were left out, and why (for logs and status).
    pub notes: Vec<String>,
}

impl Desired {
    /// Checks what BIRD (or the kernel) would refuse or misread, so that a state that passes
    /// renders to a config `bird -p` accepts. [`super::build`] only returns states that pass.
    pub fn validate(&self) -> Result<(), String> {
        if self.local_as == 0 || self.listen_port == 0 {
            return Err("AS number and listen port must not be 0".into());
        }
        let mut names = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        for p in &self.peers {
            let name = &p.name;
            let symbol = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !symbol {
                return Err(format!("peer {name}: not a valid BIRD protocol name"));
            }
            if !names.insert(name) || !endpoints.insert((p.address, p.port)) {
                return Err(format!("peer {name}: duplicate name or address"));
            }
            if let Some(pw) = &p.password {
                if pw.is_empty() || pw.len() > 80 || pw.contains(['"', '\n', '\r', '\0']) {
                    return Err(format!(
                        "peer {name}: a password must be 1 to 80 bytes without double quotes or newlines"
                    ));
                }
            }
            let same_family = |ip: &IpAddr| ip.is_ipv4() == p.address.is_ipv4();
            if !p.source_address.iter().chain(&p.reachable_by).all(same_family) {
                return Err(format!(
                    "peer {name}: source address or reachableBy of another IP family"
                ));
            }
            let timers = p.keepalive.is_none_or(|k| k >= 1 && p.hold.is_none_or(|h| k <= h))
                && p.hold.is_none_or(|h| h == 0 || (3..=65535).contains(&h))
                && p.graceful_restart_time.is_none_or(|t| t <= 4095);
            if p.port == 0 || p.local_as == 0 || p.remote_as == 0 || !timers {
                return Err(format!("peer {name}: port, AS number or timers out of range"));
            }
            if p.rr_client && self.rr_cluster_id.is_none() {
                return Err(format!("peer {name}: rr client, but this node has no cluster ID"));
            }
        }
        let unquotable = |s: &String| s.is_empty() || s.contains(['"', '\n', '\0']);
        if let Some(name) = self.ignored_interfaces.iter().find(|s| unquotable(s)) {
            return Err(format!("ignored interface {name:?} cannot be written in a BIRD config"));
        }
        if let Some((peer, gw)) = self.reachable.iter().find(|(p, g)| p.is_ipv4() != g.is_ipv4()) {
            return Err(format!("reachableBy {gw} for {peer}: not the same IP family"));
        }
        Ok(())
    }
}

/// BIRD's log level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogSeverity {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Fatal,
}

/// One BGP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The BIRD protocol name, e.g. `Mesh_192_168_0_12`, `Node_192_168_0_1`,
    /// `Global_192_168_0_1_port_1790`.
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub local_as: u32,
    pub kind: PeerKind,
    /// Wait for the peer to connect (one side of each node-to-node pair).
    pub passive: bool,
    /// We are a route reflector and this peer is our client.
    pub rr_client: bool,
    /// The TCP MD5 password itself.
    pub password: Option<String>,
    pub source_address: Option<IpAddr>,
    /// Seconds; hold time is `hold` (three times keepalive when derived from `keepaliveTime`).
    pub keepalive: Option<u32>,
    pub hold: Option<u32>,
    /// GTSM with this many hops.
    pub ttl_security: Option<u8>,
    pub next_hop: NextHopMode,
    /// Seconds announced in the graceful-restart capability.
    pub graceful_restart_time: Option<u32>,
    /// Allow the peer to be more than one hop away (Calico sets it on every session).
    pub multihop: bool,
    /// BGPPeer `reachableBy`: a gateway for a static route to the peer.
    pub reachable_by: Option<IpAddr>,
}

impl Peer {
    /// A session with BIRD's defaults, named by [`protocol_name`].
    pub fn new(kind: PeerKind, address: IpAddr, port: u16, remote_as: u32, local_as: u32) -> Self {
        Peer {
            name: protocol_name(kind, address, port),
            address,
            port,
            remote_as,
            local_as,
            kind,
            passive: false,
            rr_client: false,
            password: None,
            source_address: None,
            keepalive: None,
            hold: None,
            ttl_security: None,
            next_hop: NextHopMode::Auto,
            graceful_restart_time: None,
            multihop: true,
            reachable_by: None,
        }
    }

    pub fn is_ebgp(&self) -> bool {
        self.remote_as != self.local_as
    }
}

/// The BIRD protocol name Calico gives a session: `Mesh_192_168_0_12`, `Node_fd00__1`,
/// `Global_10_0_0_1_port_1790` (the port only for non-mesh peers off port 179).
pub fn protocol_name(kind: PeerKind, address: IpAddr, port: u16) -> String {
    let id: String = address
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match (kind, port) {
        (PeerKind::Mesh, _) | (_, 179) => format!("{}_{id}", kind.prefix()),
        _ => format!("{}_{id}_port_{port}", kind.prefix()),
    }
}

/// Why a session exists, as `calicoctl node status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    /// Node-to-node mesh.
    Mesh,
    /// A BGPPeer with `node` or `nodeSelector` (including its reverse peerings).
    NodeSpecific,
    /// A BGPPeer for every node.
    Global,
}

impl PeerKind {
    /// The BIRD protocol name prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            PeerKind::Mesh => "Mesh",
            PeerKind::NodeSpecific => "Node",
            PeerKind::Global => "Global",
        }
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::NodeSpecific => "node specific",
            PeerKind::Global => "global",
        })
    }
}

/// What BIRD does to NEXT_HOP on routes sent to the peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NextHopMode {
    /// BIRD's default: self for eBGP, unchanged for iBGP.
    #[default]
    Auto,
    /// `next hop self`.
    SelfHop,
    /// `next hop keep`.
    Keep,
}

/// A BGP community attached to an originated prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    /// RFC 1997 `aa:nn`.
    Standard(u16, u16),
    /// RFC 8092 `aa:nn:mm`.
    Large(u32, u32, u32),
}

/// A prefix this node announces. It exists in BIRD only as a blackhole in the static protocol
/// `lanes_originate` and goes to BGP, never to the kernel (lanesd owns the kernel's blackholes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origination {
    pub prefix: IpNet,
    /// Sorted, without duplicates.
    pub communities: Vec<Community>,
    pub kind: OriginKind,
}

/// Why a prefix is originated. When several reasons apply, the first in this order is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OriginKind {
    /// A confirmed block affine to this node (the aggregate).
    Block,
    /// A local pod's /32 (/128) under its block, for `bgpExport: aggregate+pods` pools.
    Pod,
    /// A borrowed /32 (/128): a local pod's address from another node's block.
    Borrowed,
    /// `serviceClusterIPs`, from every node.
    ServiceClusterIp,
    /// `serviceExternalIPs`, from every node.
    ServiceExternalIp,
}

impl fmt::Display for OriginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginKind::Block => "block",
            OriginKind::Borrowed => "borrowed address",
            OriginKind::Pod => "pod address",
            OriginKind::ServiceClusterIp => "service cluster IPs",
            OriginKind::ServiceExternalIp => "service external IPs",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_defaults_and_names() {
        let p = Peer::new(PeerKind::NodeSpecific, "10.0.0.1".parse().unwrap(), 179, 65000, 64512);
        assert!(p.is_ebgp() && p.multihop && !p.passive);
        assert_eq!((p.name.as_str(), p.next_hop), ("Node_10_0_0_1", NextHopMode::Auto));
        let name = |kind, ip: &str, port| protocol_name(kind, ip.parse().unwrap(), port);
        assert_eq!(name(PeerKind::Global, "10.0.0.1", 1790), "Global_10_0_0_1_port_1790");
        assert_eq!(name(PeerKind::Mesh, "fd00::1", 1790), "Mesh_fd00__1");
        assert_eq!(PeerKind::Mesh.to_string(), "node-to-node mesh");
        assert!(OriginKind::Block < OriginKind::ServiceClusterIp);
        assert_eq!(OriginKind::Borrowed.to_string(), "borrowed address");
    }

    #[test]
    fn validation_catches_what_bird_would_refuse() {
        let peer = Peer::new(PeerKind::Mesh, "10.0.0.2".parse().unwrap(), 179, 64512, 64512);
        let desired = Desired {
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            local_as: 64512,
            listen_address: None,
            listen_port: 179,
            log_severity: LogSeverity::Info,
            rr_cluster_id: None,
            peers: vec![peer],
            originate: Vec::new(),
            kernel_exclude: Vec::new(),
            own_blocks: Vec::new(),
            reachable: Vec::new(),
            ignored_interfaces: Vec::new(),
            notes: Vec::new(),
        };
        assert_eq!(desired.validate(), Ok(()));
        type Breaks = fn(&mut Desired);
        let broken: [(Breaks, &str); 7] = [
            (|d| d.peers[0].password = Some("a\"b".into()), "without double quotes"),
            (|d| d.peers[0].name = "Mesh-1".into(), "not a valid BIRD protocol name"),
            (|d| d.peers.push(d.peers[0].clone()), "duplicate"),
            (|d| d.peers[0].rr_client = true, "no cluster ID"),
            (
                |d| d.peers[0].source_address = Some("fd00::1".parse().unwrap()),
                "another IP family",
            ),
            (
                |d| (d.peers[0].keepalive, d.peers[0].hold) = (Some(10), Some(2)),
                "timers",
            ),
            (|d| d.ignored_interfaces.push("a\"b".into()), "cannot be written"),
        ];
        for (breaks, fragment) in broken {
            let mut d = desired.clone();
            breaks(&mut d);
            assert!(d.validate().unwrap_err().contains(fragment), "{fragment}");
        }
    }
}
