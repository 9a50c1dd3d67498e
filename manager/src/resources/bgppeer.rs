//! `BGPPeer`: a BGP session some of our nodes open, to a fixed address (`peerIP`, e.g. a ToR) or
//! to other Lanes nodes chosen by label (`peerSelector`, e.g. route reflectors). Which of our
//! nodes open it: `node` (one), `nodeSelector` (by label), or neither (all: a global peer).
//!
//! Field names and defaults are Calico's; lanes.dev/v1 adds `password: {file}` / `{value}`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::bgpfields::{self, choice, PasswordSource};
use super::meta::{check_dns_subdomain, show, FieldError, Obj, ObjectMeta};
use super::selector::Selector;

/// `sourceAddress`: whether the session's source is the node's IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SourceAddress {
    #[default]
    UseNodeIp,
    None,
}

/// `nextHopMode` (or the deprecated `keepOriginalNextHop: true`, which means `Keep`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NextHopMode {
    /// BIRD's default (self for eBGP, unchanged for iBGP).
    #[default]
    Auto,
    /// `next hop self`.
    SelfHop,
    /// `next hop keep`.
    Keep,
}

/// `reversePeering`: whether a node selected by `peerSelector` opens the session back itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReversePeering {
    #[default]
    Auto,
    Manual,
}

/// `peerIP`: an address and, when written as `ip:port` / `[ip]:port`, a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerAddress {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            None => write!(f, "{}", self.ip),
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port)),
        }
    }
}

/// Which of our nodes a peering is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeScope {
    /// Every node (no `node`, no `nodeSelector`): a global peer.
    All,
    Node(String),
    Selector(Selector),
}

/// Who is on the other end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerTarget {
    /// A fixed address; `as_number` is required.
    Ip { address: PeerAddress, as_number: u32 },
    /// Every other Lanes node matching the selector, with its own address and AS.
    Nodes(Selector),
}

/// A validated BGPPeer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPeer {
    pub name: String,
    pub scope: NodeScope,
    pub target: PeerTarget,
    /// Our AS on this session (default: the node's AS).
    pub local_as_number: Option<u32>,
    pub password: Option<PasswordSource>,
    pub source_address: SourceAddress,
    /// Graceful-restart time announced to the peer, whole seconds.
    pub max_restart_time: Option<u32>,
    /// Keepalive interval, whole seconds (hold time is three times it).
    pub keepalive_time: Option<u32>,
    /// GTSM: the number of hops to the peer (`ttlSecurity`); `None` when 0 or absent.
    pub ttl_security: Option<u8>,
    pub next_hop_mode: NextHopMode,
    pub reverse_peering: ReversePeering,
    /// A gateway for a /32 static route to the peer (`reachableBy`).
    pub reachable_by: Option<IpAddr>,
    pub num_allowed_local_as_numbers: Option<u32>,
    /// BGPFilter names, kept for when filters are implemented.
    pub filters: Vec<String>,
    pub api_version: String,
    pub source: String,
}

impl BgpPeer {
    /// Whether this peering is configured on `node` (with these labels).
    pub fn applies_to(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        match &self.scope {
            NodeScope::All => true,
            NodeScope::Node(n) => n == node,
            NodeScope::Selector(s) => s.matches(labels),
        }
    }

    /// Global peers have neither `node` nor `nodeSelector`.
    pub fn is_global(&self) -> bool {
        self.scope == NodeScope::All
    }

    /// `peerIP`, for a fixed-address peer.
    pub fn peer_address(&self) -> Option<PeerAddress> {
        match self.target {
            PeerTarget::Ip { address, .. } => Some(address),
            PeerTarget::Nodes(_) => None,
        }
    }

    /// Whether `self` and `other` would open the same session: the same `peerIP` (and port)
    /// from the same nodes (same `node`, or the same `nodeSelector`, or both global).
    pub fn duplicates(&self, other: &BgpPeer) -> bool {
        let same_scope = match (&self.scope, &other.scope) {
            (NodeScope::Selector(a), NodeScope::Selector(b)) => a.to_string() == b.to_string(),
            (a, b) => a == b,
        };
        same_scope && self.peer_address().is_some() && self.peer_address() == other.peer_address()
    }
}

const FIELDS: &[&str] = &[
    "node",
    "nodeSelector",
    "peerIP",
    "asNumber",
    "localASNumber",
    "peerSelector",
    "keepOriginalNextHop",
    "nextHopMode",
    "password",
    "sourceAddress",
    "maxRestartTime",
    "keepaliveTime",
    "numAllowedLocalASNumbers",
    "ttlSecurity",
    "reachableBy",
    "filters",
    "reversePeering",
    "localWorkloadSelector",
];
const SOURCE_ADDRESSES: &[(&str, SourceAddress)] =
    &[("UseNodeIP", SourceAddress::UseNodeIp), ("None", SourceAddress::None)];
const NEXT_HOP_MODES: &[(&str, NextHopMode)] = &[
    ("Auto", NextHopMode::Auto),
    ("Self", NextHopMode::SelfHop),
    ("Keep", NextHopMode::Keep),
];
const REVERSE: &[(&str, ReversePeering)] = &[("Auto", ReversePeering::Auto), ("Manual", ReversePeering::Manual)];
/// RFC 4724's restart time is 12 bits.
const MAX_RESTART_SECONDS: u64 = 4095;
/// BIRD's hold time is at most 65535 s and lanesd sets it to three keepalives.
const MAX_KEEPALIVE_SECONDS: u64 = 65535 / 3;

pub(crate) fn parse(api_version: &str, meta: ObjectMeta, top: &Obj<'_>, source: &str) -> Result<BgpPeer, FieldError> {
    let spec = top.obj("spec")?;
    spec.deny_unknown(FIELDS)?;
    if let Some(v) = spec.get("localWorkloadSelector") {
        let reason = "local workload peering is not supported by Lanes";
        return Err(FieldError::new("spec.localWorkloadSelector", show(v), reason));
    }

    let node = spec.str("node")?.filter(|n| !n.is_empty());
    if let Some(n) = node {
        check_dns_subdomain("spec.node", n)?;
    }
    let node_selector = bgpfields::opt_selector(&spec, "nodeSelector")?;
    let scope = match (node, node_selector) {
        (Some(_), Some(_)) => {
            let reason = "node and nodeSelector are mutually exclusive";
            return Err(FieldError::new(
                "spec.nodeSelector",
                spec.str("nodeSelector")?.unwrap_or(""),
                reason,
            ));
        }
        (Some(n), None) => NodeScope::Node(n.to_string()),
        (None, Some(s)) => NodeScope::Selector(s),
        (None, None) => NodeScope::All,
    };

    let peer_ip = peer_address(&spec)?;
    let peer_selector = bgpfields::opt_selector(&spec, "peerSelector")?;
    let as_number = bgpfields::as_number(&spec, "asNumber")?;
    let target = match (peer_ip, peer_selector) {
        (Some(_), Some(_)) => {
            let reason = "peerIP and peerSelector are mutually exclusive";
            return Err(FieldError::new(
                "spec.peerSelector",
                spec.str("peerSelector")?.unwrap_or(""),
                reason,
            ));
        }
        (None, None) => {
            return Err(FieldError::new(
                "spec.peerIP",
                "",
                "one of peerIP or peerSelector is required",
            ));
        }
        (Some(address), None) => match as_number {
            Some(as_number) => PeerTarget::Ip { address, as_number },
            None => return Err(FieldError::new("spec.asNumber", "", "required with peerIP")),
        },
        (None, Some(selector)) => match as_number {
            None => PeerTarget::Nodes(selector),
            Some(n) => {
                let reason = "must be empty with peerSelector: the peered nodes' own AS numbers are used";
                return Err(FieldError::new("spec.asNumber", n.to_string(), reason));
            }
        },
    };

    let next_hop_mode = match choice(&spec, "nextHopMode", NEXT_HOP_MODES)? {
        Some(mode) => mode,
        None if spec.bool("keepOriginalNextHop")? == Some(true) => NextHopMode::Keep,
        None => NextHopMode::Auto,
    };
    let ttl_security = match spec.int("ttlSecurity")? {
        None | Some(0) => None,
        Some(n) => Some(
            u8::try_from(n)
                .map_err(|_| FieldError::new("spec.ttlSecurity", n.to_string(), "must be a hop count from 0 to 255"))?,
        ),
    };
    let reachable_by = match spec.str("reachableBy")?.filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => {
            let field = "spec.reachableBy";
            let gateway: IpAddr = text
                .parse()
                .map_err(|_| FieldError::new(field, text, "expected the IP address of a gateway"))?;
            match peer_ip {
                None => return Err(FieldError::new(field, text, "only valid with peerIP")),
                Some(p) if p.ip.is_ipv4() != gateway.is_ipv4() => {
                    return Err(FieldError::new(field, text, "must be of the same IP family as peerIP"))
                }
                Some(_) => Some(gateway),
            }
        }
    };
    let num_allowed_local_as_numbers =
        match spec.int("numAllowedLocalASNumbers")? {
            None | Some(0) => None,
            Some(n) => Some(u32::try_from(n).ok().filter(|n| *n <= 255).ok_or_else(|| {
                FieldError::new("spec.numAllowedLocalASNumbers", n.to_string(), "must be from 0 to 255")
            })?),
        };
    let mut filters = Vec::new();
    for (path, item) in spec.list("filters")? {
        match item.as_str() {
            Some(name) if !name.is_empty() => filters.push(name.to_string()),
            _ => return Err(FieldError::new(path, show(item), "expected a BGPFilter name")),
        }
    }

    Ok(BgpPeer {
        name: meta.name,
        scope,
        target,
        local_as_number: bgpfields::as_number(&spec, "localASNumber")?,
        password: bgpfields::password(&spec, "password", api_version)?,
        source_address: choice(&spec, "sourceAddress", SOURCE_ADDRESSES)?.unwrap_or_default(),
        max_restart_time: bgpfields::seconds(&spec, "maxRestartTime", 0, MAX_RESTART_SECONDS)?,
        keepalive_time: bgpfields::seconds(&spec, "keepaliveTime", 1, MAX_KEEPALIVE_SECONDS)?,
        ttl_security,
        next_hop_mode,
        reverse_peering: choice(&spec, "reversePeering", REVERSE)?.unwrap_or_default(),
        reachable_by,
        num_allowed_local_as_numbers,
        filters,
        api_version: api_version.to_string(),
        source: source.to_string(),
    })
}

/// `peerIP`: `192.168.0.1`, `192.168.0.1:1790`, `fd00::1` or `[fd00::1]:1790`.
fn peer_address(spec: &Obj<'_>) -> Result<Option<PeerAddress>, FieldError> {
    let Some(text) = spec.str("peerIP")?.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = |reason: &str| FieldError::new("spec.peerIP", text, reason);
    let address = if let Ok(ip) = text.parse::<IpAddr>() {
        PeerAddress { ip, port: None }
    } else if let Ok(sock) = text.parse::<SocketAddr>() {
        if sock.port() == 0 {
            return Err(bad("port must be from 1 to 65535"));
        }
        PeerAddress {
            ip: sock.ip(),
            port: Some(sock.port()),
        }
    } else {
        return Err(bad("expected an IP address, IPv4:port or [IPv6]:port"));
    };
    if address.ip.is_unspecified() || address.ip.is_multicast() {
        return Err(bad("must be a unicast address"));
    }
    Ok(Some(address))
}

#[cfg(test)]
mod tests {
    use super::super::{API_CALICO_V3, API_LANES};
    use super::*;
    use serde_json::{json, Value};

    fn peer(spec: Value) -> Result<BgpPeer, FieldError> {
        peer_in(API_CALICO_V3, spec)
    }

    fn peer_in(api: &str, spec: Value) -> Result<BgpPeer, FieldError> {
        let doc = json!({"metadata": {"name": "p"}, "spec": spec});
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false).unwrap();
        parse(api, meta, &top, "peers.yaml")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn seed_peers() {
        let tor =
            peer(json!({"peerIP": "192.168.0.1", "asNumber": 63400, "nodeSelector": "rack == 'rack-1'"})).unwrap();
        assert_eq!(
            tor.target,
            PeerTarget::Ip {
                address: PeerAddress {
                    ip: "192.168.0.1".parse().unwrap(),
                    port: None
                },
                as_number: 63400
            }
        );
        assert!(tor.applies_to("n1", &labels(&[("rack", "rack-1")])));
        assert!(!tor.applies_to("n1", &labels(&[("rack", "rack-2")])));
        assert_eq!(
            (tor.source_address, tor.next_hop_mode, tor.reverse_peering),
            (SourceAddress::UseNodeIp, NextHopMode::Auto, ReversePeering::Auto)
        );

        let rr = peer(json!({"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"})).unwrap();
        let PeerTarget::Nodes(sel) = &rr.target else {
            panic!("{rr:?}")
        };
        assert!(sel.matches(&labels(&[("route-reflector", "true")])));
        assert!(!rr.is_global() && rr.applies_to("any", &BTreeMap::new()));
        assert_eq!(rr.peer_address(), None);

        let group =
            peer(json!({"peerIP": "192.168.1.1", "asNumber": 1111111, "nodeSelector": "rr-group == 'rr1'"})).unwrap();
        assert_eq!(group.peer_address().unwrap().to_string(), "192.168.1.1");
    }

    #[test]
    fn every_option_is_read() {
        let p = peer_in(
            API_LANES,
            json!({"node": "node1", "peerIP": "[fd00::1]:1790", "asNumber": "1.10", "localASNumber": 65001,
                   "password": {"value": "it's"}, "sourceAddress": "None", "maxRestartTime": "2m",
                   "keepaliveTime": "10s", "ttlSecurity": 2, "keepOriginalNextHop": true,
                   "reachableBy": "fd00::254", "filters": ["f1"], "reversePeering": "Manual",
                   "numAllowedLocalASNumbers": 1}),
        )
        .unwrap();
        assert_eq!(p.scope, NodeScope::Node("node1".into()));
        assert_eq!(p.peer_address().unwrap().to_string(), "[fd00::1]:1790");
        assert!(matches!(p.target, PeerTarget::Ip { as_number: 65546, .. }));
        assert_eq!(p.local_as_number, Some(65001));
        assert_eq!(p.password, Some(PasswordSource::Value("it's".into())));
        assert_eq!(
            (p.max_restart_time, p.keepalive_time, p.ttl_security),
            (Some(120), Some(10), Some(2))
        );
        assert_eq!(p.next_hop_mode, NextHopMode::Keep);
        assert_eq!(p.source_address, SourceAddress::None);
        assert_eq!(p.reachable_by, Some("fd00::254".parse().unwrap()));
        assert_eq!((p.filters.len(), p.reverse_peering), (1, ReversePeering::Manual));
        assert!(p.applies_to("node1", &BTreeMap::new()) && !p.applies_to("node2", &BTreeMap::new()));

        let explicit = peer(json!({"peerIP": "10.0.0.1:179", "asNumber": 1, "nextHopMode": "Self",
                                   "keepOriginalNextHop": true, "ttlSecurity": 0}))
        .unwrap();
        assert_eq!(
            (explicit.next_hop_mode, explicit.ttl_security),
            (NextHopMode::SelfHop, None)
        );
        assert!(explicit.is_global());
    }

    #[test]
    fn duplicates_need_the_same_address_and_scope() {
        let a = peer(json!({"peerIP": "10.0.0.1", "asNumber": 1, "nodeSelector": "rack == 'r1'"})).unwrap();
        let b = peer(json!({"peerIP": "10.0.0.1", "asNumber": 2, "nodeSelector": "rack==\"r1\""})).unwrap();
        let c = peer(json!({"peerIP": "10.0.0.1", "asNumber": 1})).unwrap();
        let d = peer(json!({"peerIP": "10.0.0.1:1790", "asNumber": 1})).unwrap();
        let e = peer(json!({"peerSelector": "all()"})).unwrap();
        assert!(a.duplicates(&b) && !a.duplicates(&c) && !c.duplicates(&d) && !e.duplicates(&e));
    }

    /// spec | field | fragment
    const REJECTIONS: &str = r#"
        {"asNumber": 1}                                                  | spec.peerIP       | one of peerIP or peerSelector
        {"peerIP": "10.0.0.1"}                                           | spec.asNumber     | required with peerIP
        {"peerIP": "10.0.0.1", "asNumber": 0}                            | spec.asNumber     | 1 to 4294967295
        {"peerIP": "rack1-tor", "asNumber": 1}                           | spec.peerIP       | expected an IP address
        {"peerIP": "10.0.0.1:0", "asNumber": 1}                          | spec.peerIP       | port
        {"peerIP": "fd00::1:1790", "asNumber": 1, "x": 1}                | spec.x            | unknown field
        {"peerIP": "0.0.0.0", "asNumber": 1}                             | spec.peerIP       | unicast
        {"peerIP": "10.0.0.1", "asNumber": 1, "peerSelector": "all()"}   | spec.peerSelector | mutually exclusive
        {"peerSelector": "all()", "asNumber": 1}                         | spec.asNumber     | must be empty with peerSelector
        {"peerIP": "10.0.0.1", "asNumber": 1, "node": "n1", "nodeSelector": "all()"} | spec.nodeSelector | mutually exclusive
        {"peerIP": "10.0.0.1", "asNumber": 1, "nodeSelector": "rack == r1"} | spec.nodeSelector | column 9
        {"peerSelector": "route-reflector = 'true'"}                     | spec.peerSelector | column
        {"peerIP": "10.0.0.1", "asNumber": 1, "node": "Node_1"}          | spec.node         | DNS-1123
        {"peerIP": "10.0.0.1", "asNumber": 1, "ttlSecurity": 256}        | spec.ttlSecurity  | 0 to 255
        {"peerIP": "10.0.0.1", "asNumber": 1, "keepaliveTime": "0s"}     | spec.keepaliveTime | 1s to 21845s
        {"peerIP": "10.0.0.1", "asNumber": 1, "keepaliveTime": "2.5s"}   | spec.keepaliveTime | whole seconds
        {"peerIP": "10.0.0.1", "asNumber": 1, "maxRestartTime": "2h"}    | spec.maxRestartTime | 0s to 4095s
        {"peerIP": "10.0.0.1", "asNumber": 1, "nextHopMode": "self"}     | spec.nextHopMode  | Auto, Self, Keep
        {"peerIP": "10.0.0.1", "asNumber": 1, "sourceAddress": "Node"}   | spec.sourceAddress | UseNodeIP, None
        {"peerIP": "10.0.0.1", "asNumber": 1, "reachableBy": "fd00::1"}  | spec.reachableBy  | same IP family
        {"peerSelector": "all()", "reachableBy": "10.0.0.254"}           | spec.reachableBy  | only valid with peerIP
        {"peerIP": "10.0.0.1", "asNumber": 1, "password": {"value": "x"}} | spec.password.value | lanes.dev/v1 extension
        {"peerIP": "10.0.0.1", "asNumber": 1, "localWorkloadSelector": "a == 'b'"} | spec.localWorkloadSelector | not supported
        {"peerIP": "10.0.0.1", "asNumber": 1, "filters": [1]}            | spec.filters[0]   | BGPFilter name
    "#;

    #[test]
    fn rejections_name_the_field() {
        for line in REJECTIONS.lines().filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let err = peer(serde_json::from_str(cols[0]).unwrap()).unwrap_err();
            assert_eq!(err.field, cols[1], "{line}: {err:?}");
            assert!(err.reason.contains(cols[2]), "{line}: {}", err.reason);
        }
    }
}
