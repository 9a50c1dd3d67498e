//! The routing loop of lanesd: from resources, IPAM and the node registry to
//! BIRD's config (through the supervisor), the encapsulation routes for
//! VXLAN/IPIP pools, and the natOutgoing table.
//!
//! It wakes on a resource change, on a kick from IPAM activity, and every
//! [`RESYNC`] (other nodes' registrations and blocks live in the shared
//! store), coalesces wake-ups for [`DEBOUNCE`], and only touches BIRD when
//! the rendered text changed. A failed build, render check or apply is
//! recorded and the running config stays.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::{watch, Mutex, Notify};

use super::registry::{self, NodeRecord};
use super::supervisor::{Applied, Supervisor};
use super::{build, password_sources, render, Input, NodeInfo};
use crate::dataplane::encap::{self, EncapKind, RemoteBlock};
use crate::dataplane::{self, Dataplane};
use crate::ipam::Ipam;
use crate::metrics::Metrics;
use crate::resources::{EncapMode, PasswordSource, Resources};
use crate::store::StateStore;
use lanes_proto::v1 as pb;

/// How long wake-ups are gathered before one sync.
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// Resync even without a local trigger (remote nodes' changes).
pub const RESYNC: Duration = Duration::from_secs(2);
/// How often the nftables NAT tables are compared with what they should be even when the
/// pools did not change, so a table flushed or edited by hand is put back (Felix refreshes
/// its iptables the same way).
pub const NAT_REFRESH: Duration = Duration::from_secs(10);

pub struct DriverConfig {
    pub node: String,
    pub primary_interface: String,
    pub listen_address: Option<IpAddr>,
    /// Where `secretKeyRef` passwords are read from: `<store>/secrets/<name>/<key>`.
    pub store_path: PathBuf,
    pub mtu: u32,
    pub bgp_enabled: bool,
}

#[derive(Default)]
struct State {
    node_address: Option<Ipv4Net>,
    router_id: Option<Ipv4Addr>,
    local_as: u32,
    last_text: Option<String>,
    last_error: Option<String>,
    vtep_ip: Option<Ipv4Addr>,
    /// What the NAT table was last built from, and when it was last checked against the
    /// kernel (nft runs on change and every [`NAT_REFRESH`]).
    nat_input: Option<Vec<crate::nat::NatPool>>,
    nat_checked: Option<std::time::Instant>,
    /// BIRD protocols with a TCP MD5 password (their status gets a hint when down).
    md5_peers: std::collections::BTreeSet<String>,
}

pub struct BgpDriver {
    cfg: DriverConfig,
    supervisor: Arc<Supervisor>,
    store: Arc<dyn StateStore>,
    ipam: Arc<Ipam>,
    dataplane: Dataplane,
    resources: watch::Receiver<Arc<Resources>>,
    metrics: Arc<Metrics>,
    kick: Arc<Notify>,
    state: Mutex<State>,
    /// Why routing to other nodes may be broken, as of the last refresh (for CNI STATUS).
    degraded: std::sync::Mutex<Option<String>>,
}

impl BgpDriver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: DriverConfig,
        supervisor: Arc<Supervisor>,
        store: Arc<dyn StateStore>,
        ipam: Arc<Ipam>,
        dataplane: Dataplane,
        resources: watch::Receiver<Arc<Resources>>,
        metrics: Arc<Metrics>,
        kick: Arc<Notify>,
    ) -> Self {
        BgpDriver {
            cfg,
            supervisor,
            store,
            ipam,
            dataplane,
            resources,
            metrics,
            kick,
            state: Mutex::new(State::default()),
            degraded: std::sync::Mutex::new(None),
        }
    }

    pub async fn run(self: Arc<Self>) {
        let mut resources = self.resources.clone();
        loop {
            self.sync().await;
            tokio::select! {
                _ = resources.changed() => {}
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }

    /// One pass: registry, BGP, encapsulation, NAT. Each part logs its own failure.
    pub async fn sync(&self) {
        let res = self.resources.borrow().clone();
        let address = self.node_address(&res).await;
        if let Err(e) = self.register(address, &res).await {
            tracing::warn!(error = %e, "node registration failed");
        }
        let nodes = registry::list(self.store.as_ref()).await.unwrap_or_default();
        if self.cfg.bgp_enabled {
            self.sync_bgp(&res, address, &nodes).await;
        }
        self.sync_encap(&res, address, &nodes).await;
        self.sync_nat(&res).await;
        self.refresh_metrics().await;
    }

    /// Node spec.bgp.ipv4Address, else the first IPv4 address of the primary interface, else
    /// the Node's Kubernetes InternalIP (as a /32).
    async fn node_address(&self, res: &Resources) -> Option<Ipv4Net> {
        let node = res.nodes.get(&self.cfg.node);
        let from_doc = node.and_then(|n| n.bgp.as_ref()).and_then(|b| b.ipv4_address);
        let addr = match from_doc {
            Some(a) => Some(a),
            None => self
                .dataplane
                .interface_ipv4(&self.cfg.primary_interface)
                .await
                .ok()
                .flatten(),
        };
        let addr = addr.or_else(|| node?.internal_ipv4.map(Ipv4Net::from));
        self.state.lock().await.node_address = addr;
        addr
    }

    async fn register(&self, address: Option<Ipv4Net>, res: &Resources) -> Result<(), String> {
        let vtep_ip = self.state.lock().await.vtep_ip;
        let record = NodeRecord {
            name: self.cfg.node.clone(),
            address: address.map(|a| a.to_string()),
            as_number: res.nodes.get(&self.cfg.node).and_then(|n| n.as_number()),
            vtep_mac: Some(registry::mac_string(&encap::vtep_mac(&self.cfg.node))),
            vtep_ip: vtep_ip.map(|v| v.to_string()),
        };
        registry::put(self.store.as_ref(), &record)
            .await
            .map_err(|e| e.to_string())
    }

    async fn sync_bgp(&self, res: &Resources, address: Option<Ipv4Net>, nodes: &[NodeRecord]) {
        let mut input = Input::new(res, &self.cfg.node);
        if input.node_address.is_none() {
            input.node_address = address.map(|a| a.addr());
        }
        input.listen_address = self.cfg.listen_address;
        input.nodes = merge_nodes(res, nodes);
        input.blocks = self.ipam.confirmed_blocks().await;
        for (ip, _, block) in self.ipam.local_allocations().await {
            if input.blocks.contains(&block) {
                input.pods.push(ip);
            } else {
                input.borrowed.push(ip);
            }
        }
        input.passwords = self.read_passwords(res);
        let desired = match build(&input) {
            Ok(d) => d,
            Err(e) => return self.fail(format!("build BGP config: {e}")).await,
        };
        for note in &desired.notes {
            tracing::warn!(note = %note, "BGP peer left out");
        }
        let text = render(&desired);
        {
            let mut st = self.state.lock().await;
            st.router_id = Some(desired.router_id);
            st.local_as = desired.local_as;
            st.md5_peers = desired
                .peers
                .iter()
                .filter(|p| p.password.is_some())
                .map(|p| p.name.clone())
                .collect();
            if st.last_text.as_deref() == Some(text.as_str()) {
                return;
            }
        }
        match self.supervisor.apply(&text).await {
            Ok(applied) => {
                if applied != Applied::Unchanged {
                    tracing::info!(?applied, peers = desired.peers.len(), "BIRD config applied");
                }
                let mut st = self.state.lock().await;
                st.last_text = Some(text);
                st.last_error = None;
            }
            Err(e) => self.fail(format!("apply BIRD config: {e}")).await,
        }
    }

    async fn fail(&self, msg: String) {
        let mut st = self.state.lock().await;
        // Said once per distinct problem, not every resync.
        if st.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(error = %msg, "BGP sync failed; the running config stays");
        }
        st.last_error = Some(msg);
    }

    fn read_passwords(&self, res: &Resources) -> BTreeMap<PasswordSource, String> {
        let mut out = BTreeMap::new();
        for src in password_sources(res) {
            let path = match &src {
                PasswordSource::File(p) => PathBuf::from(p),
                PasswordSource::SecretKeyRef { name, key, .. } => {
                    self.cfg.store_path.join("secrets").join(name).join(key)
                }
                PasswordSource::Value(_) => continue,
            };
            match std::fs::read_to_string(&path) {
                Ok(v) => {
                    out.insert(src.clone(), v.strip_suffix('\n').unwrap_or(&v).to_string());
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "BGP password unreadable"),
            }
        }
        out
    }

    /// Cross-node routes for VXLAN/IPIP pools, from the store's block affinities (as Felix).
    async fn sync_encap(&self, res: &Resources, address: Option<Ipv4Net>, nodes: &[NodeRecord]) {
        let encap_pools: Vec<_> = res
            .pools
            .values()
            .filter(|p| !p.is_ipv6() && (p.vxlan_mode != EncapMode::Never || p.ipip_mode != EncapMode::Never))
            .collect();
        if encap_pools.is_empty() {
            // An empty plan removes every cross-node route lanesd owns (native
            // CrossSubnet ones too), leaving those blocks to BIRD.
            if let Err(e) = self.dataplane.sync_encap(&encap::EncapPlan::default()).await {
                tracing::warn!(error = %e, "remove encapsulation routes");
            }
            if self.state.lock().await.vtep_ip.take().is_some() {
                let _ = self.dataplane.remove_tunnel(dataplane::encap::VXLAN_DEVICE).await;
            }
            return;
        }
        let Some(local) = address else {
            return tracing::warn!("encapsulated pools need this node's address; none found");
        };
        let vtep_ip = match self.ensure_vtep(res, local).await {
            Ok(v) => v,
            Err(e) => return tracing::warn!(error = %e, "VXLAN tunnel address"),
        };
        let by_name: BTreeMap<&str, &NodeRecord> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut remotes = Vec::new();
        for block in self.ipam.all_blocks().await.unwrap_or_default() {
            let Some(owner) = block.affinity.as_deref().filter(|o| *o != self.cfg.node) else {
                continue;
            };
            let Some(pool) = encap_pools.iter().find(|p| p.cidr.contains(&block.cidr)) else {
                continue;
            };
            let Some(rec) = by_name.get(owner) else { continue };
            let Some(node_ip) = rec.ipv4() else { continue };
            let (mode, kind) = if pool.vxlan_mode != EncapMode::Never {
                (pool.vxlan_mode, EncapKind::Vxlan)
            } else {
                (pool.ipip_mode, EncapKind::Ipip)
            };
            remotes.push(RemoteBlock {
                block: block.cidr,
                node: owner.to_string(),
                node_ip: node_ip.addr(),
                vtep_mac: rec.vtep_mac_bytes(),
                vtep_ip: rec.vtep_ip.as_deref().and_then(|v| v.parse().ok()),
                mode: if mode == EncapMode::CrossSubnet {
                    encap::EncapMode::CrossSubnet
                } else {
                    encap::EncapMode::Always
                },
                kind,
            });
        }
        let plan = encap::plan(local, &remotes);
        for s in &plan.skipped {
            tracing::debug!(block = %s.block, node = %s.node, reason = %s.reason, "encap: block skipped");
        }
        if let Some(vtep) = vtep_ip {
            let dev =
                dataplane::vxlan::VxlanDevice::new(&self.cfg.node, local.addr(), vtep, self.cfg.mtu.saturating_sub(50));
            if let Err(e) = self.dataplane.ensure_vxlan(&dev).await {
                return tracing::warn!(error = %e, "ensure the VXLAN device");
            }
        }
        if let Err(e) = self.dataplane.sync_encap(&plan).await {
            tracing::warn!(error = %e, "sync encapsulation routes");
        }
    }

    /// The VTEP address: an IPAM allocation in a VXLAN pool under a fixed handle.
    async fn ensure_vtep(&self, res: &Resources, _local: Ipv4Net) -> Result<Option<Ipv4Addr>, String> {
        let Some(pool) = res
            .pools
            .values()
            .find(|p| !p.is_ipv6() && !p.disabled && p.vxlan_mode != EncapMode::Never)
        else {
            return Ok(None);
        };
        let alloc = crate::ipam::Allocation {
            container_id: "vxlan-tunnel-addr".into(),
            ifname: dataplane::encap::VXLAN_DEVICE.into(),
            node: self.cfg.node.clone(),
            network: "vxlan".into(),
            ..Default::default()
        };
        let choice = crate::ipam::PoolChoice {
            name: pool.name.clone(),
            cidr: pool.cidr,
            block_size: pool.block_size,
        };
        let policy = crate::ipam::Policy {
            strict_affinity: res.ipam_config.strict_affinity,
            max_blocks_per_host: res.ipam_config.max_blocks_per_host,
            auto_allocate_blocks: res.ipam_config.auto_allocate_blocks,
        };
        let assigned = self
            .ipam
            .assign(alloc, &[choice], policy)
            .await
            .map_err(|e| e.to_string())?;
        let IpAddr::V4(v4) = assigned.ip else {
            return Ok(None);
        };
        self.state.lock().await.vtep_ip = Some(v4);
        Ok(Some(v4))
    }

    async fn sync_nat(&self, res: &Resources) {
        let pools: Vec<crate::nat::NatPool> = res
            .pools
            .values()
            .map(|p| crate::nat::NatPool {
                cidr: p.cidr,
                nat_outgoing: p.nat_outgoing && !p.disabled,
            })
            .collect();
        {
            let st = self.state.lock().await;
            let fresh = st.nat_checked.is_some_and(|t| t.elapsed() < NAT_REFRESH);
            if st.nat_input.as_ref() == Some(&pools) && fresh {
                return;
            }
        }
        let input = pools.clone();
        // `apply` compares the loaded tables' digests first and writes only what differs.
        match tokio::task::spawn_blocking(move || crate::nat::apply(&input)).await {
            Ok(Ok(applied)) => {
                let mut st = self.state.lock().await;
                if applied == crate::nat::Applied::Updated && st.nat_input.as_ref() == Some(&pools) {
                    tracing::warn!("natOutgoing tables had drifted from the pools; restored");
                }
                st.nat_input = Some(pools);
                st.nat_checked = Some(std::time::Instant::now());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "natOutgoing table"),
            Err(e) => tracing::warn!(error = %e, "natOutgoing task"),
        }
    }

    async fn refresh_metrics(&self) {
        if !self.cfg.bgp_enabled {
            return;
        }
        let stats = self.supervisor.metrics();
        self.metrics
            .record_bird(stats.restarts, stats.applies_ok, stats.applies_failed);
        let peers = self.peers().await;
        if let Ok(peers) = &peers {
            self.metrics.record_peers(peers);
        }
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = routing_degraded(&peers, stats.applies_ok > 0);
    }

    async fn peers(&self) -> Result<Vec<super::status::PeerRow>, String> {
        let mut ctl = self.supervisor.ctl().await.map_err(|e| e.to_string())?;
        let protocols = ctl.show_protocols_all().await.map_err(|e| e.to_string())?;
        Ok(super::status::peer_rows(&protocols))
    }

    /// Stop BIRD so that peers keep our routes while lanesd is away (graceful
    /// restart); kernel routes stay (`persist`).
    pub async fn shutdown(&self) {
        if self.cfg.bgp_enabled {
            self.supervisor
                .stop_with(super::supervisor::StopMode::GracefulRestart)
                .await;
        }
    }
}

/// Node documents (labels, spec.bgp) with addresses from the registry where
/// the document gives none (lanesd autodetects and registers its own), and
/// Kubernetes' InternalIP where neither does.
pub fn merge_nodes(res: &Resources, registered: &[NodeRecord]) -> Vec<NodeInfo> {
    let mut out: BTreeMap<String, NodeInfo> = res
        .nodes
        .values()
        .map(|n| (n.name.clone(), NodeInfo::from_resource(n)))
        .collect();
    for r in registered {
        let entry = out.entry(r.name.clone()).or_insert_with(|| NodeInfo {
            name: r.name.clone(),
            labels: Default::default(),
            address: None,
            address6: None,
            as_number: None,
            rr_cluster_id: None,
        });
        if entry.address.is_none() {
            entry.address = r.ipv4().map(|a| a.addr());
        }
        if entry.as_number.is_none() {
            entry.as_number = r.as_number;
        }
    }
    for n in res.nodes.values() {
        if let Some(entry) = out.get_mut(&n.name).filter(|e| e.address.is_none()) {
            entry.address = n.internal_ipv4;
        }
    }
    out.into_values().collect()
}

/// What the sessions say about routes to other nodes: BIRD not answering although it was
/// configured (`configured`: a config was applied; before that there is nothing to lose), or
/// none of its sessions established (with graceful restart the kernel keeps the routes for a
/// while, but nothing refreshes them).
fn routing_degraded(peers: &Result<Vec<super::status::PeerRow>, String>, configured: bool) -> Option<String> {
    match peers {
        Err(_) if !configured => None,
        Err(e) => Some(format!(
            "BIRD is not answering ({e}): routes to other nodes are not maintained"
        )),
        Ok(p) if !p.is_empty() && p.iter().all(|r| r.state != "up") => Some(format!(
            "BGP: none of {} sessions is established: routes to other nodes may be missing",
            p.len()
        )),
        Ok(_) => None,
    }
}

impl crate::workload::RoutingHealth for BgpDriver {
    fn degraded(&self) -> Option<String> {
        if !self.cfg.bgp_enabled {
            return None;
        }
        self.degraded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[tonic::async_trait]
impl crate::api::node::BgpView for BgpDriver {
    async fn status(&self) -> pb::BgpStatus {
        let stats = self.supervisor.metrics();
        let (router_id, local_as, last_error, md5_peers) = {
            let st = self.state.lock().await;
            (st.router_id, st.local_as, st.last_error.clone(), st.md5_peers.clone())
        };
        let mut peers = self.peers().await;
        if let Ok(rows) = &mut peers {
            // lanesd runs in the node's netns: these are the node's own TCP counters.
            let counters = std::fs::read_to_string("/proc/net/netstat")
                .map(|t| super::status::parse_md5_counters(&t))
                .unwrap_or_default();
            for row in rows.iter_mut().filter(|r| md5_peers.contains(&r.name)) {
                if let Some(hint) = super::status::md5_hint(row, counters) {
                    row.info = if row.info.is_empty() {
                        hint
                    } else {
                        format!("{}; {hint}", row.info)
                    };
                }
            }
        }
        let bird_state = match (&peers, stats.pid) {
            (Ok(_), _) => "running",
            (Err(_), Some(_)) => "starting",
            (Err(_), None) => "stopped",
        };
        pb::BgpStatus {
            enabled: self.cfg.bgp_enabled,
            bird_state: bird_state.into(),
            router_id: router_id.map(|r| r.to_string()).unwrap_or_default(),
            local_as,
            peers: peers
                .unwrap_or_default()
                .into_iter()
                .map(|p| pb::BgpPeer {
                    name: p.name,
                    address: p.peer_address,
                    r#type: p.peer_type,
                    state: p.state,
                    since: p.since,
                    info: p.info,
                    remote_as: p.remote_as.unwrap_or(0),
                    routes_imported: p.routes_imported as u32,
                    routes_exported: p.routes_exported as u32,
                })
                .collect(),
            bird_restarts: stats.restarts as u32,
            config_applies: stats.applies_ok as u32,
            config_failures: stats.applies_failed as u32,
            last_error: last_error.or(stats.last_error).unwrap_or_default(),
        }
    }

    async fn routes(&self) -> Vec<pb::RouteEntry> {
        let mut out = Vec::new();
        if self.cfg.bgp_enabled {
            if let Ok(mut ctl) = self.supervisor.ctl().await {
                if let Ok(routes) = ctl.show_route(&Default::default()).await {
                    out.extend(routes.into_iter().filter(|r| r.primary).map(|r| {
                        pb::RouteEntry {
                            prefix: r.prefix,
                            next_hops: r.next_hops.iter().filter_map(|h| h.gateway.clone()).collect(),
                            device: r
                                .next_hops
                                .iter()
                                .filter_map(|h| h.interface.clone())
                                .collect::<Vec<_>>()
                                .join(","),
                            protocol: r.protocol,
                            kind: r.kind,
                            source: "bird".into(),
                        }
                    }));
                }
            }
        }
        if let Ok(kernel) = self.dataplane.our_routes().await {
            out.extend(kernel.into_iter().map(|(r, dev)| pb::RouteEntry {
                prefix: r.dst.to_string(),
                next_hops: r.gateway.map(|g| g.to_string()).into_iter().collect(),
                protocol: "lanes".into(),
                kind: format!("{:?}", r.kind).to_lowercase(),
                source: "kernel".into(),
                device: dev.unwrap_or_default(),
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{parse_object, Resource};
    use serde_json::json;

    fn node(name: &str, bgp_address: Option<&str>, internal_ip: &str) -> Resource {
        let mut doc = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                             "status": {"addresses": [{"type": "InternalIP", "address": internal_ip}]}});
        if let Some(a) = bgp_address {
            doc["spec"] = json!({"bgp": {"ipv4Address": a}});
        }
        parse_object("nodes", 1, doc).result.unwrap()
    }

    #[test]
    fn routing_is_degraded_when_bird_is_silent_or_no_session_is_up() {
        use super::super::status::PeerRow;
        let peer = |state: &str| PeerRow {
            state: state.into(),
            ..PeerRow::default()
        };
        assert_eq!(
            routing_degraded(&Ok(vec![]), true),
            None,
            "no peers configured: nothing to lose"
        );
        assert_eq!(routing_degraded(&Ok(vec![peer("up"), peer("start")]), true), None);
        let down = routing_degraded(&Ok(vec![peer("start"), peer("down")]), true).unwrap();
        assert!(down.contains("none of 2 sessions"), "{down}");
        let silent = routing_degraded(&Err("connect: No such file".into()), true).unwrap();
        assert!(silent.contains("BIRD is not answering"), "{silent}");
        // BIRD never configured (no node address yet, say): nothing was routed, nothing is lost.
        assert_eq!(routing_degraded(&Err("connect: No such file".into()), false), None);
    }

    /// The InternalIP (often the API's NIC) never overrides the document or the node's own
    /// registration (its primary interface); it only fills a gap.
    #[test]
    fn internal_ip_is_the_address_of_last_resort() {
        let mut res = Resources::default();
        res.insert(node("annotated", Some("192.168.100.11/24"), "192.168.122.11"));
        res.insert(node("registered", None, "192.168.122.12"));
        res.insert(node("api-only", None, "192.168.122.13"));
        let registered = [NodeRecord {
            name: "registered".into(),
            address: Some("192.168.100.12/24".into()),
            as_number: None,
            vtep_mac: None,
            vtep_ip: None,
        }];
        let address: BTreeMap<String, Option<Ipv4Addr>> = merge_nodes(&res, &registered)
            .into_iter()
            .map(|n| (n.name, n.address))
            .collect();
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(address["annotated"], ip("192.168.100.11"));
        assert_eq!(address["registered"], ip("192.168.100.12"));
        assert_eq!(address["api-only"], ip("192.168.122.13"));
    }
}
