//! lanes under Multus as a secondary delegate: a NetworkAttachmentDefinition
//! whose config has `"type": "lanes"` (with `topology`, `subnets`, …) is
//! handed to lanes-cni with `CNI_IFNAME=net1`; that call attaches just that
//! network — no eth0, no primary IPAM — and its DEL detaches just that one.

use serde_json::Value;

use super::secondary::{attach_one, detach, PodContext};
use super::Workloads;
use crate::cni::{CniEnv, CniError, NetConf};
use crate::resources::{ObjectMeta, RawResource};
use crate::secondary::{parse_nad, Resolved, Selection};

/// Keys only a network (NAD) config has; a plain lanes conflist has none.
const NAD_KEYS: &[&str] = &["topology", "subnets", "netAttachDefName"];

/// Is this call Multus handing us one NAD's config?
pub fn is_delegate(conf: &NetConf) -> bool {
    NAD_KEYS.iter().any(|k| conf.extra.contains_key(*k))
}

/// ADD of one secondary network, as Multus delegates it.
pub async fn add(w: &Workloads, env: &CniEnv, conf: &NetConf, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    let ovn = w.ovn.clone().ok_or_else(|| {
        CniError::invalid_config(
            "secondary network delegated but OVN is off",
            format!("network {}: set ovn.enabled in lanesd's config", conf.name),
        )
    })?;
    let netns = env.netns.clone().unwrap_or_default();
    super::add::check_netns(&netns)?;
    let container_id = env.container_id.clone().unwrap_or_default();
    let ifname = env.ifname.clone().unwrap_or_default();
    let pod = env.pod_identity()?;
    let (namespace, name) = match &pod {
        Some(p) => (p.namespace.clone(), p.name.clone()),
        // No K8S_* args: the container id names the workload.
        None => ("default".to_string(), container_id.clone()),
    };
    let network = parse_nad(&raw_nad(conf, stdin, &namespace)).map_err(CniError::from)?;
    let selection = Selection {
        namespace: network.key.0.clone(),
        name: network.key.1.clone(),
        interface: Some(ifname.clone()),
        ips: runtime_list(conf, "ips").filter_map(|s| s.parse().ok()).collect(),
        mac: runtime_list(conf, "mac").next(),
        default_route: Vec::new(),
        cni_args: None,
        port_mappings: None,
        bandwidth: None,
        ignored_fields: Vec::new(),
    };
    let resolved = Resolved {
        index: 0,
        selection,
        interface: ifname,
        network,
    };
    let ctx = PodContext {
        container_id,
        netns,
        namespace,
        name,
        uid: pod.and_then(|p| p.uid),
        primary_ip: None,
        // Multus handed this one network over; the pod's own selection is Multus' business.
        networks: None,
    };
    let (_, result) = attach_one(w, &ovn, &ctx, &resolved, 1001).await?;
    Ok(result.to_bytes(conf.cni_version))
}

/// DEL of one delegated network: only that interface.
pub async fn del(w: &Workloads, env: &CniEnv) -> Result<Vec<u8>, CniError> {
    let container_id = env.container_id.clone().unwrap_or_default();
    detach(w, &container_id, env.ifname.as_deref()).await?;
    Ok(Vec::new())
}

/// The NAD as if read from the API: `netAttachDefName` gives its namespace/name.
fn raw_nad(conf: &NetConf, stdin: &[u8], pod_namespace: &str) -> RawResource {
    let (ns, name) = conf
        .extra
        .get("netAttachDefName")
        .and_then(Value::as_str)
        .and_then(|n| n.split_once('/'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or_else(|| (pod_namespace.to_string(), conf.name.clone()));
    RawResource {
        api_version: crate::resources::API_NAD.into(),
        kind: "NetworkAttachmentDefinition".into(),
        metadata: ObjectMeta {
            name,
            namespace: Some(ns),
            ..Default::default()
        },
        spec: serde_json::json!({ "config": String::from_utf8_lossy(stdin) }),
        source: "cni-stdin".into(),
    }
}

/// `runtimeConfig.<key>` as strings (Multus passes `ips` and `mac` there).
fn runtime_list<'a>(conf: &'a NetConf, key: &str) -> impl Iterator<Item = String> + 'a {
    let v = conf.runtime_config.get(key);
    let items: Vec<String> = match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    items.into_iter()
}
