//! Secondary (OVN) attachments: what ADD does after eth0 for each network the
//! pod selects, what DEL and GC undo.
//!
//! Per network an OVN logical switch whose `other_config:subnet` lets OVN's
//! own IPAM hand out addresses (the switch spans nodes and OVN is already the
//! one owner of its ports, so no second allocator has to agree with it);
//! requested `ips`/`mac` become static LSP addresses. Per attachment an LSP
//! named like ovn-kubernetes, a veth whose host end joins br-int with the
//! ovn-kubernetes external_ids, and a bounded wait for `ovn-installed=true`.
//! A record in the store (`secondary/<node>/<container>.<ifname>`) lets DEL
//! and GC find it all.
//!
//! Failure paths:
//! - ADD: the northbound part of one attachment (switch, port, its addresses)
//!   has one deadline, `ovn.callTimeoutMs`; NB unreachable is CNI code 11 after
//!   at most that long. Anything made is undone when a later step fails.
//! - DEL never waits on OVN: the veth goes at once; OVS port and LSP are removed
//!   when OVS/NB answer within [`DEL_BUDGET`] (at once when the NB client already
//!   knows NB is down). What is left keeps its record, flagged `pendingDelete`,
//!   and a background task ([`start_retry`]) finishes it every [`RETRY_EVERY`]
//!   once NB is back. A re-ADD of the same attachment supersedes its pending
//!   delete (both take [`Ovn`]'s cleanup lock, so the task never removes a port
//!   that ADD has just made again).
//! - GC ([`gc`]): records of attachments the runtime no longer lists, and LSPs
//!   (by `external_ids:lanes.dev/node`), br-int ports and `lov*` veths that no
//!   record accounts for (left by a crash mid-ADD).
//! - An LSP is only deleted while it still names the record's container
//!   (`lanes.dev/container`): a pod of the same name re-created elsewhere
//!   reuses the LSP name, and a late DEL of the old one must not cut it off.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ovn_bridge::{ClientOptions, Cond, ConnState, NbDb, Op, OvsDb, OVN_NORTHBOUND};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Workloads;
use crate::cni::{AttachmentKey, CniError, CniResult, Interface, IpConfig, Route};
use crate::config::OvnConfig;
use crate::dataplane::secondary::SecondarySpec;
use crate::dataplane::Dataplane;
use crate::secondary::nad::NAD_KIND;
use crate::secondary::{naming, parse_nad, parse_selection, resolve, NadError, Network, Resolved};
use crate::store::{to_value, StateStore};

/// Longest a DEL (or an ADD's undo) waits for OVS or NB before leaving the rest
/// to the retry task.
pub const DEL_BUDGET: Duration = Duration::from_secs(2);
/// How often pending deletes are retried.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Longest reconnect backoff of the OVSDB clients: an NB that is back is used
/// within about this long.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// First source-routing table of secondary interfaces (eth0's is 1000).
const FIRST_TABLE: u32 = 1001;

/// LSP `external_ids` naming the node, container and interface of an attachment.
pub const ID_NODE: &str = "lanes.dev/node";
pub const ID_CONTAINER: &str = "lanes.dev/container";
pub const ID_IFNAME: &str = "lanes.dev/ifname";
/// Logical switch and router `external_ids` naming the network lanesd made them for.
pub const ID_NETWORK: &str = "lanes.dev/network";

pub struct Ovn {
    pub nb: NbDb,
    pub ovs: OvsDb,
    pub bridge: String,
    /// Deadline of each OVSDB call and of the NB part of one attachment.
    pub call_timeout: Duration,
    /// How long ADD waits for `ovn-installed` (`ovn.installTimeoutMs`).
    pub install_timeout: Duration,
    /// Held while a pending delete is finished, and by ADD while it supersedes one.
    cleanup: tokio::sync::Mutex<()>,
    /// Bumped whenever a record is flagged pendingDelete; `swept` is the value a
    /// sweep that left nothing pending started from. They differ while some
    /// record may be pending (and at start-up, when nobody has looked yet).
    marks: AtomicU64,
    swept: AtomicU64,
    retry_started: std::sync::atomic::AtomicBool,
}

impl Ovn {
    /// Connect to the node's OVS and to the NB database, and make this node an
    /// OVN chassis: `system-id`, `hostname`, `ovn-encap-ip` (from `encapInterface`),
    /// `ovn-encap-type` and `ovn-remote` in Open_vSwitch external_ids.
    ///
    /// Both clients connect in the background and reconnect by themselves: an
    /// unreachable NB does not hold lanesd up (ADDs that need it fail with code
    /// 11 until it is back). Only the local OVS must answer here.
    pub async fn connect(cfg: &OvnConfig, node: &str, dataplane: &Dataplane) -> Result<Ovn, String> {
        let call_timeout = Duration::from_millis(cfg.call_timeout_ms.max(100));
        let opts = ClientOptions {
            call_timeout,
            backoff_max: BACKOFF_MAX,
            connect_timeout: call_timeout.min(Duration::from_secs(2)),
            ..ClientOptions::default()
        };
        let ovs_client = ovn_bridge::Client::with_options(&cfg.ovsdb, opts.clone())
            .map_err(|e| format!("ovsdb {}: {e}", cfg.ovsdb))?;
        let nb_client = ovn_bridge::Client::with_options(&cfg.northbound, opts)
            .map_err(|e| format!("northbound {}: {e}", cfg.northbound))?;
        let ovn = Ovn {
            nb: NbDb::new(nb_client),
            ovs: OvsDb::new(ovs_client),
            bridge: cfg.bridge.clone(),
            call_timeout,
            install_timeout: Duration::from_millis(cfg.install_timeout_ms),
            cleanup: tokio::sync::Mutex::new(()),
            marks: AtomicU64::new(1),
            swept: AtomicU64::new(0),
            retry_started: std::sync::atomic::AtomicBool::new(false),
        };
        let encap_ip = dataplane
            .interface_ipv4(&cfg.encap_interface)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| format!("ovn.encapInterface {}: no IPv4 address", cfg.encap_interface))?;
        let mut ids = BTreeMap::from([
            ("system-id".to_string(), node.to_string()),
            ("hostname".to_string(), node.to_string()),
            ("ovn-encap-ip".to_string(), encap_ip.addr().to_string()),
            ("ovn-encap-type".to_string(), cfg.encap_type.clone()),
        ]);
        if !cfg.southbound.is_empty() {
            ids.insert("ovn-remote".into(), cfg.southbound.clone());
        }
        ovn.ovs
            .set_open_vswitch_external_ids(&ids)
            .await
            .map_err(|e| format!("set chassis external_ids: {e}"))?;
        Ok(ovn)
    }

    fn maybe_pending(&self) -> bool {
        self.marks.load(Ordering::SeqCst) != self.swept.load(Ordering::SeqCst)
    }

    fn note_pending(&self) {
        self.marks.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether NB can be asked now: connected, or its first connect still under
    /// way (waited for, up to `wait`). A client that already failed to reach NB
    /// answers at once, so callers that can leave the work for later do not wait.
    async fn nb_ready(&self, wait: Duration) -> Result<(), String> {
        let client = self.nb.client();
        match client.state() {
            ConnState::Connected => Ok(()),
            ConnState::Connecting { last_error: None, .. } => {
                client.wait_connected(wait).await.map_err(|e| e.to_string())
            }
            other => Err(format!("northbound {}: {other}", client.remote())),
        }
    }

    /// The CNI error for NB not answering in time.
    fn nb_unreachable(&self, what: &str) -> CniError {
        let client = self.nb.client();
        CniError::try_again_later(
            "OVN northbound unreachable",
            format!(
                "{what}: no answer from {} within {:?} ({})",
                client.remote(),
                self.call_timeout,
                client.state()
            ),
        )
    }
}

/// What DEL and GC need to undo one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecondaryRecord {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub nad: String,
    pub network: String,
    pub switch: String,
    pub lsp: String,
    pub host_ifname: String,
    pub mac: String,
    pub ips: Vec<String>,
    pub mtu: u32,
    pub gateway: Option<String>,
    /// Detached, but OVS or NB has not confirmed the removal yet: the retry
    /// task (or GC) finishes it. Not an attachment any more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_delete: bool,
}

fn record_key(node: &str, container_id: &str, ifname: &str) -> String {
    format!("secondary/{node}/{container_id}.{ifname}")
}

fn record_prefix(node: &str) -> String {
    format!("secondary/{node}/")
}

/// The pod's identity and eth0, as the primary ADD left them.
pub struct PodContext {
    pub container_id: String,
    pub netns: String,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub primary_ip: Option<Ipv4Addr>,
    /// The pod's `k8s.v1.cni.cncf.io/networks` annotation, as ADD read it.
    pub networks: Option<String>,
}

/// What removing an attachment needs; borrowed from [`Workloads`] or owned by
/// the retry task.
struct Parts<'a> {
    node: &'a str,
    store: &'a dyn StateStore,
    dataplane: &'a Dataplane,
    ovn: &'a Ovn,
}

impl<'a> Parts<'a> {
    fn of(w: &'a Workloads, ovn: &'a Ovn) -> Self {
        Parts {
            node: &w.node,
            store: w.store.as_ref(),
            dataplane: &w.dataplane,
            ovn,
        }
    }
}

type NadKey = (String, String);

/// Every NAD in the resources, by `(namespace, name)`: the networks, and the ones that do not
/// parse with why.
fn parse_nads(res: &crate::resources::Resources) -> (BTreeMap<NadKey, Network>, BTreeMap<NadKey, NadError>) {
    let mut networks = BTreeMap::new();
    let mut broken = BTreeMap::new();
    for raw in res.others_of_kind(NAD_KIND) {
        let key = (
            raw.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            raw.metadata.name.clone(),
        );
        match parse_nad(raw) {
            Ok(n) => {
                networks.insert(n.key.clone(), n);
            }
            Err(e) => {
                broken.insert(key, e);
            }
        }
    }
    (networks, broken)
}

/// Attach every network the pod's `k8s.v1.cni.cncf.io/networks` annotation
/// selects; returns the result entries to append. All-or-nothing.
pub async fn attach_selected(w: &Workloads, pod: &PodContext) -> Result<CniResult, CniError> {
    let res = w.resources();
    let Some(annotation) = pod.networks.as_deref() else {
        return Ok(CniResult::default());
    };
    let selections = parse_selection(annotation, &pod.namespace)?;
    if selections.is_empty() {
        return Ok(CniResult::default());
    }
    let (networks, broken) = parse_nads(&res);
    // A selected NAD that is there but unusable is named with its problem, not "not found".
    for (i, s) in selections.iter().enumerate() {
        if let Some(e) = broken.get(&s.nad_key()) {
            let msg = if e.not_ours {
                format!("{NAD_KIND} {} is not a lanes network", e.nad)
            } else {
                format!("invalid {NAD_KIND} {}", e.nad)
            };
            return Err(CniError::invalid_config(
                msg,
                format!("networks[{i}] ({}) selects {}: {}", s.label(), e.nad, e.details()),
            ));
        }
    }
    let resolved = resolve(&selections, &networks)?;
    let ovn = w.ovn.as_ref().ok_or_else(|| {
        CniError::invalid_config(
            "secondary networks requested but OVN is off",
            format!(
                "pod {}/{} selects networks; set ovn.enabled in lanesd's config",
                pod.namespace, pod.name
            ),
        )
    })?;
    let mut result = CniResult::default();
    let mut done: Vec<SecondaryRecord> = Vec::new();
    for (i, r) in resolved.iter().enumerate() {
        match attach_one(w, ovn, pod, r, FIRST_TABLE + i as u32).await {
            Ok((rec, part)) => {
                done.push(rec);
                result.append(part);
            }
            Err(e) => {
                for rec in done.iter().rev() {
                    remove(&Parts::of(w, ovn), rec, DEL_BUDGET).await;
                }
                return Err(e);
            }
        }
    }
    Ok(result)
}

/// One NB step of an ADD, within the attachment's NB deadline.
async fn nb_step<T>(
    ovn: &Ovn,
    deadline: Instant,
    what: &str,
    fut: impl Future<Output = Result<T, ovn_bridge::Error>>,
) -> Result<T, CniError> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ (ovn_bridge::Error::Timeout { .. } | ovn_bridge::Error::Closed { .. }))) => {
            tracing::debug!(error = %e, "{what}");
            Err(ovn.nb_unreachable(what))
        }
        Ok(Err(e)) => Err(CniError::try_again_later(format!("OVN: {what}"), e.to_string())),
        Err(_) => Err(ovn.nb_unreachable(what)),
    }
}

pub(crate) async fn attach_one(
    w: &Workloads,
    ovn: &Arc<Ovn>,
    pod: &PodContext,
    r: &Resolved,
    table: u32,
) -> Result<(SecondaryRecord, CniResult), CniError> {
    let parts = Parts::of(w, ovn);
    let net = &r.network;
    let nad = net.nad_name();
    let lsp = naming::lsp_name(&nad, &pod.namespace, &pod.name);
    let host_ifname = naming::host_ifname(&pod.container_id, &r.interface);
    supersede_pending(&parts, &record_key(&w.node, &pod.container_id, &r.interface), &lsp).await;
    // A veth left under this name (a repeated ADD, a crash mid-ADD) is replaced,
    // and its OVS port with it (its ovn-installed would be stale).
    if w.dataplane.link_mtu(&host_ifname).await.ok().flatten().is_some() {
        w.dataplane
            .teardown_secondary(&host_ifname)
            .await
            .map_err(|e| CniError::dataplane("remove a stale secondary veth", e.to_string()))?;
        match tokio::time::timeout(ovn.call_timeout, ovn.ovs.delete_port(&ovn.bridge, &host_ifname)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(CniError::try_again_later("OVS: remove a stale port", e.to_string()));
            }
            Err(_) => {
                return Err(CniError::try_again_later(
                    "OVS: remove a stale port",
                    format!("{host_ifname}: no answer within {:?}", ovn.call_timeout),
                ));
            }
        }
    }
    let deadline = Instant::now() + ovn.call_timeout;
    nb_step(ovn, deadline, "logical switch", ensure_switch(ovn, net)).await?;
    let mut lsp_ids = BTreeMap::from([
        (ID_NODE.to_string(), w.node.clone()),
        (ID_CONTAINER.to_string(), pod.container_id.clone()),
        (ID_IFNAME.to_string(), r.interface.clone()),
        ("pod".to_string(), "true".to_string()),
        ("namespace".to_string(), pod.namespace.clone()),
        (naming::EXTERNAL_ID_NAD.to_string(), nad.clone()),
        (naming::EXTERNAL_ID_NETWORK.to_string(), net.net_name.clone()),
    ]);
    if let Some(uid) = &pod.uid {
        lsp_ids.insert("iface-id-ver".into(), uid.clone());
    }
    // Requested MAC/IPs are static; otherwise OVN's IPAM picks (dynamic).
    let static_addr = !r.selection.ips.is_empty() || r.selection.mac.is_some();
    let addresses = if static_addr {
        let ip = r.selection.ips.first().map(|n| n.addr());
        let mac = r
            .selection
            .mac
            .clone()
            .or_else(|| ip.map(naming::mac_from_ip))
            .unwrap_or_else(|| naming::mac_from_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        let ips: Vec<String> = r.selection.ips.iter().map(|n| n.addr().to_string()).collect();
        vec![format!("{mac} {}", ips.join(" ")).trim().to_string()]
    } else {
        vec!["dynamic".to_string()]
    };
    // Port security needs a concrete "MAC IP"; for dynamic addresses it is set
    // once northd has assigned them (below).
    let security = if static_addr { addresses.clone() } else { Vec::new() };
    let record_undo = SecondaryRecord {
        container_id: pod.container_id.clone(),
        ifname: r.interface.clone(),
        netns: pod.netns.clone(),
        pod_namespace: pod.namespace.clone(),
        pod_name: pod.name.clone(),
        nad: nad.clone(),
        network: net.net_name.clone(),
        switch: net.switch_name.clone(),
        lsp: lsp.clone(),
        host_ifname,
        mac: String::new(),
        ips: Vec::new(),
        mtu: net.mtu,
        gateway: None,
        pending_delete: false,
    };
    // From here on the LSP may exist (a transaction that timed out may still
    // have been applied): every failure undoes.
    let ensured = nb_step(
        ovn,
        deadline,
        "logical switch port",
        ovn.nb
            .ensure_lsp(&net.switch_name, &lsp, &addresses, &security, &lsp_ids),
    )
    .await;
    if let Err(e) = ensured {
        remove(&parts, &record_undo, DEL_BUDGET).await;
        return Err(e);
    }
    let (mac, ips) = match lsp_address(ovn, deadline, &lsp, &addresses[0], net).await {
        Ok(a) => a,
        Err(e) => {
            remove(&parts, &record_undo, DEL_BUDGET).await;
            return Err(e);
        }
    };
    if !static_addr {
        let assigned = std::iter::once(mac.clone())
            .chain(ips.iter().map(|n| n.addr().to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        let secured = nb_step(
            ovn,
            deadline,
            "port security",
            ovn.nb
                .ensure_lsp(&net.switch_name, &lsp, &addresses, &[assigned], &lsp_ids),
        )
        .await;
        if let Err(e) = secured {
            remove(&parts, &record_undo, DEL_BUDGET).await;
            return Err(e);
        }
    }
    let gateway = r.selection.default_route.first().copied().or(net.gateway);
    let rec = SecondaryRecord {
        mac: mac.clone(),
        ips: ips.iter().map(|n| n.to_string()).collect(),
        gateway: gateway.map(|g| g.to_string()),
        ..record_undo
    };
    if let Err(e) = wire(w, ovn, pod, r, &rec, &ips, gateway, table).await {
        remove(&parts, &rec, DEL_BUDGET).await;
        return Err(e);
    }
    let key = record_key(&w.node, &pod.container_id, &r.interface);
    let stored = match to_value(&key, &rec) {
        Ok(value) => put(w.store.as_ref(), &key, &value).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        remove(&parts, &rec, DEL_BUDGET).await;
        return Err(CniError::datastore("record the attachment", e));
    }
    let part = CniResult {
        interfaces: vec![
            Interface {
                name: rec.host_ifname.clone(),
                ..Default::default()
            },
            Interface {
                name: r.interface.clone(),
                mac: Some(mac),
                sandbox: Some(pod.netns.clone()),
                mtu: Some(net.mtu),
                ..Default::default()
            },
        ],
        ips: ips.iter().map(|n| IpConfig::new(*n, gateway, Some(1))).collect(),
        routes: match (r.selection.default_route.first(), gateway) {
            (Some(_), Some(gw)) => vec![Route::new("0.0.0.0/0".parse().expect("literal"), Some(gw))],
            _ => Vec::new(),
        },
        ..Default::default()
    };
    Ok((rec, part))
}

#[allow(clippy::too_many_arguments)]
async fn wire(
    w: &Workloads,
    ovn: &Ovn,
    pod: &PodContext,
    r: &Resolved,
    rec: &SecondaryRecord,
    ips: &[IpNet],
    gateway: Option<IpAddr>,
    table: u32,
) -> Result<(), CniError> {
    let mac = crate::dataplane::neigh::parse_mac(&rec.mac)
        .and_then(|m| <[u8; 6]>::try_from(m).ok())
        .ok_or_else(|| CniError::internal("bad MAC from OVN", rec.mac.clone()))?;
    let res = w.resources();
    let mut primary_routes: Vec<IpNet> = res.pools.values().filter(|p| !p.is_ipv6()).map(|p| p.cidr).collect();
    primary_routes.extend(res.bgp_settings(&w.node).service_cluster_ips.iter().copied());
    primary_routes.extend(w.service_cidrs.iter().copied());
    primary_routes.sort();
    primary_routes.dedup();
    let spec = SecondarySpec {
        netns: PathBuf::from(&pod.netns),
        ifname: r.interface.clone(),
        host_ifname: rec.host_ifname.clone(),
        mac,
        addresses: ips.to_vec(),
        mtu: rec.mtu,
        gateway: gateway.and_then(|g| match g {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }),
        default_route: !r.selection.default_route.is_empty(),
        table,
        primary_ifname: "eth0".into(),
        primary_address: pod.primary_ip,
        primary_routes: primary_routes.into_iter().filter(|c| c.addr().is_ipv4()).collect(),
    };
    w.dataplane
        .setup_secondary(&spec)
        .await
        .map_err(|e| super::add::dataplane_error(&e, &pod.netns, &r.interface))?;
    let ids = naming::PortIds {
        iface_id: &rec.lsp,
        pod_uid: pod.uid.as_deref(),
        mac: &rec.mac,
        container_id: &pod.container_id,
        ips,
        network: &rec.network,
        nad: &rec.nad,
    }
    .external_ids();
    ovn.ovs
        .ensure_port(&ovn.bridge, &rec.host_ifname, "", &ids)
        .await
        .map_err(|e| CniError::try_again_later("OVS: add the port to the integration bridge", e.to_string()))?;
    // Bounded by `ovn.installTimeoutMs`; cut short when lanesd shuts down. Either way the
    // caller rolls back what this ADD made.
    let started = Instant::now();
    let waited = ovn
        .ovs
        .wait_interface_column(
            &rec.host_ifname,
            "external_ids:ovn-installed",
            "true",
            ovn.install_timeout,
            w.stopping(),
        )
        .await;
    w.metrics.ovn_install_wait.observe(
        waited
            .as_ref()
            .copied()
            .unwrap_or_else(|_| started.elapsed())
            .as_secs_f64(),
    );
    match waited {
        Ok(_) => Ok(()),
        Err(e @ ovn_bridge::Error::Cancelled { .. }) => Err(CniError::try_again_later(
            "lanesd is shutting down",
            format!("{} (LSP {}): {e}", rec.host_ifname, rec.lsp),
        )),
        Err(e) => Err(CniError::try_again_later(
            "OVN did not install the port in time",
            format!(
                "{} (LSP {}): {e} (ovn.installTimeoutMs {}; is ovn-controller running on this node?)",
                rec.host_ifname,
                rec.lsp,
                ovn.install_timeout.as_millis()
            ),
        )),
    }
}

async fn ensure_switch(ovn: &Ovn, net: &Network) -> Result<(), ovn_bridge::Error> {
    let mut other = BTreeMap::new();
    if let Some(IpNet::V4(subnet)) = net.subnets.iter().find(|s| s.addr().is_ipv4()) {
        other.insert("subnet".to_string(), subnet.to_string());
        let mut exclude: Vec<String> = net.exclude.iter().map(ovn_range).collect();
        if let Some(gw) = net.gateway {
            exclude.push(gw.to_string());
        }
        if !exclude.is_empty() {
            other.insert("exclude_ips".to_string(), exclude.join(" "));
        }
    }
    other.insert("mtu".to_string(), net.mtu.to_string());
    // `lanes.dev/network` marks what lanesd made (and may remove once the NAD is gone).
    let ids = BTreeMap::from([
        ("k8s.ovn.org/network".to_string(), net.net_name.clone()),
        (ID_NETWORK.to_string(), net.net_name.clone()),
    ]);
    ovn.nb.ensure_logical_switch(&net.switch_name, &other, &ids).await?;
    // The NAD's `gateway` is a logical router port on the switch: it answers ARP and ping for
    // that address, so a pod's default route via the lane has a first hop that exists.
    if let Some(gw) = gateway_port(net) {
        ovn.nb.ensure_logical_router(&gw.router, &ids).await?;
        ovn.nb
            .connect_switch_to_router(
                &net.switch_name,
                &gw.router,
                &gw.router_port,
                &gw.switch_port,
                &gw.mac,
                std::slice::from_ref(&gw.network),
            )
            .await?;
    }
    Ok(())
}

/// The OVN objects of a network's gateway, named as ovn-kubernetes names its cluster router's
/// (`<prefix>ovn_cluster_router`, `rtos-<switch>` on it, `stor-<switch>` on the switch).
#[derive(Debug, PartialEq, Eq)]
struct GatewayPort {
    router: String,
    router_port: String,
    switch_port: String,
    mac: String,
    /// `10.144.0.1/16`: the gateway address with its subnet's prefix.
    network: String,
}

/// The gateway router of network `net_name` (whether it has one or not).
fn router_name(net_name: &str) -> String {
    naming::network_prefix(net_name) + "ovn_cluster_router"
}

fn gateway_port(net: &Network) -> Option<GatewayPort> {
    let gw = net.gateway?;
    let subnet = net.subnet_for(gw)?;
    Some(GatewayPort {
        router: router_name(&net.net_name),
        router_port: format!("rtos-{}", net.switch_name),
        switch_port: format!("stor-{}", net.switch_name),
        mac: naming::mac_from_ip(gw),
        network: format!("{gw}/{}", subnet.prefix_len()),
    })
}

/// OVN's `exclude_ips` syntax: an address, or `first..last` for a range.
fn ovn_range(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        format!("{}..{}", net.network(), net.broadcast())
    }
}

/// The LSP's MAC and addresses: static ones as given, dynamic ones once
/// northd has assigned them (by the NB deadline).
async fn lsp_address(
    ovn: &Ovn,
    deadline: Instant,
    lsp: &str,
    addresses: &str,
    net: &Network,
) -> Result<(String, Vec<IpNet>), CniError> {
    let text = if addresses == "dynamic" {
        let started = Instant::now();
        loop {
            let read = nb_step(
                ovn,
                deadline,
                "read dynamic addresses",
                ovn.nb.get_lsp_dynamic_addresses(lsp),
            )
            .await;
            match read {
                Ok(Some(a)) if !a.is_empty() => break a,
                Ok(_) => {}
                // NB did not answer: say so, not that IPAM gave nothing.
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(CniError::try_again_later(
                    "OVN IPAM assigned no address",
                    format!(
                        "LSP {lsp} on {}: no dynamic_addresses after {:?} (is ovn-northd running?)",
                        net.switch_name,
                        started.elapsed()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        addresses.to_string()
    };
    let mut parts = text.split_whitespace();
    let mac = parts.next().unwrap_or_default().to_string();
    let ips = parts
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| {
            let plen = net.subnet_for(ip).map(|s| s.prefix_len()).unwrap_or(32);
            IpNet::new(ip, plen).expect("prefix within range")
        })
        .collect();
    Ok((mac, ips))
}

/// Remove an attachment's veth, OVS port and LSP (each OVSDB step within
/// `budget`), then its record. What OVS or NB did not confirm is left to the
/// retry task: the record stays, flagged pendingDelete. True when all is gone.
async fn remove(p: &Parts<'_>, rec: &SecondaryRecord, budget: Duration) -> bool {
    let key = record_key(p.node, &rec.container_id, &rec.ifname);
    match teardown(p, rec, budget).await {
        Ok(()) => {
            if let Ok(Some(e)) = p.store.get(&key).await {
                let _ = p.store.delete(&key, &e.revision).await;
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, lsp = %rec.lsp, "secondary attachment only partly removed; retrying in the background");
            mark_pending(p.store, p.node, rec).await;
            p.ovn.note_pending();
            false
        }
    }
}

/// Veth (at once), OVS port and LSP; every step is tried, the failures reported together.
async fn teardown(p: &Parts<'_>, rec: &SecondaryRecord, budget: Duration) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Err(e) = p.dataplane.teardown_secondary(&rec.host_ifname).await {
        problems.push(format!("veth {}: {e}", rec.host_ifname));
    }
    match tokio::time::timeout(budget, p.ovn.ovs.delete_port(&p.ovn.bridge, &rec.host_ifname)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!("OVS port {}: {e}", rec.host_ifname)),
        Err(_) => problems.push(format!("OVS port {}: no answer within {budget:?}", rec.host_ifname)),
    }
    if let Err(e) = delete_lsp_owned(p.ovn, rec, budget).await {
        problems.push(format!("LSP {}: {e}", rec.lsp));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Delete the record's LSP, unless it now belongs to another container.
async fn delete_lsp_owned(ovn: &Ovn, rec: &SecondaryRecord, budget: Duration) -> Result<(), String> {
    ovn.nb_ready(budget).await?;
    let work = async {
        match ovn.nb.get_lsp(&rec.lsp).await? {
            None => Ok(()),
            Some(l) if l.external_ids.get(ID_CONTAINER).is_some_and(|c| *c != rec.container_id) => {
                tracing::info!(
                    lsp = %rec.lsp,
                    owner = %l.external_ids[ID_CONTAINER],
                    container = %rec.container_id,
                    "LSP belongs to another container now; left alone"
                );
                Ok(())
            }
            Some(_) => ovn.nb.delete_lsp(&rec.switch, &rec.lsp).await.map(drop),
        }
    };
    match tokio::time::timeout(budget, work).await {
        Ok(r) => r.map_err(|e: ovn_bridge::Error| e.to_string()),
        Err(_) => Err(format!("no answer from {} within {budget:?}", ovn.nb.client().remote())),
    }
}

/// Store the record flagged pendingDelete (creating it if ADD had not yet).
async fn mark_pending(store: &dyn StateStore, node: &str, rec: &SecondaryRecord) {
    let key = record_key(node, &rec.container_id, &rec.ifname);
    let rec = SecondaryRecord {
        pending_delete: true,
        ..rec.clone()
    };
    let stored = match to_value(&key, &rec) {
        Ok(v) => put(store, &key, &v).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, key, "could not flag the attachment for a later delete; GC will find its LSP");
    }
}

/// Before an ADD makes (container, ifname) again: a pending delete of the same
/// attachment is finished here (its LSP is kept when it has the same name: ADD
/// is about to ensure it), so the retry task cannot remove what ADD makes.
async fn supersede_pending(p: &Parts<'_>, key: &str, lsp: &str) {
    if !p.ovn.maybe_pending() {
        return;
    }
    let _held = p.ovn.cleanup.lock().await;
    let Ok(Some(e)) = p.store.get(key).await else { return };
    let Ok(rec) = e.decode::<SecondaryRecord>() else { return };
    if !rec.pending_delete {
        return;
    }
    let _ = p.dataplane.teardown_secondary(&rec.host_ifname).await;
    let _ = tokio::time::timeout(DEL_BUDGET, p.ovn.ovs.delete_port(&p.ovn.bridge, &rec.host_ifname)).await;
    if rec.lsp != lsp && delete_lsp_owned(p.ovn, &rec, DEL_BUDGET).await.is_err() {
        return; // still pending; the retry task finishes it
    }
    let _ = p.store.delete(key, &e.revision).await;
}

/// Under the cleanup lock: re-read the record at `key` and remove the
/// attachment (when `only_pending`, only if it is still flagged). Ok when gone.
async fn finish(p: &Parts<'_>, key: &str, only_pending: bool) -> Result<(), String> {
    let _held = p.ovn.cleanup.lock().await;
    let e = match p.store.get(key).await {
        Ok(Some(e)) => e,
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("{key}: {e}")),
    };
    let rec: SecondaryRecord = e.decode().map_err(|e| e.to_string())?;
    if only_pending && !rec.pending_delete {
        return Ok(()); // attached again meanwhile
    }
    match teardown(p, &rec, p.ovn.call_timeout).await {
        Ok(()) => {
            p.store
                .delete(key, &e.revision)
                .await
                .map_err(|e| format!("{key}: {e}"))?;
            if rec.pending_delete {
                tracing::info!(lsp = %rec.lsp, container = %rec.container_id, "finished a pending secondary delete");
            }
            Ok(())
        }
        Err(err) => {
            if !rec.pending_delete {
                mark_pending(p.store, p.node, &rec).await;
                p.ovn.note_pending();
            }
            Err(format!("{}/{}: {err}", rec.container_id, rec.ifname))
        }
    }
}

/// DEL: every secondary attachment of the container (or only `ifname`, as a
/// Multus delegate asks). The veth always goes at once; OVS port and LSP when
/// they answer within [`DEL_BUDGET`], else the record stays flagged for the
/// retry task. Never fails because OVN is down.
pub async fn detach(w: &Workloads, container_id: &str, ifname: Option<&str>) -> Result<usize, CniError> {
    let entries = w
        .store
        .list(&record_prefix(&w.node))
        .await
        .map_err(|e| CniError::datastore("list secondary attachments", e.to_string()))?;
    let mut n = 0;
    for e in entries {
        let Ok(rec) = e.decode::<SecondaryRecord>() else {
            continue;
        };
        if rec.container_id != container_id || ifname.is_some_and(|i| i != rec.ifname) {
            continue;
        }
        n += 1;
        match &w.ovn {
            Some(ovn) => {
                remove(&Parts::of(w, ovn), &rec, DEL_BUDGET).await;
                start_retry(w);
            }
            None => {
                // OVN is off now: the LSP waits, flagged, for it to be back on.
                let _ = w.dataplane.teardown_secondary(&rec.host_ifname).await;
                if !rec.pending_delete {
                    mark_pending(w.store.as_ref(), &w.node, &rec).await;
                }
            }
        }
    }
    Ok(n)
}

/// Every secondary attachment of this node (for `lanesctl attachments` and
/// network-status); detached ones waiting for OVN are not listed.
pub async fn records(store: &dyn StateStore, node: &str) -> Vec<SecondaryRecord> {
    store
        .list(&record_prefix(node))
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.decode::<SecondaryRecord>().ok())
        .filter(|r| !r.pending_delete)
        .collect()
}

/// Records flagged pendingDelete (detached, OVN cleanup not yet confirmed).
pub async fn pending_records(store: &dyn StateStore, node: &str) -> Vec<SecondaryRecord> {
    store
        .list(&record_prefix(node))
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.decode::<SecondaryRecord>().ok())
        .filter(|r| r.pending_delete)
        .collect()
}

/// Start the task that finishes pending deletes every [`RETRY_EVERY`] (once;
/// a no-op without OVN). lanesd calls it at start-up, so deletes left pending
/// before a restart are finished too.
pub fn start_retry(w: &Workloads) {
    let Some(ovn) = w.ovn.clone() else { return };
    if ovn.retry_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let (node, store, dataplane) = (w.node.clone(), w.store.clone(), w.dataplane.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            if !ovn.maybe_pending() {
                continue;
            }
            let mark = ovn.marks.load(Ordering::SeqCst);
            let p = Parts {
                node: &node,
                store: store.as_ref(),
                dataplane: &dataplane,
                ovn: &ovn,
            };
            if retry_pending(&p).await {
                let _ = ovn.swept.fetch_max(mark, Ordering::SeqCst);
            }
        }
    });
}

/// One pass over the pending deletes; true when none is left.
async fn retry_pending(p: &Parts<'_>) -> bool {
    let entries = match p.store.list(&record_prefix(p.node)).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "list secondary records");
            return false;
        }
    };
    let mut clear = true;
    for e in entries {
        let Ok(rec) = e.decode::<SecondaryRecord>() else {
            continue;
        };
        if !rec.pending_delete {
            continue;
        }
        if let Err(err) = finish(p, &e.key, true).await {
            tracing::debug!(error = %err, "pending secondary delete not finished yet");
            clear = false;
        }
    }
    clear
}

/// CNI GC's secondary part, for the CNI network `network` with the runtime's
/// `valid` attachments; call it before the primary sweep (it looks at the
/// pod's eth0 allocation to tell which network made a record).
///
/// - A record is in `network`'s scope when the container's eth0 allocation is
///   on `network` (attachments made from the pod annotation), or, with no
///   allocation, when the record's network is `network` (a Multus delegate).
///   In scope and no valid attachment of that container: removed. Records
///   flagged pendingDelete are finished whatever their scope.
/// - Then whatever no remaining record accounts for — LSPs with
///   `external_ids:lanes.dev/node` = this node, `lov*` ports on br-int, `lov*`
///   veths — left by a crash mid-ADD.
///
/// Returns how many attachments were removed; errors do not stop the sweep and
/// are reported together.
pub async fn gc(w: &Workloads, network: &str, valid: &HashSet<AttachmentKey>) -> Result<usize, String> {
    let Some(ovn) = w.ovn.as_ref() else { return Ok(0) };
    let p = Parts::of(w, ovn);
    let valid_containers: HashSet<&str> = valid.iter().map(|k| k.container_id.as_str()).collect();
    let primary_network: HashMap<String, String> = w
        .ipam
        .local_allocations()
        .await
        .into_iter()
        .map(|(_, a, _)| (a.container_id, a.network))
        .collect();
    let entries = w
        .store
        .list(&record_prefix(&w.node))
        .await
        .map_err(|e| format!("list secondary records: {e}"))?;
    let mut keep_lsps = HashSet::new();
    let mut keep_links = HashSet::new();
    let mut removed = HashSet::new();
    let mut errors = Vec::new();
    for e in entries {
        let rec = match e.decode::<SecondaryRecord>() {
            Ok(r) => r,
            Err(err) => {
                errors.push(format!("{}: {err}", e.key));
                continue;
            }
        };
        let scope = primary_network.get(&rec.container_id).unwrap_or(&rec.network);
        let live = !rec.pending_delete && (scope != network || valid_containers.contains(rec.container_id.as_str()));
        if !live {
            match finish(&p, &e.key, false).await {
                Ok(()) => {
                    removed.insert(rec.host_ifname.clone());
                    continue;
                }
                Err(err) => errors.push(err),
            }
        }
        keep_lsps.insert(rec.lsp.clone());
        keep_links.insert(rec.host_ifname.clone());
    }
    match lsps_of_node(ovn, &w.node).await {
        Ok(lsps) => {
            for (name, ids) in lsps.into_iter().filter(|(n, _)| !keep_lsps.contains(n)) {
                let (Some(network), Some(cid)) = (ids.get(naming::EXTERNAL_ID_NETWORK), ids.get(ID_CONTAINER)) else {
                    errors.push(format!(
                        "LSP {name}: no {} or {ID_CONTAINER} external_id",
                        naming::EXTERNAL_ID_NETWORK
                    ));
                    continue;
                };
                let switch = naming::switch_name(network);
                match tokio::time::timeout(ovn.call_timeout, ovn.nb.delete_lsp(&switch, &name)).await {
                    Ok(Ok(_)) => {
                        let ifname = ids.get(ID_IFNAME).map(String::as_str).unwrap_or_default();
                        removed.insert(naming::host_ifname(cid, ifname));
                    }
                    Ok(Err(e)) => errors.push(format!("stale LSP {name}: {e}")),
                    Err(_) => errors.push(format!("stale LSP {name}: no answer within {:?}", ovn.call_timeout)),
                }
            }
        }
        Err(e) => errors.push(format!("list this node's LSPs: {e}")),
    }
    match remove_idle_networks(w, ovn).await {
        Ok(n) if n > 0 => tracing::info!(switches = n, "GC removed logical switches of deleted NADs"),
        Ok(_) => {}
        Err(e) => errors.push(e),
    }
    let stale = |name: &String| name.starts_with(naming::HOST_IFNAME_PREFIX) && !keep_links.contains(name);
    match tokio::time::timeout(ovn.call_timeout, ovn.ovs.list_ports(&ovn.bridge)).await {
        Ok(Ok(ports)) => {
            for port in ports.iter().filter(|n| stale(n)) {
                match tokio::time::timeout(ovn.call_timeout, ovn.ovs.delete_port(&ovn.bridge, port)).await {
                    Ok(Ok(_)) => {
                        removed.insert(port.clone());
                    }
                    Ok(Err(e)) => errors.push(format!("stale OVS port {port}: {e}")),
                    Err(_) => errors.push(format!(
                        "stale OVS port {port}: no answer within {:?}",
                        ovn.call_timeout
                    )),
                }
            }
        }
        Ok(Err(e)) => errors.push(format!("list ports of {}: {e}", ovn.bridge)),
        Err(_) => errors.push(format!(
            "list ports of {}: no answer within {:?}",
            ovn.bridge, ovn.call_timeout
        )),
    }
    match w.dataplane.list_host_links(naming::HOST_IFNAME_PREFIX).await {
        Ok(links) => {
            for (name, _) in links.into_iter().filter(|(n, _)| stale(n)) {
                match w.dataplane.teardown_secondary(&name).await {
                    Ok(()) => {
                        removed.insert(name);
                    }
                    Err(e) => errors.push(format!("stale veth {name}: {e}")),
                }
            }
        }
        Err(e) => errors.push(format!("list {}* veths: {e}", naming::HOST_IFNAME_PREFIX)),
    }
    if !removed.is_empty() {
        tracing::info!(
            removed = removed.len(),
            network,
            "GC removed stale secondary attachments"
        );
    }
    if errors.is_empty() {
        Ok(removed.len())
    } else {
        Err(errors.join("; "))
    }
}

/// The logical switches (and gateway routers) lanesd made for networks no NAD defines any more,
/// once no pod port is left on them on any node. While some NAD of ours cannot be parsed, its
/// network is unknown, so nothing is removed (and GC does not fail for it).
async fn remove_idle_networks(w: &Workloads, ovn: &Ovn) -> Result<usize, String> {
    let (networks, broken) = parse_nads(&w.resources());
    if let Some(e) = broken.values().find(|e| !e.not_ours) {
        tracing::info!(nad = %e.nad, "invalid NAD: idle logical switches are left for a later GC");
        return Ok(0);
    }
    let live: HashSet<String> = networks.into_values().map(|n| n.net_name).collect();
    let bounded = |what: String| move |_| format!("{what}: no answer within {:?}", ovn.call_timeout);
    let switches = tokio::time::timeout(ovn.call_timeout, ovn.nb.logical_switches_with(ID_NETWORK))
        .await
        .map_err(bounded("list logical switches".into()))?
        .map_err(|e| format!("list logical switches: {e}"))?;
    let mut removed = 0;
    for (switch, net) in switches.into_iter().filter(|(_, net)| !live.contains(net)) {
        let router = router_name(&net);
        let deleted = tokio::time::timeout(
            ovn.call_timeout,
            ovn.nb.delete_idle_logical_switch(&switch, Some(&router)),
        )
        .await
        .map_err(bounded(format!("delete logical switch {switch}")))?
        .map_err(|e| format!("delete logical switch {switch}: {e}"))?;
        if deleted {
            removed += 1;
        }
    }
    Ok(removed)
}

/// LSPs whose `external_ids` say this node made them: (name, external_ids).
async fn lsps_of_node(ovn: &Ovn, node: &str) -> Result<Vec<(String, BTreeMap<String, String>)>, String> {
    ovn.nb_ready(ovn.call_timeout).await?;
    let pair = BTreeMap::from([(ID_NODE.to_string(), node.to_string())]);
    let select = Op::select(
        "Logical_Switch_Port",
        vec![Cond::includes("external_ids", ovn_bridge::value::string_map(&pair))],
    )
    .columns(&["name", "external_ids"]);
    let results = ovn
        .nb
        .client()
        .transact(OVN_NORTHBOUND, &[select])
        .await
        .map_err(|e| e.to_string())?;
    Ok(results
        .first()
        .map(|r| {
            r.rows
                .iter()
                .filter_map(|row| Some((row.string("name")?, row.string_map("external_ids"))))
                .collect()
        })
        .unwrap_or_default())
}

async fn put(store: &dyn StateStore, key: &str, value: &serde_json::Value) -> Result<(), String> {
    match store.get(key).await.map_err(|e| e.to_string())? {
        Some(e) => store
            .update(key, value, &e.revision)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        None => store.create(key, value).await.map(drop).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::meta::ObjectMeta;
    use crate::resources::RawResource;

    fn network(config: &str) -> Network {
        parse_nad(&RawResource {
            api_version: crate::resources::API_NAD.into(),
            kind: NAD_KIND.into(),
            metadata: ObjectMeta {
                name: "yusur-ovn".into(),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: serde_json::json!({ "config": config }),
            source: "nads.yaml".into(),
        })
        .unwrap()
    }

    #[test]
    fn a_nad_gateway_becomes_a_router_port_on_the_switch() {
        let with = network(
            r#"{"cniVersion":"1.0.0","name":"yusur-ovn","type":"lanes","subnets":"10.144.0.0/16","gateway":"10.144.0.1"}"#,
        );
        assert_eq!(
            gateway_port(&with),
            Some(GatewayPort {
                router: "yusur.ovn_ovn_cluster_router".into(),
                router_port: "rtos-yusur.ovn_ovn_layer2_switch".into(),
                switch_port: "stor-yusur.ovn_ovn_layer2_switch".into(),
                mac: "0a:58:0a:90:00:01".into(),
                network: "10.144.0.1/16".into(),
            })
        );
        let without = network(r#"{"cniVersion":"1.0.0","name":"yusur-ovn","type":"lanes","subnets":"10.144.0.0/16"}"#);
        assert_eq!(gateway_port(&without), None);
    }
}
