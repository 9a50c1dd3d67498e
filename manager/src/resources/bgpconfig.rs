//! `BGPConfiguration`: the cluster's BGP settings. The one named `default` is global; one named
//! `node.<nodename>` overrides it for that node (Calico allows only `logSeverityScreen`,
//! `listenPort` and `prefixAdvertisements` there, plus the `communities` those refer to;
//! `bindMode` and `ignoredInterfaces` are allowed too). [`BgpSettings::resolve`] merges the two
//! with Calico's defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::bgpfields::{self, choice, CommunityValue, PasswordSource, DEFAULT_AS_NUMBER, DEFAULT_BGP_PORT};
use super::meta::{show, FieldError, Obj, ObjectMeta};

/// The name of the global configuration.
pub const GLOBAL_CONFIG_NAME: &str = "default";
/// Per-node configurations are named `node.<nodename>`.
pub const NODE_CONFIG_PREFIX: &str = "node.";

/// BIRD's log level (`logSeverityScreen`). Calico's `Trace` reads as `Debug`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogSeverity {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Fatal,
}

/// Which address BIRD listens on (`bindMode`): all (`None`) or only the node's IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BindMode {
    #[default]
    None,
    NodeIp,
}

/// A named community (`communities: [{name, value}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedCommunity {
    pub name: String,
    pub value: CommunityValue,
}

/// One entry of `prefixAdvertisements[].communities`: a literal, or a name from `communities`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommunityRef {
    Value(CommunityValue),
    Named(String),
}

/// Communities to attach to originated prefixes inside `cidr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixAdvertisement {
    pub cidr: IpNet,
    pub communities: Vec<CommunityRef>,
}

/// A validated BGPConfiguration. Unset fields stay `None` so a per-node document can inherit
/// from the global one; [`BgpSettings`] applies the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpConfiguration {
    pub name: String,
    /// `Some(node)` for a `node.<node>` override, `None` for `default`.
    pub node: Option<String>,
    pub log_severity_screen: Option<LogSeverity>,
    pub node_to_node_mesh_enabled: Option<bool>,
    pub as_number: Option<u32>,
    pub service_cluster_ips: Vec<IpNet>,
    pub service_external_ips: Vec<IpNet>,
    pub service_load_balancer_ips: Vec<IpNet>,
    pub listen_port: Option<u16>,
    pub communities: Vec<NamedCommunity>,
    /// `None` when the field is absent (a per-node document then inherits the global list).
    pub prefix_advertisements: Option<Vec<PrefixAdvertisement>>,
    pub node_mesh_password: Option<PasswordSource>,
    pub node_mesh_max_restart_time: Option<Duration>,
    pub bind_mode: Option<BindMode>,
    pub ignored_interfaces: Vec<String>,
    /// Calico fields accepted so pasted documents load, but not acted on
    /// (`localWorkloadPeeringIPV4/6`, `serviceLoadBalancerAggregation`).
    pub ignored: BTreeMap<String, Value>,
    pub api_version: String,
    pub source: String,
}

const SEVERITIES: &[(&str, LogSeverity)] = &[
    ("trace", LogSeverity::Debug),
    ("debug", LogSeverity::Debug),
    ("info", LogSeverity::Info),
    ("warning", LogSeverity::Warning),
    ("error", LogSeverity::Error),
    ("fatal", LogSeverity::Fatal),
];
const BIND_MODES: &[(&str, BindMode)] = &[("None", BindMode::None), ("NodeIP", BindMode::NodeIp)];

const FIELDS: &[&str] = &[
    "logSeverityScreen",
    "nodeToNodeMeshEnabled",
    "asNumber",
    "serviceClusterIPs",
    "serviceExternalIPs",
    "serviceLoadBalancerIPs",
    "listenPort",
    "communities",
    "prefixAdvertisements",
    "nodeMeshPassword",
    "nodeMeshMaxRestartTime",
    "bindMode",
    "ignoredInterfaces",
    "localWorkloadPeeringIPV4",
    "localWorkloadPeeringIPV6",
    "serviceLoadBalancerAggregation",
];
const ACCEPTED_UNUSED: &[&str] = &[
    "localWorkloadPeeringIPV4",
    "localWorkloadPeeringIPV6",
    "serviceLoadBalancerAggregation",
];
/// Fields Calico documents as "only valid on the global default BGPConfiguration".
const GLOBAL_ONLY: &[&str] = &[
    "nodeToNodeMeshEnabled",
    "asNumber",
    "serviceClusterIPs",
    "serviceExternalIPs",
    "serviceLoadBalancerIPs",
    "nodeMeshPassword",
    "nodeMeshMaxRestartTime",
];

pub(crate) fn parse(
    api_version: &str,
    meta: ObjectMeta,
    top: &Obj<'_>,
    source: &str,
) -> Result<BgpConfiguration, FieldError> {
    let node = match meta.name.strip_prefix(NODE_CONFIG_PREFIX) {
        _ if meta.name == GLOBAL_CONFIG_NAME => None,
        Some(node) if !node.is_empty() => Some(node.to_string()),
        _ => {
            return Err(FieldError::new(
                "metadata.name",
                meta.name.as_str(),
                "must be \"default\" (the global configuration) or \"node.<nodename>\" (a per-node override)",
            ))
        }
    };
    let spec = top.obj("spec")?;
    spec.deny_unknown(FIELDS)?;
    if node.is_some() {
        if let Some(field) = GLOBAL_ONLY.iter().find(|f| spec.get(f).is_some()) {
            let value = spec.get(field).map(show).unwrap_or_default();
            let reason =
                "only valid on the global \"default\" BGPConfiguration (set a node's AS in its Node spec.bgp.asNumber)";
            return Err(FieldError::new(spec.path_of(field), value, reason));
        }
    }

    let log_severity_screen = match spec.str("logSeverityScreen")?.filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match SEVERITIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) {
            Some((_, level)) => Some(*level),
            None => {
                let reason = "expected one of Debug, Info, Warning, Error, Fatal (or Trace)";
                return Err(FieldError::new("spec.logSeverityScreen", text, reason));
            }
        },
    };
    let mesh = spec.bool("nodeToNodeMeshEnabled")?;
    if mesh == Some(false) {
        for field in ["nodeMeshPassword", "nodeMeshMaxRestartTime"] {
            if let Some(v) = spec.get(field) {
                let reason = "cannot be set when nodeToNodeMeshEnabled is false";
                return Err(FieldError::new(spec.path_of(field), show(v), reason));
            }
        }
    }
    let listen_port = match spec.int("listenPort")? {
        None | Some(0) => None,
        Some(p) => Some(
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| FieldError::new("spec.listenPort", p.to_string(), "must be a port from 1 to 65535"))?,
        ),
    };
    let communities = named_communities(&spec)?;
    let prefix_advertisements = prefix_advertisements(&spec, &communities, node.is_none())?;
    let mut ignored_interfaces = Vec::new();
    for (path, item) in spec.list("ignoredInterfaces")? {
        match item.as_str() {
            Some(name) if !name.is_empty() => ignored_interfaces.push(name.to_string()),
            _ => return Err(FieldError::new(path, show(item), "expected an interface name")),
        }
    }
    if let Some(text) = spec.str("serviceLoadBalancerAggregation")?.filter(|t| !t.is_empty()) {
        if !["Enabled", "Disabled"].contains(&text) {
            let reason = "expected one of Enabled, Disabled";
            return Err(FieldError::new("spec.serviceLoadBalancerAggregation", text, reason));
        }
    }
    let ignored = ACCEPTED_UNUSED
        .iter()
        .filter_map(|k| spec.get(k).map(|v| (k.to_string(), v.clone())))
        .collect();

    Ok(BgpConfiguration {
        name: meta.name,
        node,
        log_severity_screen,
        node_to_node_mesh_enabled: mesh,
        as_number: bgpfields::as_number(&spec, "asNumber")?,
        service_cluster_ips: bgpfields::cidr_list(&spec, "serviceClusterIPs")?,
        service_external_ips: bgpfields::cidr_list(&spec, "serviceExternalIPs")?,
        service_load_balancer_ips: bgpfields::cidr_list(&spec, "serviceLoadBalancerIPs")?,
        listen_port,
        communities,
        prefix_advertisements,
        node_mesh_password: bgpfields::password(&spec, "nodeMeshPassword", api_version)?,
        node_mesh_max_restart_time: bgpfields::duration(&spec, "nodeMeshMaxRestartTime")?,
        bind_mode: choice(&spec, "bindMode", BIND_MODES)?,
        ignored_interfaces,
        ignored,
        api_version: api_version.to_string(),
        source: source.to_string(),
    })
}

fn named_communities(spec: &Obj<'_>) -> Result<Vec<NamedCommunity>, FieldError> {
    let mut out: Vec<NamedCommunity> = Vec::new();
    for (path, item) in spec.list("communities")? {
        let entry = Obj::new(&path, Some(item))?;
        entry.deny_unknown(&["name", "value"])?;
        let required = |k: &str| {
            entry
                .str(k)?
                .filter(|v| !v.is_empty())
                .ok_or_else(|| FieldError::new(entry.path_of(k), "", "required"))
        };
        let name = required("name")?;
        let text = required("value")?;
        let value = text
            .parse()
            .map_err(|reason: String| FieldError::new(entry.path_of("value"), text, reason))?;
        if out.iter().any(|c| c.name == name) {
            return Err(FieldError::new(entry.path_of("name"), name, "duplicate community name"));
        }
        out.push(NamedCommunity {
            name: name.to_string(),
            value,
        });
    }
    Ok(out)
}

/// `prefixAdvertisements`. On the global document every name must be defined in its
/// `communities`; a per-node document may also use the global document's names.
fn prefix_advertisements(
    spec: &Obj<'_>,
    named: &[NamedCommunity],
    global: bool,
) -> Result<Option<Vec<PrefixAdvertisement>>, FieldError> {
    if spec.get("prefixAdvertisements").is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (path, item) in spec.list("prefixAdvertisements")? {
        let entry = Obj::new(&path, Some(item))?;
        entry.deny_unknown(&["cidr", "communities"])?;
        let text = entry
            .str("cidr")?
            .ok_or_else(|| FieldError::new(entry.path_of("cidr"), "", "required"))?;
        let cidr = bgpfields::parse_cidr(text).map_err(|r| FieldError::new(entry.path_of("cidr"), text, r))?;
        let mut communities = Vec::new();
        for (cpath, c) in entry.list("communities")? {
            let Some(text) = c.as_str().filter(|t| !t.is_empty()) else {
                return Err(FieldError::new(
                    cpath,
                    show(c),
                    "expected a community name or aa:nn / aa:nn:mm",
                ));
            };
            let reference = if text.starts_with(|ch: char| ch.is_ascii_digit()) && text.contains(':') {
                CommunityRef::Value(text.parse().map_err(|r: String| FieldError::new(&cpath, text, r))?)
            } else if global && !named.iter().any(|n| n.name == text) {
                let reason = "not a community value and not a name defined in spec.communities";
                return Err(FieldError::new(cpath, text, reason));
            } else {
                CommunityRef::Named(text.to_string())
            };
            communities.push(reference);
        }
        if communities.is_empty() {
            return Err(FieldError::new(entry.path_of("communities"), "", "required"));
        }
        out.push(PrefixAdvertisement { cidr, communities });
    }
    Ok(Some(out))
}

/// The BGP settings in effect on one node: its `node.<name>` document over `default`, over
/// Calico's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpSettings {
    pub as_number: u32,
    pub node_to_node_mesh_enabled: bool,
    pub log_severity_screen: LogSeverity,
    pub listen_port: u16,
    pub bind_mode: BindMode,
    pub service_cluster_ips: Vec<IpNet>,
    pub service_external_ips: Vec<IpNet>,
    pub service_load_balancer_ips: Vec<IpNet>,
    /// Resolved: each CIDR with its community values.
    pub prefix_advertisements: Vec<(IpNet, Vec<CommunityValue>)>,
    pub node_mesh_password: Option<PasswordSource>,
    pub node_mesh_max_restart_time: Option<Duration>,
    pub ignored_interfaces: Vec<String>,
    /// Community names a per-node document used that no document defines (dropped).
    pub unknown_communities: Vec<String>,
}

impl BgpSettings {
    pub fn resolve(global: Option<&BgpConfiguration>, node: Option<&BgpConfiguration>) -> Self {
        let adverts = node
            .and_then(|n| n.prefix_advertisements.as_ref())
            .or_else(|| global.and_then(|g| g.prefix_advertisements.as_ref()));
        let lookup = |name: &str| {
            [node, global]
                .into_iter()
                .flatten()
                .flat_map(|c| c.communities.iter())
                .find(|c| c.name == name)
                .map(|c| c.value)
        };
        let mut unknown_communities = Vec::new();
        let prefix_advertisements = adverts
            .into_iter()
            .flatten()
            .map(|a| {
                let values = a.communities.iter().filter_map(|c| match c {
                    CommunityRef::Value(v) => Some(*v),
                    CommunityRef::Named(name) => {
                        let found = lookup(name);
                        if found.is_none() && !unknown_communities.contains(name) {
                            unknown_communities.push(name.clone());
                        }
                        found
                    }
                });
                (a.cidr, values.collect())
            })
            .collect();
        let g = |f: fn(&BgpConfiguration) -> Vec<IpNet>| global.map(f).unwrap_or_default();
        BgpSettings {
            as_number: global.and_then(|c| c.as_number).unwrap_or(DEFAULT_AS_NUMBER),
            node_to_node_mesh_enabled: global.and_then(|c| c.node_to_node_mesh_enabled).unwrap_or(true),
            log_severity_screen: pick(node, global, |c| c.log_severity_screen).unwrap_or_default(),
            listen_port: pick(node, global, |c| c.listen_port).unwrap_or(DEFAULT_BGP_PORT),
            bind_mode: pick(node, global, |c| c.bind_mode).unwrap_or_default(),
            service_cluster_ips: g(|c| c.service_cluster_ips.clone()),
            service_external_ips: g(|c| c.service_external_ips.clone()),
            service_load_balancer_ips: g(|c| c.service_load_balancer_ips.clone()),
            prefix_advertisements,
            node_mesh_password: global.and_then(|c| c.node_mesh_password.clone()),
            node_mesh_max_restart_time: global.and_then(|c| c.node_mesh_max_restart_time),
            ignored_interfaces: node
                .filter(|n| !n.ignored_interfaces.is_empty())
                .or(global)
                .map(|c| c.ignored_interfaces.clone())
                .unwrap_or_default(),
            unknown_communities,
        }
    }
}

/// The node document's value if it sets one, else the global one's.
fn pick<T>(
    node: Option<&BgpConfiguration>,
    global: Option<&BgpConfiguration>,
    field: impl Fn(&BgpConfiguration) -> Option<T>,
) -> Option<T> {
    node.and_then(&field).or_else(|| global.and_then(&field))
}

#[cfg(test)]
mod tests {
    use super::super::{API_CALICO_V3, API_LANES};
    use super::*;
    use serde_json::json;

    fn config(name: &str, spec: Value) -> Result<BgpConfiguration, FieldError> {
        let doc = json!({"metadata": {"name": name}, "spec": spec});
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false).unwrap();
        parse(API_CALICO_V3, meta, &top, "bgp.yaml")
    }

    #[test]
    fn calico_docs_sample_reads_every_field() {
        let c = config(
            "default",
            json!({"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": true, "nodeMeshMaxRestartTime": "120s",
                   "asNumber": 63400, "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
                   "serviceExternalIPs": [{"cidr": "104.244.42.129/32"}, {"cidr": "172.217.3.0/24"}],
                   "listenPort": 178, "bindMode": "NodeIP",
                   "communities": [{"name": "bgp-large-community", "value": "63400:300:100"}],
                   "prefixAdvertisements": [{"cidr": "172.218.4.0/26",
                                             "communities": ["bgp-large-community", "63400:120"]}],
                   "nodeMeshPassword": {"secretKeyRef": {"name": "bgp-secrets", "key": "mesh"}},
                   "ignoredInterfaces": ["iface-1"], "serviceLoadBalancerAggregation": "Enabled"}),
        )
        .unwrap();
        assert_eq!(
            (c.node.as_deref(), c.as_number, c.listen_port),
            (None, Some(63400), Some(178))
        );
        assert_eq!(c.node_mesh_max_restart_time, Some(Duration::from_secs(120)));
        assert_eq!(c.ignored.keys().collect::<Vec<_>>(), ["serviceLoadBalancerAggregation"]);
        let s = BgpSettings::resolve(Some(&c), None);
        assert_eq!(s.bind_mode, BindMode::NodeIp);
        assert_eq!(s.service_external_ips.len(), 2);
        assert_eq!(
            s.prefix_advertisements,
            [(
                "172.218.4.0/26".parse().unwrap(),
                vec![
                    CommunityValue::Large(63400, 300, 100),
                    CommunityValue::Standard(63400, 120)
                ]
            )]
        );
        assert_eq!(s.ignored_interfaces, ["iface-1"]);
    }

    #[test]
    fn defaults_and_node_overrides() {
        let s = BgpSettings::resolve(None, None);
        assert_eq!(
            (s.as_number, s.node_to_node_mesh_enabled, s.listen_port),
            (64512, true, 179)
        );
        assert_eq!(s.log_severity_screen, LogSeverity::Info);

        let global = config(
            "default",
            json!({"asNumber": "1.10", "logSeverityScreen": "warning", "listenPort": 0,
                   "communities": [{"name": "svc", "value": "65000:1"}],
                   "prefixAdvertisements": [{"cidr": "10.96.0.0/12", "communities": ["svc"]}]}),
        )
        .unwrap();
        let node = config(
            "node.node1",
            json!({"logSeverityScreen": "Trace", "listenPort": 1790,
                   "prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["svc", "nope", "1:2"]}]}),
        )
        .unwrap();
        assert_eq!(node.node.as_deref(), Some("node1"));
        let s = BgpSettings::resolve(Some(&global), Some(&node));
        assert_eq!((s.as_number, s.listen_port), (65546, 1790));
        assert_eq!(s.log_severity_screen, LogSeverity::Debug);
        assert_eq!(
            s.prefix_advertisements[0].1,
            [CommunityValue::Standard(65000, 1), CommunityValue::Standard(1, 2)]
        );
        assert_eq!(s.unknown_communities, ["nope"]);
        let s = BgpSettings::resolve(Some(&global), None);
        assert_eq!((s.listen_port, s.log_severity_screen), (179, LogSeverity::Warning));
    }

    /// name | spec | field | fragment
    const REJECTIONS: &str = r#"
        default   | {"asNumber": 0}                                   | spec.asNumber              | 1 to 4294967295
        default   | {"asNumber": 4294967296}                          | spec.asNumber              | 1 to 4294967295
        default   | {"logSeverityScreen": "Loud"}                     | spec.logSeverityScreen     | Debug, Info
        default   | {"nodeToNodeMeshEnabled": "yes"}                  | spec.nodeToNodeMeshEnabled | true or false
        default   | {"listenPort": 70000}                             | spec.listenPort            | 1 to 65535
        default   | {"bindMode": "All"}                               | spec.bindMode              | None, NodeIP
        default   | {"serviceClusterIPs": [{"cidr": "10.96.0.0/33"}]} | spec.serviceClusterIPs[0].cidr | CIDR
        default   | {"communities": [{"name": "a", "value": "1:2:3:4"}]} | spec.communities[0].value | aa:nn
        default   | {"communities": [{"name": "a", "value": "70000:1"}]} | spec.communities[0].value | 0..=65535
        default   | {"communities": [{"name": "a", "value": "1:1"}, {"name": "a", "value": "1:2"}]} | spec.communities[1].name | duplicate
        default   | {"prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["nope"]}]} | spec.prefixAdvertisements[0].communities[0] | not a community value
        default   | {"prefixAdvertisements": [{"cidr": "10.0.0.0/8"}]} | spec.prefixAdvertisements[0].communities | required
        default   | {"nodeToNodeMeshEnabled": false, "nodeMeshMaxRestartTime": "10s"} | spec.nodeMeshMaxRestartTime | nodeToNodeMeshEnabled is false
        default   | {"nodeMeshMaxRestartTime": "ten"}                 | spec.nodeMeshMaxRestartTime | duration
        default   | {"asNumbr": 1}                                    | spec.asNumbr               | did you mean asNumber?
        default   | {"serviceLoadBalancerAggregation": "On"}          | spec.serviceLoadBalancerAggregation | Enabled, Disabled
        node.n1   | {"asNumber": 65000}                               | spec.asNumber              | only valid on the global
        node.n1   | {"nodeToNodeMeshEnabled": true}                   | spec.nodeToNodeMeshEnabled | only valid on the global
        cluster   | {}                                                | metadata.name              | node.<nodename>
    "#;

    #[test]
    fn rejections_name_the_field() {
        for line in REJECTIONS.lines().filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let spec: Value = serde_json::from_str(cols[1]).unwrap();
            let err = config(cols[0], spec).unwrap_err();
            assert_eq!(err.field, cols[2], "{line}: {err:?}");
            assert!(err.reason.contains(cols[3]), "{line}: {}", err.reason);
        }
    }

    #[test]
    fn lanes_api_accepts_the_password_extensions() {
        let doc = json!({"metadata": {"name": "default"}, "spec": {"nodeMeshPassword": {"file": "/etc/lanes/mesh"}}});
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false).unwrap();
        let c = parse(API_LANES, meta.clone(), &top, "b.yaml").unwrap();
        assert_eq!(
            c.node_mesh_password,
            Some(PasswordSource::File("/etc/lanes/mesh".into()))
        );
        assert!(parse(API_CALICO_V3, meta, &top, "b.yaml").is_err());
    }
}
