//! From the resources and this node's IPAM state to the [`Desired`] BGP speaker, with Calico's
//! semantics (its confd `bird.cfg` templates):
//!
//! - **Mesh** (`nodeToNodeMeshEnabled`): an iBGP session to every other node with an address,
//!   except route reflectors; a route reflector itself takes no part. Of each pair, the node
//!   whose address sorts *lower as text* is passive (Calico's template compares the strings), so
//!   exactly one side connects.
//! - **BGPPeers** that apply to this node (`node`, `nodeSelector`, or global): one session to
//!   `peerIP`, or one to each other node matching `peerSelector` (its address, AS and listen
//!   port). With `reversePeering: Auto` (the default) a node matched by `peerSelector` also
//!   opens the session back, which is how a route reflector gets its clients; such node pairs
//!   are passive on one side like the mesh.
//! - **Route reflector** (Node `routeReflectorClusterID`): an iBGP peer whose cluster ID differs
//!   from ours (any non-node peer included) is an `rr client`, as in Calico.
//! - One session per (address, port): mesh first, then node-specific, then global peers, each
//!   in BGPPeer name order. What is left out, and why, goes to [`Desired::notes`].
//! - **Originated**: confirmed blocks of pools without `disableBGPExport`; with
//!   `bgpExport: aggregate+pods` also each local pod's /32; borrowed /32s; `serviceClusterIPs`
//!   and `serviceExternalIPs`; `prefixAdvertisements` add communities to what is inside them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::model::{Community, Desired, LogSeverity, NextHopMode, OriginKind, Origination, Peer, PeerKind};
use crate::resources::bgpconfig::{GLOBAL_CONFIG_NAME, NODE_CONFIG_PREFIX};
use crate::resources::bgpfields::{password_problem, DEFAULT_BGP_PORT};
use crate::resources::{
    self, BgpExport, BgpPeer, BgpSettings, BindMode, CommunityValue, EncapMode, NodeResource, PasswordSource,
    PeerTarget, Resources, ReversePeering, SourceAddress,
};

/// Another Lanes node, as far as BGP cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub address: Option<Ipv4Addr>,
    pub address6: Option<Ipv6Addr>,
    pub as_number: Option<u32>,
    pub rr_cluster_id: Option<Ipv4Addr>,
}

impl NodeInfo {
    pub fn from_resource(node: &NodeResource) -> Self {
        NodeInfo {
            name: node.name.clone(),
            labels: node.labels.clone(),
            address: node.ipv4_address(),
            address6: node.bgp.as_ref().and_then(|b| b.ipv6_address).map(|n| n.addr()),
            as_number: node.as_number(),
            rr_cluster_id: node.route_reflector_cluster_id(),
        }
    }
}

/// What [`build`] works from. [`Input::new`] fills the node facts from the Node documents; the
/// daemon then sets what only it knows (autodetected address, IPAM state, resolved secrets).
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub resources: &'a Resources,
    pub node_name: &'a str,
    /// This node's IPv4 address (Node `spec.bgp.ipv4Address`, or autodetected): the router ID
    /// and the source of its sessions.
    pub node_address: Option<Ipv4Addr>,
    pub node_address6: Option<Ipv6Addr>,
    /// lanesd's `bgp.listenAddress`, when set (else `bindMode: NodeIP` decides).
    pub listen_address: Option<IpAddr>,
    /// The Lanes nodes (this one may be among them; it is skipped).
    pub nodes: Vec<NodeInfo>,
    /// This node's confirmed affine blocks.
    pub blocks: Vec<IpNet>,
    /// Addresses of this node's pods.
    pub pods: Vec<IpAddr>,
    /// This node's pod addresses that come from other nodes' blocks.
    pub borrowed: Vec<IpAddr>,
    /// The Secrets and files of [`password_sources`], read.
    pub passwords: BTreeMap<PasswordSource, String>,
}

impl<'a> Input<'a> {
    pub fn new(resources: &'a Resources, node_name: &'a str) -> Self {
        let own = resources.nodes.get(node_name).map(NodeInfo::from_resource);
        Input {
            resources,
            node_name,
            node_address: own.as_ref().and_then(|n| n.address),
            node_address6: own.as_ref().and_then(|n| n.address6),
            listen_address: None,
            nodes: resources.nodes.values().map(NodeInfo::from_resource).collect(),
            blocks: Vec::new(),
            pods: Vec::new(),
            borrowed: Vec::new(),
            passwords: BTreeMap::new(),
        }
    }
}

/// The passwords the daemon must read (Secrets, files) before calling [`build`].
pub fn password_sources(resources: &Resources) -> BTreeSet<PasswordSource> {
    let mesh = resources
        .bgp_configurations
        .values()
        .filter_map(|c| c.node_mesh_password.as_ref());
    let peers = resources.bgp_peers.values().filter_map(|p| p.password.as_ref());
    let read = |s: &&PasswordSource| !matches!(s, PasswordSource::Value(_));
    mesh.chain(peers).filter(read).cloned().collect()
}

/// Why no [`Desired`] state could be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("router id: node {0} has no IPv4 address (set Node spec.bgp.ipv4Address, or let lanesd autodetect it)")]
    NoRouterId(String),
    #[error("invalid BGP state: {0}")]
    Invalid(String),
}

/// The BGP speaker this node should run. Fails only when there is no router ID; peerings that
/// cannot be configured (a missing secret, a duplicate session) are left out and explained in
/// [`Desired::notes`], so one bad BGPPeer never holds back the rest.
pub fn build(input: &Input<'_>) -> Result<Desired, BuildError> {
    let res = input.resources;
    let me = input.node_name;
    let router_id = input
        .node_address
        .ok_or_else(|| BuildError::NoRouterId(me.to_string()))?;
    let settings = res.bgp_settings(me);
    let own = res.nodes.get(me);
    let unknown = settings.unknown_communities.iter();
    let mut b = Builder {
        input,
        labels: res.node_labels(me),
        local_as: own.and_then(NodeResource::as_number).unwrap_or(settings.as_number),
        rr_cluster_id: own.and_then(NodeResource::route_reflector_cluster_id),
        sessions: BTreeMap::new(),
        notes: unknown.map(|c| format!("community {c} is not defined")).collect(),
        settings,
    };
    b.mesh();
    let (node_specific, global): (Vec<&BgpPeer>, _) = res.bgp_peers.values().partition(|p| !p.is_global());
    for peer in node_specific.into_iter().chain(global) {
        b.bgp_peer(peer);
    }

    let mut peers: Vec<Peer> = b.sessions.into_values().collect();
    peers.sort_by(|x, y| x.name.cmp(&y.name));
    let mut reachable: Vec<_> = peers
        .iter()
        .filter_map(|p| Some((p.address, p.reachable_by?)))
        .collect();
    reachable.sort();
    let encapsulated = |p: &&resources::IpPool| p.ipip_mode != EncapMode::Never || p.vxlan_mode != EncapMode::Never;
    let mut kernel_exclude: Vec<IpNet> = res.pools.values().filter(encapsulated).map(|p| p.cidr).collect();
    kernel_exclude.sort();
    let mut own_blocks = input.blocks.clone();
    own_blocks.sort();
    own_blocks.dedup();
    let settings = b.settings;
    let node_ip = (settings.bind_mode == BindMode::NodeIp).then_some(IpAddr::V4(router_id));
    let mut notes = b.notes;
    notes.sort();
    notes.dedup();
    let desired = Desired {
        router_id,
        local_as: b.local_as,
        listen_address: input.listen_address.or(node_ip),
        listen_port: settings.listen_port,
        log_severity: match settings.log_severity_screen {
            resources::LogSeverity::Debug => LogSeverity::Debug,
            resources::LogSeverity::Info => LogSeverity::Info,
            resources::LogSeverity::Warning => LogSeverity::Warning,
            resources::LogSeverity::Error => LogSeverity::Error,
            resources::LogSeverity::Fatal => LogSeverity::Fatal,
        },
        rr_cluster_id: b.rr_cluster_id,
        peers,
        originate: originations(input, &settings, &own_blocks),
        kernel_exclude,
        own_blocks,
        reachable,
        ignored_interfaces: settings.ignored_interfaces,
        notes,
    };
    desired.validate().map_err(BuildError::Invalid)?;
    Ok(desired)
}

struct Builder<'i, 'a> {
    input: &'i Input<'a>,
    settings: BgpSettings,
    labels: BTreeMap<String, String>,
    local_as: u32,
    rr_cluster_id: Option<Ipv4Addr>,
    /// By (address, port): the first one configured wins.
    sessions: BTreeMap<(IpAddr, u16), Peer>,
    notes: Vec<String>,
}

impl Builder<'_, '_> {
    /// The other nodes, each with (its address, ours) for every family both have.
    fn others(&self) -> impl Iterator<Item = (&NodeInfo, Vec<(IpAddr, IpAddr)>)> {
        let (mine4, mine6) = (self.input.node_address, self.input.node_address6);
        self.input
            .nodes
            .iter()
            .filter(move |n| n.name != self.input.node_name)
            .map(move |n| {
                let v4 = n.address.zip(mine4).map(|(a, b)| (IpAddr::V4(a), IpAddr::V4(b)));
                let v6 = n.address6.zip(mine6).map(|(a, b)| (IpAddr::V6(a), IpAddr::V6(b)));
                (n, v4.into_iter().chain(v6).collect())
            })
    }

    /// The port another node listens on: its `node.<name>` listenPort, else the global one.
    fn port_of(&self, node: &str) -> u16 {
        let configs = &self.input.resources.bgp_configurations;
        let port = |name: &str| configs.get(name).and_then(|c| c.listen_port);
        port(&format!("{NODE_CONFIG_PREFIX}{node}"))
            .or_else(|| port(GLOBAL_CONFIG_NAME))
            .unwrap_or(DEFAULT_BGP_PORT)
    }

    /// Our address of the same family as `peer`.
    fn own_address(&self, peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => self.input.node_address.map(IpAddr::V4),
            IpAddr::V6(_) => self.input.node_address6.map(IpAddr::V6),
        }
    }

    fn mesh(&mut self) {
        if !self.settings.node_to_node_mesh_enabled {
            return;
        }
        if self.rr_cluster_id.is_some() {
            let note = "this node is a route reflector: it takes no part in the node-to-node mesh";
            return self.notes.push(note.into());
        }
        let password = match self.password(self.settings.node_mesh_password.clone()) {
            Ok(p) => p,
            Err(why) => return self.notes.push(format!("node-to-node mesh left out: {why}")),
        };
        let restart = self
            .settings
            .node_mesh_max_restart_time
            .map(|d| d.as_secs().min(4095) as u32);
        let mut sessions = Vec::new();
        for (node, pairs) in self.others().filter(|(n, _)| n.rr_cluster_id.is_none()) {
            let remote_as = node.as_number.unwrap_or(self.settings.as_number);
            for (address, mine) in pairs {
                let mut peer = Peer::new(
                    PeerKind::Mesh,
                    address,
                    self.port_of(&node.name),
                    remote_as,
                    self.local_as,
                );
                peer.passive = calico_passive(mine, address);
                peer.source_address = Some(mine);
                peer.password.clone_from(&password);
                peer.graceful_restart_time = restart;
                sessions.push(peer);
            }
        }
        for peer in sessions {
            self.add(peer, "node-to-node mesh");
        }
    }

    fn bgp_peer(&mut self, bp: &BgpPeer) {
        let forward = bp.applies_to(self.input.node_name, &self.labels);
        let kind = if bp.is_global() {
            PeerKind::Global
        } else {
            PeerKind::NodeSpecific
        };
        let local_as = bp.local_as_number.unwrap_or(self.local_as);
        // Each session with the far node's route-reflector cluster ID (`None` for a non-node).
        let mut sessions: Vec<(Peer, Option<Ipv4Addr>)> = Vec::new();
        match &bp.target {
            PeerTarget::Ip { address, as_number } if forward => {
                if self.own_address(address.ip) == Some(address.ip) {
                    return self
                        .notes
                        .push(format!("BGPPeer {}: skipping ourselves ({})", bp.name, address.ip));
                }
                let port = address.port.unwrap_or(DEFAULT_BGP_PORT);
                let mut peer = Peer::new(kind, address.ip, port, *as_number, local_as);
                peer.reachable_by = bp.reachable_by;
                sessions.push((peer, None));
            }
            PeerTarget::Ip { .. } => {}
            PeerTarget::Nodes(selector) => {
                let reverse = bp.reverse_peering == ReversePeering::Auto;
                for (node, pairs) in self.others() {
                    let ahead = forward && selector.matches(&node.labels);
                    let back = reverse && selector.matches(&self.labels) && bp.applies_to(&node.name, &node.labels);
                    let node_as = node.as_number.unwrap_or(self.settings.as_number);
                    // Going back, the far side is the one using `localASNumber`.
                    let (remote_as, local_as) = match (ahead, back) {
                        (true, _) => (node_as, local_as),
                        (false, true) => (bp.local_as_number.unwrap_or(node_as), self.local_as),
                        (false, false) => continue,
                    };
                    for (address, mine) in pairs {
                        let mut peer = Peer::new(kind, address, self.port_of(&node.name), remote_as, local_as);
                        peer.passive = reverse && calico_passive(mine, address);
                        sessions.push((peer, node.rr_cluster_id));
                    }
                }
            }
        }
        if sessions.is_empty() {
            return;
        }
        let password = match self.password(bp.password.clone()) {
            Ok(p) => p,
            Err(why) => return self.notes.push(format!("BGPPeer {} left out: {why}", bp.name)),
        };
        for (mut peer, cluster) in sessions {
            peer.rr_client = self.rr_cluster_id.is_some() && !peer.is_ebgp() && cluster != self.rr_cluster_id;
            peer.password.clone_from(&password);
            peer.source_address = match bp.source_address {
                SourceAddress::UseNodeIp => self.own_address(peer.address),
                SourceAddress::None => None,
            };
            (peer.keepalive, peer.hold) = (bp.keepalive_time, bp.keepalive_time.map(|k| k * 3));
            (peer.ttl_security, peer.graceful_restart_time) = (bp.ttl_security, bp.max_restart_time);
            peer.next_hop = match bp.next_hop_mode {
                resources::NextHopMode::Auto => NextHopMode::Auto,
                resources::NextHopMode::SelfHop => NextHopMode::SelfHop,
                resources::NextHopMode::Keep => NextHopMode::Keep,
            };
            self.add(peer, &format!("BGPPeer {}", bp.name));
        }
    }

    fn add(&mut self, peer: Peer, why: &str) {
        let key = (peer.address, peer.port);
        match self.sessions.get(&key) {
            Some(first) => self.notes.push(format!(
                "{why}: the session to {} port {} is already configured as {}",
                peer.address, peer.port, first.name
            )),
            None => drop(self.sessions.insert(key, peer)),
        }
    }

    /// The password itself; `Err` when it is needed but missing or unusable.
    fn password(&self, source: Option<PasswordSource>) -> Result<Option<String>, String> {
        let password = match source {
            None => return Ok(None),
            Some(PasswordSource::Value(v)) => v,
            Some(source) => match (self.input.passwords.get(&source), &source) {
                (Some(p), _) => p.clone(),
                (None, PasswordSource::SecretKeyRef { optional: true, .. }) => return Ok(None),
                (None, _) => return Err(format!("password ({source}) is not available")),
            },
        };
        match password_problem(&password) {
            None => Ok(Some(password)),
            Some(problem) => Err(format!("password {problem}")),
        }
    }
}

/// Calico's rule for node-to-node sessions: passive when the peer's address is greater as text.
fn calico_passive(mine: IpAddr, peer: IpAddr) -> bool {
    peer.to_string() > mine.to_string()
}

fn originations(input: &Input<'_>, settings: &BgpSettings, own_blocks: &[IpNet]) -> Vec<Origination> {
    let res = input.resources;
    let exported = |ip: IpAddr| !res.pool_for(ip).is_some_and(|p| p.disable_bgp_export);
    let in_own_block = |ip: &IpAddr| own_blocks.iter().any(|b| b.contains(ip));
    let per_pod = |ip: &IpAddr| {
        let pool = res.pool_for(*ip);
        pool.is_some_and(|p| p.bgp_export == BgpExport::AggregateAndPods && !p.disable_bgp_export)
    };
    let blocks = own_blocks
        .iter()
        .filter(|b| exported(b.addr()))
        .map(|b| (*b, OriginKind::Block));
    let pods = input.pods.iter().filter(|ip| in_own_block(ip) && per_pod(ip));
    let borrowed = input.borrowed.iter().filter(|ip| !in_own_block(ip) && exported(**ip));
    let cluster = settings
        .service_cluster_ips
        .iter()
        .map(|c| (*c, OriginKind::ServiceClusterIp));
    let external = settings
        .service_external_ips
        .iter()
        .map(|c| (*c, OriginKind::ServiceExternalIp));
    let all = blocks
        .chain(pods.map(|ip| (IpNet::from(*ip), OriginKind::Pod)))
        .chain(borrowed.map(|ip| (IpNet::from(*ip), OriginKind::Borrowed)))
        .chain(cluster)
        .chain(external);
    // One entry per prefix, for the first reason in `OriginKind` order.
    let mut unique: BTreeMap<IpNet, OriginKind> = BTreeMap::new();
    for (prefix, kind) in all {
        let entry = unique.entry(prefix).or_insert(kind);
        *entry = (*entry).min(kind);
    }
    let community = |value: &CommunityValue| match *value {
        CommunityValue::Standard(a, n) => Community::Standard(a, n),
        CommunityValue::Large(a, n, m) => Community::Large(a, n, m),
    };
    let adverts = &settings.prefix_advertisements;
    unique
        .into_iter()
        .map(|(prefix, kind)| {
            let inside = adverts.iter().filter(|(cidr, _)| cidr.contains(&prefix));
            let mut communities: Vec<Community> = inside.flat_map(|(_, values)| values.iter().map(community)).collect();
            communities.sort();
            communities.dedup();
            Origination {
                prefix,
                communities,
                kind,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{node, resources, sessions};
    use super::*;

    fn ips<T: std::str::FromStr>(list: &[&str]) -> Vec<T>
    where
        T::Err: std::fmt::Debug,
    {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn build_for(res: &Resources, name: &str) -> Desired {
        build(&Input::new(res, name)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn mesh_uses_each_node_port_and_skips_nodes_without_an_address() {
        let yaml = node("node1", "192.168.0.11", "") + &node("node2", "192.168.0.12", "")
            + "apiVersion: v1\nkind: Node\nmetadata: {name: bare}\n---\n\
               apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: node.node2}\nspec: {listenPort: 1790}\n";
        let res = resources(&yaml);
        assert_eq!(
            sessions(&build_for(&res, "node1")),
            ["Mesh_192_168_0_12 192.168.0.12:1790 as64512 passive"]
        );
        assert_eq!(build_for(&res, "node2").listen_port, 1790);
        let err = build(&Input::new(&res, "bare")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "router id: node bare has no IPv4 address (set Node spec.bgp.ipv4Address, or let lanesd autodetect it)"
        );
    }

    #[test]
    fn peer_options_and_passwords() {
        let peer = |name: &str, spec: &str| {
            format!("apiVersion: lanes.dev/v1\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n")
        };
        let yaml = [
            peer("a", "{peerIP: 10.0.0.1, asNumber: 65001, localASNumber: 65100, password: {file: /etc/pw}, keepaliveTime: 10s, ttlSecurity: 2, nextHopMode: Self, maxRestartTime: 2m}"),
            peer("b", "{peerIP: 10.0.0.2, asNumber: 64512, keepOriginalNextHop: true, sourceAddress: None, reachableBy: 192.168.0.254}"),
            peer("c", "{peerIP: 10.0.0.3, asNumber: 1, password: {secretKeyRef: {name: bgp, key: c}}}"),
            peer("d", "{peerIP: 10.0.0.4, asNumber: 1, password: {secretKeyRef: {name: bgp, key: d, optional: true}}}"),
            peer("e", "{peerIP: 'fd00::1', asNumber: 1, password: {value: \"it's a \\\\ fine one\"}}"),
            node("node1", "192.168.0.11", "").replace("/24}", "/24, ipv6Address: fd00::11/64}"),
        ]
        .concat();
        let res = resources(&yaml);
        let mut input = Input::new(&res, "node1");
        let file = PasswordSource::File("/etc/pw".into());
        input.passwords.insert(file.clone(), "s3cret".into());
        assert_eq!(password_sources(&res).into_iter().collect::<Vec<_>>().len(), 3);
        let d = build(&input).unwrap();
        assert_eq!(
            sessions(&d),
            [
                "Global_10_0_0_1 10.0.0.1:179 as65001 local65100",
                "Global_10_0_0_2 10.0.0.2:179 as64512",
                "Global_10_0_0_4 10.0.0.4:179 as1",
                "Global_fd00__1 [fd00::1]:179 as1"
            ]
        );
        let [a, b, d4, e] = &d.peers[..] else { panic!() };
        assert_eq!(
            (a.password.as_deref(), a.keepalive, a.hold, a.ttl_security),
            (Some("s3cret"), Some(10), Some(30), Some(2))
        );
        assert_eq!(
            (a.next_hop, a.graceful_restart_time, b.next_hop),
            (NextHopMode::SelfHop, Some(120), NextHopMode::Keep)
        );
        assert_eq!(
            (a.source_address, b.source_address),
            (Some("192.168.0.11".parse().unwrap()), None)
        );
        assert_eq!(
            d.reachable,
            [("10.0.0.2".parse().unwrap(), "192.168.0.254".parse().unwrap())]
        );
        assert_eq!(
            (d4.password.as_deref(), e.password.as_deref()),
            (None, Some("it's a \\ fine one"))
        );
        assert_eq!(e.source_address, Some("fd00::11".parse().unwrap()));
        assert_eq!(
            d.notes,
            ["BGPPeer c left out: password (secret bgp key c) is not available"]
        );
        input.passwords.insert(file, "bad\"one".into());
        assert!(build(&input).unwrap().notes[0].contains("a left out: password must not contain a double quote"));
    }

    #[test]
    fn originations_follow_each_pool_export_policy() {
        let pool = |api: &str, name: &str, spec: &str| {
            format!("apiVersion: {api}\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n")
        };
        let v3 = "projectcalico.org/v3";
        let yaml = [
            pool(v3, "agg", "{cidr: 10.244.0.0/16}"),
            pool("lanes.dev/v1", "pods", "{cidr: 10.245.0.0/16, bgpExport: aggregate+pods}"),
            pool(v3, "off", "{cidr: 10.246.0.0/16, disableBGPExport: true}"),
            pool(v3, "vx", "{cidr: 10.247.0.0/16, vxlanMode: Always}"),
            pool(v3, "v6", "{cidr: 'fd00:10:244::/48'}"),
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n\
             spec: {serviceClusterIPs: [{cidr: 10.96.0.0/12}], serviceExternalIPs: [{cidr: 104.244.42.0/24}],\n\
             communities: [{name: svc, value: '63400:300:100'}],\n\
             prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [svc, '63400:120']}, {cidr: 10.96.0.0/12, communities: ['1:1']}]}\n---\n".into(),
            node("node1", "192.168.0.11", ""),
        ]
        .concat();
        let res = resources(&yaml);
        let mut input = Input::new(&res, "node1");
        input.blocks = ips(&[
            "10.246.1.0/26",
            "10.244.1.0/26",
            "10.245.1.0/26",
            "10.247.1.0/26",
            "fd00:10:244::/122",
        ]);
        input.pods = ips(&["10.244.1.5", "10.245.1.7", "10.246.1.8", "10.245.200.1"]);
        input.borrowed = ips(&["10.244.9.9", "10.246.9.9", "10.245.1.7", "fd00:10:244:1::5"]);
        let d = build(&input).unwrap();
        let got: Vec<String> = d
            .originate
            .iter()
            .map(|o| format!("{} {} {:?}", o.prefix, o.kind, o.communities))
            .collect();
        assert_eq!(
            got,
            [
                "10.96.0.0/12 service cluster IPs [Standard(1, 1), Standard(63400, 120), Large(63400, 300, 100)]",
                "10.244.1.0/26 block [Standard(63400, 120), Large(63400, 300, 100)]",
                "10.244.9.9/32 borrowed address [Standard(63400, 120), Large(63400, 300, 100)]",
                "10.245.1.0/26 block [Standard(63400, 120), Large(63400, 300, 100)]",
                "10.245.1.7/32 pod address [Standard(63400, 120), Large(63400, 300, 100)]",
                "10.247.1.0/26 block [Standard(63400, 120), Large(63400, 300, 100)]",
                "104.244.42.0/24 service external IPs []",
                "fd00:10:244::/122 block []",
                "fd00:10:244:1::5/128 borrowed address []",
            ]
        );
        assert_eq!(d.kernel_exclude, ips::<IpNet>(&["10.247.0.0/16"]));
        assert_eq!(d.own_blocks.len(), 5);
        assert_eq!(d.own_blocks[0].to_string(), "10.244.1.0/26");
    }

    #[test]
    fn listen_address_and_log_level() {
        let yaml = node("node1", "192.168.0.11", "")
            + "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n\
               spec: {bindMode: NodeIP, logSeverityScreen: Debug, asNumber: 1111111, ignoredInterfaces: [eth9]}\n";
        let res = resources(&yaml);
        let mut input = Input::new(&res, "node1");
        let d = build(&input).unwrap();
        assert_eq!(
            (d.listen_address, d.log_severity, d.local_as),
            (Some("192.168.0.11".parse().unwrap()), LogSeverity::Debug, 1111111)
        );
        assert_eq!(d.ignored_interfaces, ["eth9"]);
        input.listen_address = Some("192.168.0.99".parse().unwrap());
        assert_eq!(build(&input).unwrap().listen_address, input.listen_address);
    }
}
