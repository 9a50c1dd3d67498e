//! Secondary (OVN) attachments: what ADD does after eth0 for each network the
//! pod selects, what DEL and GC undo.
//!
//! Per network an OVN logical switch whose `other_config:subnet` lets OVN's
//! own IPAM hand out addresses (the switch spans nodes and OVN is already the
//! one owner of its ports, so no second allocator has to agree with it);
//! requested `ips`/`mac` become static LSP addresses. Per attachment an LSP
//! named like ovn-kubernetes, a veth whose host end joins br-int with the
//! ovn-kubernetes external_ids, and a bounded wait for `ovn-installed=true`.
//! Anything made is undone when a later step fails. A record in the store
//! (`secondary/<node>/<container>.<ifname>`) lets DEL and GC find it all.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ovn_bridge::{NbDb, OvsDb};
use serde::{Deserialize, Serialize};

use super::Workloads;
use crate::cni::{CniError, CniResult, Interface, IpConfig, Route};
use crate::config::OvnConfig;
use crate::dataplane::secondary::SecondarySpec;
use crate::dataplane::Dataplane;
use crate::secondary::{naming, parse_nad, parse_selection, resolve, Network, Resolved};
use crate::store::{to_value, StateStore};

/// How long ADD waits for ovn-controller to bind the port.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(20);
/// First source-routing table of secondary interfaces (eth0's is 1000).
const FIRST_TABLE: u32 = 1001;

pub struct Ovn {
    pub nb: NbDb,
    pub ovs: OvsDb,
    pub bridge: String,
}

impl Ovn {
    /// Connect to the node's OVS and to the NB database, and make this node an
    /// OVN chassis: `system-id`, `hostname`, `ovn-encap-ip` (from `encapInterface`),
    /// `ovn-encap-type` and `ovn-remote` in Open_vSwitch external_ids.
    pub async fn connect(cfg: &OvnConfig, node: &str, dataplane: &Dataplane) -> Result<Ovn, String> {
        let ovs_client = ovn_bridge::Client::new(&cfg.ovsdb).map_err(|e| format!("ovsdb {}: {e}", cfg.ovsdb))?;
        let nb_client =
            ovn_bridge::Client::new(&cfg.northbound).map_err(|e| format!("northbound {}: {e}", cfg.northbound))?;
        let ovn = Ovn {
            nb: NbDb::new(nb_client),
            ovs: OvsDb::new(ovs_client),
            bridge: cfg.bridge.clone(),
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
}

/// What DEL and GC need to undo one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn record_key(node: &str, container_id: &str, ifname: &str) -> String {
    format!("secondary/{node}/{container_id}.{ifname}")
}

/// The pod's identity and eth0, as the primary ADD left them.
pub struct PodContext {
    pub container_id: String,
    pub netns: String,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub primary_ip: Option<Ipv4Addr>,
}

/// Attach every network the pod's `k8s.v1.cni.cncf.io/networks` annotation
/// selects; returns the result entries to append. All-or-nothing.
pub async fn attach_selected(w: &Workloads, pod: &PodContext) -> Result<CniResult, CniError> {
    let res = w.resources();
    let Some(annotation) = res
        .pod(&pod.namespace, &pod.name)
        .and_then(|p| p.annotation("k8s.v1.cni.cncf.io/networks"))
    else {
        return Ok(CniResult::default());
    };
    let selections = parse_selection(annotation, &pod.namespace)?;
    if selections.is_empty() {
        return Ok(CniResult::default());
    }
    let ovn = w.ovn.as_ref().ok_or_else(|| {
        CniError::invalid_config(
            "secondary networks requested but OVN is off",
            format!(
                "pod {}/{} selects networks; set ovn.enabled in lanesd's config",
                pod.namespace, pod.name
            ),
        )
    })?;
    let mut networks = BTreeMap::new();
    for raw in res.others_of_kind("NetworkAttachmentDefinition") {
        if let Ok(n) = parse_nad(raw) {
            networks.insert(n.key.clone(), n);
        }
    }
    let resolved = resolve(&selections, &networks)?;
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
                    undo(w, ovn, rec).await;
                }
                return Err(e);
            }
        }
    }
    Ok(result)
}

pub(crate) async fn attach_one(
    w: &Workloads,
    ovn: &Arc<Ovn>,
    pod: &PodContext,
    r: &Resolved,
    table: u32,
) -> Result<(SecondaryRecord, CniResult), CniError> {
    let net = &r.network;
    let nad = format!("{}/{}", net.key.0, net.key.1);
    let ovn_err = |what: &str, e: ovn_bridge::Error| CniError::try_again_later(format!("OVN: {what}"), e.to_string());
    ensure_switch(ovn, net)
        .await
        .map_err(|e| ovn_err("logical switch", e))?;
    let lsp = naming::lsp_name(&nad, &pod.namespace, &pod.name);
    let mut lsp_ids = BTreeMap::from([
        ("lanes.dev/node".to_string(), w.node.clone()),
        ("lanes.dev/container".to_string(), pod.container_id.clone()),
        ("lanes.dev/ifname".to_string(), r.interface.clone()),
        ("pod".to_string(), "true".to_string()),
        ("namespace".to_string(), pod.namespace.clone()),
        ("k8s.ovn.org/nad".to_string(), nad.clone()),
        ("k8s.ovn.org/network".to_string(), net.net_name.clone()),
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
    ovn.nb
        .ensure_lsp(&net.switch_name, &lsp, &addresses, &security, &lsp_ids)
        .await
        .map_err(|e| ovn_err("logical switch port", e))?;
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
        host_ifname: naming::host_ifname(&pod.container_id, &r.interface),
        mac: String::new(),
        ips: Vec::new(),
        mtu: net.mtu,
        gateway: None,
    };
    let (mac, ips) = match lsp_address(ovn, &lsp, &addresses[0], net).await {
        Ok(a) => a,
        Err(e) => {
            undo(w, ovn, &record_undo).await;
            return Err(e);
        }
    };
    if !static_addr {
        let assigned = std::iter::once(mac.clone())
            .chain(ips.iter().map(|n| n.addr().to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        if let Err(e) = ovn
            .nb
            .ensure_lsp(&net.switch_name, &lsp, &addresses, &[assigned], &lsp_ids)
            .await
        {
            undo(w, ovn, &record_undo).await;
            return Err(ovn_err("port security", e));
        }
    }
    let gateway = r.selection.default_route.first().copied().or(net.gateway);
    let mut rec = SecondaryRecord {
        mac: mac.clone(),
        ips: ips.iter().map(|n| n.to_string()).collect(),
        gateway: gateway.map(|g| g.to_string()),
        ..record_undo
    };
    if let Err(e) = wire(w, ovn, pod, r, &rec, &ips, gateway, table).await {
        undo(w, ovn, &rec).await;
        return Err(e);
    }
    rec.ips = ips.iter().map(|n| n.to_string()).collect();
    let key = record_key(&w.node, &pod.container_id, &r.interface);
    let value = to_value(&key, &rec).map_err(|e| CniError::datastore("record", e.to_string()))?;
    put(w.store.as_ref(), &key, &value)
        .await
        .map_err(|e| CniError::datastore("record the attachment", e))?;
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
    let waited = ovn
        .ovs
        .wait_interface_column(
            &rec.host_ifname,
            "external_ids:ovn-installed",
            "true",
            INSTALL_TIMEOUT,
            std::future::pending(),
        )
        .await
        .map_err(|e| {
            CniError::try_again_later(
                "OVN did not install the port in time",
                format!("{} (LSP {}): {e}", rec.host_ifname, rec.lsp),
            )
        })?;
    w.metrics.ovn_install_wait.observe(waited.as_secs_f64());
    Ok(())
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
    let ids = BTreeMap::from([("k8s.ovn.org/network".to_string(), net.net_name.clone())]);
    ovn.nb
        .ensure_logical_switch(&net.switch_name, &other, &ids)
        .await
        .map(drop)
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
/// northd has assigned them (bounded).
async fn lsp_address(ovn: &Ovn, lsp: &str, addresses: &str, net: &Network) -> Result<(String, Vec<IpNet>), CniError> {
    let text = if addresses == "dynamic" {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match ovn.nb.get_lsp_dynamic_addresses(lsp).await {
                Ok(Some(a)) if !a.is_empty() => break a,
                Ok(_) => {}
                Err(e) => return Err(CniError::try_again_later("OVN: read dynamic addresses", e.to_string())),
            }
            if std::time::Instant::now() > deadline {
                return Err(CniError::try_again_later(
                    "OVN IPAM assigned no address",
                    format!(
                        "LSP {lsp} on {}: no dynamic_addresses after 5s (is ovn-northd running?)",
                        net.switch_name
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

/// Remove an attachment's OVS port, veth, LSP and record; best effort, logged.
async fn undo(w: &Workloads, ovn: &Ovn, rec: &SecondaryRecord) {
    if let Err(e) = ovn.ovs.delete_port(&ovn.bridge, &rec.host_ifname).await {
        tracing::warn!(error = %e, port = %rec.host_ifname, "delete OVS port");
    }
    if let Err(e) = w.dataplane.teardown_secondary(&rec.host_ifname).await {
        tracing::warn!(error = %e, veth = %rec.host_ifname, "delete secondary veth");
    }
    if let Err(e) = ovn.nb.delete_lsp(&rec.switch, &rec.lsp).await {
        tracing::warn!(error = %e, lsp = %rec.lsp, "delete LSP");
    }
    let key = record_key(&w.node, &rec.container_id, &rec.ifname);
    if let Ok(Some(e)) = w.store.get(&key).await {
        let _ = w.store.delete(&key, &e.revision).await;
    }
}

/// DEL: every secondary attachment of the container (or only `ifname`, as a
/// Multus delegate asks). The veth always goes; OVN objects are removed when
/// OVN answers, else the record stays for GC to finish.
pub async fn detach(w: &Workloads, container_id: &str, ifname: Option<&str>) -> Result<usize, CniError> {
    let prefix = format!("secondary/{}/", w.node);
    let entries = w
        .store
        .list(&prefix)
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
            Some(ovn) => undo(w, ovn, &rec).await,
            None => {
                let _ = w.dataplane.teardown_secondary(&rec.host_ifname).await;
            }
        }
    }
    Ok(n)
}

/// Every secondary record of this node (for `lanesctl attachments` and network-status).
pub async fn records(store: &dyn StateStore, node: &str) -> Vec<SecondaryRecord> {
    store
        .list(&format!("secondary/{node}/"))
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.decode().ok())
        .collect()
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
