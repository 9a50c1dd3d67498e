//! `NetworkAttachmentDefinition` (Multus, `k8s.cni.cncf.io/v1`) to [`Network`].
//!
//! A NAD's `spec.config` is a CNI config as a JSON string: one plugin, or a conflist whose
//! `plugins` hold ours (the first of type `ovn-k8s-cni-overlay` or `lanes`; the other plugins of
//! the chain are not ours to run). The fields are ovn-kubernetes' (`topology`, `subnets`,
//! `excludeSubnets`, `mtu`, `netAttachDefName`, `vlanID`, `role`), so an ovn-kubernetes NAD is
//! accepted unchanged, plus one Lanes extension, `gateway`.
//!
//! Every error names the NAD (`namespace/name`) and the field (`spec.config.subnets[1]`), and
//! becomes CNI error code 7.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::naming;
use super::subnets::{exclude_subnets, gateway, subnets};
use crate::cni::version::{SpecVersion, SUPPORTED_VERSIONS};
use crate::cni::CniError;
use crate::resources::meta::{show, FieldError, Obj};
use crate::resources::{RawResource, API_NAD};

pub const NAD_KIND: &str = "NetworkAttachmentDefinition";
/// ovn-kubernetes' plugin type, as in the seed's NAD.
pub const TYPE_OVN_K8S: &str = "ovn-k8s-cni-overlay";
/// Ours: the type `lanes-cni` answers to.
pub const TYPE_LANES: &str = crate::cni::PLUGIN_TYPE;
/// ovn-kubernetes' default MTU: a 1500-byte underlay minus geneve's overhead.
pub const DEFAULT_MTU: u32 = 1400;
pub const MIN_MTU: u32 = 576;
pub const MAX_MTU: u32 = 9000;

/// The plugin `type` a NAD config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginType {
    OvnK8sOverlay,
    Lanes,
}

impl PluginType {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginType::OvnK8sOverlay => TYPE_OVN_K8S,
            PluginType::Lanes => TYPE_LANES,
        }
    }

    fn from_type(t: &str) -> Option<Self> {
        match t {
            TYPE_OVN_K8S => Some(PluginType::OvnK8sOverlay),
            TYPE_LANES => Some(PluginType::Lanes),
            _ => None,
        }
    }
}

/// The OVN topology of a network. Only `layer2` (one cluster-wide logical switch) for now;
/// ovn-kubernetes' `layer3` and `localnet` are refused by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topology {
    Layer2,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Layer2 => "layer2",
        }
    }
}

/// A secondary network, as one NAD defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// The NAD: (namespace, name).
    pub key: (String, String),
    /// The config's `name`: the network, which several NADs may share (ovn-kubernetes' networks
    /// are not namespaced), and what OVN entities are named after.
    pub net_name: String,
    pub plugin_type: PluginType,
    pub topology: Topology,
    /// Masked (`10.144.0.1/16` reads as `10.144.0.0/16`, as Go's `net.ParseCIDR` does); empty
    /// for a pure layer-2 network without IPAM.
    pub subnets: Vec<IpNet>,
    /// Each inside one of `subnets`; never handed out.
    pub exclude: Vec<IpNet>,
    pub mtu: u32,
    /// `gateway` (Lanes extension): an address of the first subnet's family, never handed out.
    /// ovn-kubernetes' layer2 networks have none.
    pub gateway: Option<IpAddr>,
    /// The OVN logical switch, named as ovn-kubernetes does ([`naming::switch_name`]).
    pub switch_name: String,
}

impl Network {
    /// `namespace/name` of the NAD, the form Multus and ovn-kubernetes use as its key.
    pub fn nad_name(&self) -> String {
        format!("{}/{}", self.key.0, self.key.1)
    }

    /// The subnet holding `ip`, if any.
    pub fn subnet_for(&self, ip: IpAddr) -> Option<&IpNet> {
        self.subnets.iter().find(|s| s.contains(&ip))
    }

    pub fn is_excluded(&self, ip: IpAddr) -> bool {
        self.exclude.iter().any(|e| e.contains(&ip))
    }

    /// When `other` names the same network (`net_name`) but configures it differently, the first
    /// field that differs. Such NADs would fight over one logical switch.
    pub fn conflicts_with(&self, other: &Network) -> Option<&'static str> {
        if self.net_name != other.net_name {
            return None;
        }
        [
            ("topology", self.topology != other.topology),
            ("subnets", self.subnets != other.subnets),
            ("excludeSubnets", self.exclude != other.exclude),
            ("mtu", self.mtu != other.mtu),
            ("gateway", self.gateway != other.gateway),
        ]
        .into_iter()
        .find_map(|(field, differs)| differs.then_some(field))
    }
}

/// Why a NAD was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NadError {
    /// `namespace/name`.
    pub nad: String,
    /// A path like `spec.config.subnets[1]`; empty when not about one field.
    pub field: String,
    pub value: String,
    pub reason: String,
    /// The config is well-formed but has no plugin of our types: the NAD belongs to another CNI
    /// plugin (macvlan, say) and is skipped rather than reported as broken.
    pub not_ours: bool,
}

impl fmt::Display for NadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAD_KIND} {}: ", self.nad)?;
        f.write_str(&self.details())
    }
}

impl NadError {
    /// `field = value: reason`, leaving out what is empty.
    pub fn details(&self) -> String {
        match (self.field.is_empty(), self.value.is_empty()) {
            (true, _) => self.reason.clone(),
            (false, true) => format!("{}: {}", self.field, self.reason),
            (false, false) => format!("{} = {}: {}", self.field, self.value, self.reason),
        }
    }
}

impl From<NadError> for CniError {
    fn from(e: NadError) -> Self {
        CniError::invalid_config(format!("invalid {NAD_KIND} {}", e.nad), e.details())
    }
}

enum Problem {
    Invalid(FieldError),
    NotOurs(FieldError),
}

impl From<FieldError> for Problem {
    fn from(e: FieldError) -> Self {
        Problem::Invalid(e)
    }
}

/// Parses and validates a NAD document into the network it defines.
pub fn parse_nad(raw: &RawResource) -> Result<Network, NadError> {
    let namespace = raw.metadata.namespace.as_deref().unwrap_or("default");
    let key = (namespace.to_string(), raw.metadata.name.clone());
    parse(raw, key).map_err(|p| {
        let (e, not_ours) = match p {
            Problem::Invalid(e) => (e, false),
            Problem::NotOurs(e) => (e, true),
        };
        NadError {
            nad: format!("{namespace}/{}", raw.metadata.name),
            field: e.field,
            value: e.value,
            reason: e.reason,
            not_ours,
        }
    })
}

/// Keys of a conflist (libcni's), besides `plugins`.
const LIST_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "plugins",
    "disableCheck",
    "disableGC",
];
/// Keys of our plugin config that are read.
const READ_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "topology",
    "subnets",
    "excludeSubnets",
    "mtu",
    "netAttachDefName",
    "gateway",
    "vlanID",
    "role",
];
/// Accepted and without effect here: CNI plumbing, ovn-kubernetes logging and options that only
/// matter to topologies or roles refused anyway, and our shim's `socket`.
const IGNORED_KEYS: &[&str] = &[
    "cniVersions",
    "capabilities",
    "runtimeConfig",
    "args",
    "prevResult",
    "dns",
    "ipam",
    "socket",
    "logFile",
    "logLevel",
    "logFileMaxSize",
    "logFileMaxBackups",
    "logFileMaxAge",
    "allowPersistentIPs",
    "joinSubnet",
    "physicalNetworkName",
];
/// ovn-kubernetes fields whose meaning Lanes does not implement: refused, not silently dropped.
const UNSUPPORTED_KEYS: &[&str] = &[
    "deviceID",
    "transitSubnet",
    "reservedSubnets",
    "infrastructureSubnets",
    "defaultGatewayIPs",
];

fn parse(raw: &RawResource, key: (String, String)) -> Result<Network, Problem> {
    if raw.kind != NAD_KIND {
        return Err(FieldError::new("kind", &raw.kind, format!("expected {NAD_KIND}")).into());
    }
    if raw.api_version != API_NAD {
        return Err(FieldError::new("apiVersion", &raw.api_version, format!("expected {API_NAD}")).into());
    }
    let spec = Obj::new("spec", Some(&raw.spec))?;
    spec.deny_unknown(&["config"])?;
    let text = spec.str("config")?.ok_or_else(|| {
        FieldError::new(
            "spec.config",
            "",
            "required (a config read from a file on the node is not supported)",
        )
    })?;
    let config: Value = serde_json::from_str(text)
        .map_err(|e| FieldError::new("spec.config", short(text), format!("invalid JSON: {e}")))?;
    if !config.is_object() {
        return Err(FieldError::new("spec.config", show(&config), "expected a JSON object").into());
    }
    let top = Obj::new("spec.config", Some(&config))?;
    let (plugin, plugin_type, list) = if top.get("plugins").is_some() {
        let (plugin, plugin_type) = find_plugin(&top)?;
        top.deny_unknown(LIST_KEYS)?;
        (plugin, plugin_type, Some(top))
    } else {
        let t = top
            .str("type")?
            .ok_or_else(|| FieldError::new("spec.config.type", "", "required"))?;
        let plugin_type = PluginType::from_type(t).ok_or_else(|| Problem::NotOurs(not_ours("spec.config.type", t)))?;
        (top, plugin_type, None)
    };
    let head = list.as_ref().unwrap_or(&plugin);
    check_version(head)?;
    let mut allowed: Vec<&str> = READ_KEYS.to_vec();
    allowed.extend(IGNORED_KEYS.iter().chain(UNSUPPORTED_KEYS));
    plugin.deny_unknown(&allowed)?;
    if let Some(k) = UNSUPPORTED_KEYS.iter().find(|k| plugin.get(k).is_some()) {
        let value = plugin.get(k).map(show).unwrap_or_default();
        return Err(FieldError::new(plugin.path_of(k), value, "not supported by Lanes").into());
    }
    // libcni gives each plugin of a list the list's name.
    let net_name = head
        .str("name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| FieldError::new(head.path_of("name"), "", "required: the network's name"))?;
    if net_name == "default" {
        return Err(FieldError::new(
            head.path_of("name"),
            net_name,
            "reserved for the cluster default network",
        )
        .into());
    }
    let topology = topology(&plugin, plugin_type)?;
    check_role_and_vlan(&plugin)?;
    check_nad_name(&plugin, plugin_type, &key)?;
    let mtu = match plugin.int("mtu")? {
        None | Some(0) => DEFAULT_MTU,
        Some(m) => u32::try_from(m)
            .ok()
            .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
            .ok_or_else(|| {
                FieldError::new(
                    plugin.path_of("mtu"),
                    m.to_string(),
                    format!("must be {MIN_MTU}..={MAX_MTU}"),
                )
            })?,
    };
    let subnets = subnets(&plugin)?;
    let exclude = exclude_subnets(&plugin, &subnets)?;
    let gateway = gateway(&plugin, &subnets)?;
    Ok(Network {
        key,
        switch_name: naming::switch_name(net_name),
        net_name: net_name.to_string(),
        plugin_type,
        topology,
        subnets,
        exclude,
        mtu,
        gateway,
    })
}

fn short(text: &str) -> String {
    show(&Value::String(text.to_string()))
}

fn not_ours(field: &str, value: &str) -> FieldError {
    FieldError::new(
        field,
        value,
        format!("no plugin of type {TYPE_OVN_K8S} or {TYPE_LANES}: the NAD belongs to another CNI plugin"),
    )
}

fn find_plugin<'a>(list: &Obj<'a>) -> Result<(Obj<'a>, PluginType), Problem> {
    let mut types = Vec::new();
    for (path, value) in list.list("plugins")? {
        let plugin = Obj::new(&path, Some(value))?;
        let t = plugin.str("type")?.unwrap_or_default();
        if let Some(pt) = PluginType::from_type(t) {
            return Ok((plugin, pt));
        }
        types.push(t.to_string());
    }
    Err(Problem::NotOurs(not_ours(&list.path_of("plugins"), &types.join(","))))
}

fn check_version(head: &Obj<'_>) -> Result<(), FieldError> {
    match head.str("cniVersion")? {
        Some(v) if !SpecVersion::parse(v).is_some_and(SpecVersion::is_supported) => Err(FieldError::new(
            head.path_of("cniVersion"),
            v,
            format!("unsupported; supported: {}", SUPPORTED_VERSIONS.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn topology(plugin: &Obj<'_>, plugin_type: PluginType) -> Result<Topology, FieldError> {
    let path = plugin.path_of("topology");
    match plugin.str("topology")? {
        Some("layer2") => Ok(Topology::Layer2),
        None if plugin_type == PluginType::Lanes => Ok(Topology::Layer2),
        None => Err(FieldError::new(path, "", "required: layer2")),
        Some(t @ ("layer3" | "localnet")) => {
            Err(FieldError::new(path, t, format!("topology {t} is not supported yet")))
        }
        Some(t) => Err(FieldError::new(
            path,
            t,
            "unknown topology; expected layer2 (layer3 and localnet are not supported yet)",
        )),
    }
}

fn check_role_and_vlan(plugin: &Obj<'_>) -> Result<(), FieldError> {
    match plugin.str("role")? {
        None | Some("secondary") => {}
        Some("primary") => {
            return Err(FieldError::new(
                plugin.path_of("role"),
                "primary",
                "not supported: the primary network is Lanes' routed eth0; only secondary networks are",
            ))
        }
        Some(r) => {
            return Err(FieldError::new(
                plugin.path_of("role"),
                r,
                "expected primary or secondary",
            ))
        }
    }
    match plugin.int("vlanID")? {
        None | Some(0) => Ok(()),
        Some(v) if !(1..=4094).contains(&v) => Err(FieldError::new(
            plugin.path_of("vlanID"),
            v.to_string(),
            "must be 1..=4094",
        )),
        Some(v) => Err(FieldError::new(
            plugin.path_of("vlanID"),
            v.to_string(),
            "applies to the localnet topology only",
        )),
    }
}

fn check_nad_name(plugin: &Obj<'_>, plugin_type: PluginType, key: &(String, String)) -> Result<(), FieldError> {
    let expected = format!("{}/{}", key.0, key.1);
    let path = plugin.path_of("netAttachDefName");
    match plugin.str("netAttachDefName")? {
        Some(n) if n == expected => Ok(()),
        None if plugin_type == PluginType::Lanes => Ok(()),
        None => Err(FieldError::new(path, "", format!("required: {expected}"))),
        Some(n) => Err(FieldError::new(
            path,
            n,
            format!("must equal the NAD's namespace/name, {expected}"),
        )),
    }
}

#[cfg(test)]
#[path = "nad_tests.rs"]
mod tests;
