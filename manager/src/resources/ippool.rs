//! `IPPool`: a CIDR that pod addresses come from, carved into node-affine blocks.
//!
//! Field names, values and defaults are Calico's (`projectcalico.org/v3`), so a Calico pool
//! pastes unchanged. `crd.projectcalico.org/v1` also accepts the deprecated `ipip` and
//! `nat-outgoing` fields; `lanes.dev/v1` adds `bgpExport`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::meta::{show, FieldError, Obj, ObjectMeta};
use super::selector::Selector;
use super::{API_CALICO_CRD, API_LANES};

/// When traffic to another node's pods is encapsulated (`ipipMode`, `vxlanMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    /// Only when the other node is on a different subnet.
    CrossSubnet,
}

/// What a pool's addresses may be used for (`allowedUses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// Whether IPAM picks this pool by itself or only when asked for it by name (`assignmentMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AssignmentMode {
    #[default]
    Automatic,
    Manual,
}

/// What this node advertises over BGP for the pool (`bgpExport`, lanes.dev/v1 only): block
/// aggregates, or the aggregates plus each local pod's /32 (/128).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BgpExport {
    #[default]
    Aggregate,
    AggregateAndPods,
}

/// A validated, defaulted IP pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPool {
    pub name: String,
    /// Normalised: host bits are cleared (`10.244.1.7/16` reads as `10.244.0.0/16`).
    pub cidr: IpNet,
    /// Prefix length of the pool's blocks (26 = 64 addresses per block).
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
    pub disable_bgp_export: bool,
    pub node_selector: Selector,
    /// Calico's `namespaceSelector` (default `all()`). Kept so pasted Calico pools load; the
    /// allocator must check it against the pod's namespace labels.
    pub namespace_selector: Selector,
    pub allowed_uses: Vec<AllowedUse>,
    pub assignment_mode: AssignmentMode,
    pub bgp_export: BgpExport,
    pub api_version: String,
    /// The file the pool was read from.
    pub source: String,
}

impl IpPool {
    /// Whether IPAM may pick this pool by itself for a pod on a node with these labels: not
    /// disabled, `Workload` allowed, `Automatic`, and `nodeSelector` matches.
    /// (`namespaceSelector` is separate: see [`IpPool::namespace_selector`].)
    pub fn usable_for_workloads_on(&self, node_labels: &BTreeMap<String, String>) -> bool {
        !self.disabled
            && self.allowed_uses.contains(&AllowedUse::Workload)
            && self.assignment_mode == AssignmentMode::Automatic
            && self.node_selector.matches(node_labels)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip)
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.cidr, IpNet::V6(_))
    }
}

const ENCAP_MODES: &[(&str, EncapMode)] = &[
    ("Never", EncapMode::Never),
    ("Always", EncapMode::Always),
    ("CrossSubnet", EncapMode::CrossSubnet),
];
const ALLOWED_USES: &[(&str, AllowedUse)] = &[
    ("Workload", AllowedUse::Workload),
    ("Tunnel", AllowedUse::Tunnel),
    ("LoadBalancer", AllowedUse::LoadBalancer),
];
const ASSIGNMENT_MODES: &[(&str, AssignmentMode)] = &[
    ("Automatic", AssignmentMode::Automatic),
    ("Manual", AssignmentMode::Manual),
];
const BGP_EXPORTS: &[(&str, BgpExport)] = &[
    ("aggregate", BgpExport::Aggregate),
    ("aggregate+pods", BgpExport::AggregateAndPods),
];

/// The name `value` has in `table` (the spelling the documents use).
fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table.iter().find(|(_, v)| *v == value).map_or("", |(name, _)| name)
}

impl EncapMode {
    pub fn as_str(self) -> &'static str {
        name_of(ENCAP_MODES, self)
    }
}

impl fmt::Display for EncapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AllowedUse {
    pub fn as_str(self) -> &'static str {
        name_of(ALLOWED_USES, self)
    }
}

impl AssignmentMode {
    pub fn as_str(self) -> &'static str {
        name_of(ASSIGNMENT_MODES, self)
    }
}

impl BgpExport {
    pub fn as_str(self) -> &'static str {
        name_of(BGP_EXPORTS, self)
    }
}

/// Spec fields of Calico's IPPool, under every apiVersion.
const CALICO_FIELDS: &[&str] = &[
    "cidr",
    "blockSize",
    "ipipMode",
    "vxlanMode",
    "natOutgoing",
    "disabled",
    "disableBGPExport",
    "nodeSelector",
    "namespaceSelector",
    "allowedUses",
    "assignmentMode",
];
/// Calico API v1 leftovers that the `crd.projectcalico.org/v1` schema still carries.
const DEPRECATED_FIELDS: &[&str] = &["ipip", "nat-outgoing"];
const LANES_FIELDS: &[&str] = &["bgpExport"];

const LINK_LOCAL_V4: &str = "169.254.0.0/16";
const LINK_LOCAL_V6: &str = "fe80::/10";

pub(crate) fn parse(api_version: &str, meta: ObjectMeta, top: &Obj<'_>, source: &str) -> Result<IpPool, FieldError> {
    let spec = top.obj("spec")?;
    check_fields(api_version, &spec)?;

    let cidr = parse_cidr(&spec)?;
    let block_size = parse_block_size(&spec, cidr)?;

    let (ipip_mode, ipip_field) = match choice(&spec, "ipipMode", ENCAP_MODES)? {
        Some(mode) => (mode, "spec.ipipMode"),
        None if spec.get("ipip").is_some() => (deprecated_ipip(&spec)?, "spec.ipip"),
        None => (EncapMode::Never, "spec.ipipMode"),
    };
    let vxlan_mode = choice(&spec, "vxlanMode", ENCAP_MODES)?.unwrap_or_default();
    if cidr.addr().is_ipv6() && ipip_mode != EncapMode::Never {
        return Err(FieldError::new(
            ipip_field,
            ipip_mode.as_str(),
            "IPIP is not supported on an IPv6 pool (use vxlanMode)",
        ));
    }
    if ipip_mode != EncapMode::Never && vxlan_mode != EncapMode::Never {
        return Err(FieldError::new(
            "spec.vxlanMode",
            vxlan_mode.as_str(),
            format!("cannot enable both VXLAN and IPIP on one pool (ipipMode is {ipip_mode})"),
        ));
    }

    let nat_outgoing = match spec.bool("natOutgoing")? {
        Some(b) => b,
        None => spec.bool("nat-outgoing")?.unwrap_or(false),
    };

    Ok(IpPool {
        name: meta.name,
        cidr,
        block_size,
        ipip_mode,
        vxlan_mode,
        nat_outgoing,
        disabled: spec.bool("disabled")?.unwrap_or(false),
        disable_bgp_export: spec.bool("disableBGPExport")?.unwrap_or(false),
        node_selector: selector(&spec, "nodeSelector")?,
        namespace_selector: selector(&spec, "namespaceSelector")?,
        allowed_uses: allowed_uses(&spec)?,
        assignment_mode: choice(&spec, "assignmentMode", ASSIGNMENT_MODES)?.unwrap_or_default(),
        bgp_export: choice(&spec, "bgpExport", BGP_EXPORTS)?.unwrap_or_default(),
        api_version: api_version.to_string(),
        source: source.to_string(),
    })
}

/// Unknown spec fields are refused; fields that exist only under another apiVersion get a
/// message that says which.
fn check_fields(api_version: &str, spec: &Obj<'_>) -> Result<(), FieldError> {
    let mut allowed = CALICO_FIELDS.to_vec();
    if api_version == API_LANES {
        allowed.extend_from_slice(LANES_FIELDS);
    } else if let Some(value) = LANES_FIELDS.iter().find_map(|f| spec.get(f)) {
        return Err(FieldError::new(
            spec.path_of("bgpExport"),
            show(value),
            format!(
                "unknown field: Calico's IPPool ({api_version}) has no bgpExport; \
                 it is a {API_LANES} field"
            ),
        ));
    }
    if api_version == API_CALICO_CRD {
        allowed.extend_from_slice(DEPRECATED_FIELDS);
    } else if let Some(field) = DEPRECATED_FIELDS.iter().find(|f| spec.get(f).is_some()) {
        let value = spec.get(field).map(show).unwrap_or_default();
        return Err(FieldError::new(
            spec.path_of(field),
            value,
            format!(
                "deprecated Calico v1 field, accepted only under {API_CALICO_CRD}; \
                 use ipipMode / natOutgoing"
            ),
        ));
    }
    spec.deny_unknown(&allowed)
}

fn parse_cidr(spec: &Obj<'_>) -> Result<IpNet, FieldError> {
    let text = spec
        .str("cidr")?
        .ok_or_else(|| FieldError::new("spec.cidr", "", "required"))?;
    let bad = |reason: &str| FieldError::new("spec.cidr", text, reason);
    let cidr: IpNet = text.parse().map_err(|_| match text.parse::<IpAddr>() {
        Ok(_) => bad("missing prefix length: expected a CIDR such as 10.244.0.0/16"),
        Err(_) => bad("expected an IPv4 or IPv6 CIDR such as 10.244.0.0/16 or fd00:10:244::/48"),
    })?;
    let normalised = cidr.trunc();
    if normalised != cidr {
        tracing::debug!(%cidr, %normalised, "IPPool cidr has host bits set; using the network");
    }
    let link_local = if cidr.addr().is_ipv4() {
        LINK_LOCAL_V4
    } else {
        LINK_LOCAL_V6
    };
    let link_local: IpNet = link_local.parse().expect("constant CIDR");
    if overlaps(&normalised, &link_local) {
        return Err(bad(&format!("overlaps the link-local range {link_local}")));
    }
    Ok(normalised)
}

pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn parse_block_size(spec: &Obj<'_>, cidr: IpNet) -> Result<u8, FieldError> {
    let (default, min, max, family) = match cidr {
        IpNet::V4(_) => (26, 20, 32, "IPv4"),
        IpNet::V6(_) => (122, 116, 128, "IPv6"),
    };
    // Calico's blockSize is an omitempty int: 0 means "not set".
    let size = match spec.int("blockSize")? {
        None | Some(0) => default,
        Some(n) if (min..=max).contains(&n) => n,
        Some(n) => {
            let reason = format!("must be between {min} and {max} for an {family} pool");
            return Err(FieldError::new("spec.blockSize", n.to_string(), reason));
        }
    };
    let size = u8::try_from(size).expect("range-checked");
    if cidr.prefix_len() > size {
        return Err(FieldError::new(
            "spec.blockSize",
            size.to_string(),
            format!(
                "pool too small: cidr {cidr} (/{}) cannot hold one /{size} block; \
                 blockSize must be at least the cidr prefix length",
                cidr.prefix_len()
            ),
        ));
    }
    Ok(size)
}

/// A string field that must be one of `choices`, spelled exactly; absent or "" reads as unset
/// (Calico's fields are `omitempty`).
fn choice<T: Copy>(spec: &Obj<'_>, key: &str, choices: &[(&str, T)]) -> Result<Option<T>, FieldError> {
    let Some(text) = spec.str(key)?.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            let reason = format!("expected one of {}", names.join(", "));
            Err(FieldError::new(spec.path_of(key), text, reason))
        }
    }
}

/// Calico v1's `ipip: {enabled, mode: always|cross-subnet}`; mode defaults to always.
fn deprecated_ipip(spec: &Obj<'_>) -> Result<EncapMode, FieldError> {
    let ipip = spec.obj("ipip")?;
    ipip.deny_unknown(&["enabled", "mode"])?;
    let modes = [("always", EncapMode::Always), ("cross-subnet", EncapMode::CrossSubnet)];
    let mode = choice(&ipip, "mode", &modes)?.unwrap_or(EncapMode::Always);
    Ok(if ipip.bool("enabled")?.unwrap_or(false) {
        mode
    } else {
        EncapMode::Never
    })
}

fn selector(spec: &Obj<'_>, key: &str) -> Result<Selector, FieldError> {
    let text = spec.str(key)?.unwrap_or("");
    Selector::parse(text).map_err(|e| FieldError::new(spec.path_of(key), text, format!("invalid selector: {e}")))
}

fn allowed_uses(spec: &Obj<'_>) -> Result<Vec<AllowedUse>, FieldError> {
    let mut uses = Vec::new();
    for (path, item) in spec.list("allowedUses")? {
        let found = ALLOWED_USES.iter().find(|(name, _)| item.as_str() == Some(name));
        let Some(&(_, found)) = found else {
            let reason = "expected one of Workload, Tunnel, LoadBalancer";
            return Err(FieldError::new(path, show(item), reason));
        };
        if !uses.contains(&found) {
            uses.push(found);
        }
    }
    if uses.is_empty() {
        return Ok(vec![AllowedUse::Workload, AllowedUse::Tunnel]);
    }
    if uses.contains(&AllowedUse::LoadBalancer) && uses.len() > 1 {
        let listed: Vec<&str> = uses.iter().map(|u| u.as_str()).collect();
        return Err(FieldError::new(
            "spec.allowedUses",
            listed.join(", "),
            "LoadBalancer cannot be combined with Workload or Tunnel",
        ));
    }
    Ok(uses)
}

#[cfg(test)]
mod tests {
    use super::super::{API_CALICO_V3, API_LANES};
    use super::*;
    use serde_json::{json, Value};

    fn pool(api: &str, spec: Value) -> Result<IpPool, FieldError> {
        let doc = json!({"metadata": {"name": "p"}, "spec": spec});
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false).unwrap();
        parse(api, meta, &top, "pools.yaml")
    }

    #[test]
    fn calico_defaults_for_v4_and_v6() {
        let p = pool(API_CALICO_V3, json!({"cidr": "10.244.7.9/16"})).unwrap();
        assert_eq!(p.cidr.to_string(), "10.244.0.0/16");
        assert_eq!(p.block_size, 26);
        assert_eq!((p.ipip_mode, p.vxlan_mode), (EncapMode::Never, EncapMode::Never));
        assert!(!p.nat_outgoing && !p.disabled && !p.disable_bgp_export);
        assert_eq!(p.node_selector, Selector::all());
        assert_eq!(p.allowed_uses, [AllowedUse::Workload, AllowedUse::Tunnel]);
        assert_eq!(p.assignment_mode, AssignmentMode::Automatic);
        assert_eq!(p.bgp_export, BgpExport::Aggregate);
        assert_eq!(
            (p.api_version.as_str(), p.source.as_str()),
            (API_CALICO_V3, "pools.yaml")
        );

        let p = pool(API_CALICO_V3, json!({"cidr": "fd00:10:244::/48", "blockSize": 0})).unwrap();
        assert_eq!(p.block_size, 122);
        assert!(p.is_ipv6());
        let p = pool(API_CALICO_V3, json!({"cidr": "fd00::/120", "blockSize": 128})).unwrap();
        assert_eq!(p.block_size, 128);
    }

    #[test]
    fn every_field_is_read() {
        let p = pool(
            API_LANES,
            json!({"cidr": "10.10.0.0/20", "blockSize": 28, "vxlanMode": "CrossSubnet",
                   "ipipMode": "", "natOutgoing": true, "disabled": true, "disableBGPExport": true,
                   "nodeSelector": "rack == 'r1'", "allowedUses": ["Tunnel", "Tunnel"],
                   "assignmentMode": "Manual", "bgpExport": "aggregate+pods"}),
        )
        .unwrap();
        assert_eq!(p.block_size, 28);
        assert_eq!((p.ipip_mode, p.vxlan_mode), (EncapMode::Never, EncapMode::CrossSubnet));
        assert!(p.nat_outgoing && p.disabled && p.disable_bgp_export);
        assert_eq!(p.allowed_uses, [AllowedUse::Tunnel]);
        assert_eq!(p.assignment_mode, AssignmentMode::Manual);
        assert_eq!(p.bgp_export, BgpExport::AggregateAndPods);
    }

    #[test]
    fn deprecated_crd_fields_map_when_new_ones_are_absent() {
        let cases = [
            (json!({"enabled": true, "mode": "cross-subnet"}), EncapMode::CrossSubnet),
            (json!({"enabled": true}), EncapMode::Always),
            (json!({"enabled": false, "mode": "always"}), EncapMode::Never),
        ];
        for (ipip, want) in cases {
            let p = pool(
                API_CALICO_CRD,
                json!({"cidr": "10.0.0.0/16", "ipip": ipip, "nat-outgoing": true}),
            )
            .unwrap();
            assert_eq!(p.ipip_mode, want, "{ipip}");
            assert!(p.nat_outgoing);
        }
        let p = pool(
            API_CALICO_CRD,
            json!({"cidr": "10.0.0.0/16", "ipipMode": "Never", "ipip": {"enabled": true},
                   "natOutgoing": false, "nat-outgoing": true}),
        )
        .unwrap();
        assert_eq!(p.ipip_mode, EncapMode::Never);
        assert!(!p.nat_outgoing);
    }

    #[test]
    fn workload_usability() {
        let labels = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
        let spec = |extra: Value| {
            let mut s = json!({"cidr": "10.0.0.0/16", "nodeSelector": "rack == 'r1'"});
            s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            pool(API_CALICO_V3, s).unwrap()
        };
        assert!(spec(json!({})).usable_for_workloads_on(&labels));
        assert!(!spec(json!({})).usable_for_workloads_on(&BTreeMap::new()));
        assert!(!spec(json!({"disabled": true})).usable_for_workloads_on(&labels));
        assert!(!spec(json!({"assignmentMode": "Manual"})).usable_for_workloads_on(&labels));
        assert!(!spec(json!({"allowedUses": ["Tunnel"]})).usable_for_workloads_on(&labels));
        let p = spec(json!({}));
        assert!(p.contains("10.0.255.1".parse().unwrap()));
        assert!(!p.contains("10.1.0.1".parse().unwrap()));
    }

    /// apiVersion | spec | field | fragment of the reason
    const REJECTIONS: &str = r#"
        v3    | {"cidr": "10.0.0.0/16", "blockSize": 33}                  | spec.blockSize      | between 20 and 32
        v3    | {"cidr": "10.0.0.0/16", "blockSize": 19}                  | spec.blockSize      | for an IPv4 pool
        v3    | {"cidr": "fd00::/64", "blockSize": 112}                   | spec.blockSize      | between 116 and 128
        v3    | {"cidr": "10.0.0.0/28"}                                   | spec.blockSize      | pool too small
        v3    | {"cidr": "10.0.0.0/28", "blockSize": 27}                  | spec.blockSize      | 10.0.0.0/28 (/28) cannot hold one /27
        v3    | {"cidr": "10.0.0.0/16", "blockSize": "26"}                | spec.blockSize      | an integer
        v3    | {"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "Always"} | spec.vxlanMode | both VXLAN and IPIP
        v3    | {"cidr": "fd00::/64", "ipipMode": "CrossSubnet"}          | spec.ipipMode       | IPv6
        crd   | {"cidr": "fd00::/64", "ipip": {"enabled": true}}          | spec.ipip           | IPv6
        v3    | {"cidr": "10.0.0.0/16", "ipipMode": "always"}             | spec.ipipMode       | Never, Always, CrossSubnet
        v3    | {"cidr": "10.0.0.0/16", "vxlanMode": true}                | spec.vxlanMode      | expected a string
        v3    | {"cidr": "10.0.0.0/16", "blockSise": 26}                  | spec.blockSise      | did you mean blockSize?
        v3    | {"cidr": "10.0.0.0/16", "bgpExport": "aggregate"}         | spec.bgpExport      | it is a lanes.dev/v1 field
        crd   | {"cidr": "10.0.0.0/16", "bgpExport": "aggregate"}         | spec.bgpExport      | unknown field
        v3    | {"cidr": "10.0.0.0/16", "ipip": {"enabled": true}}        | spec.ipip           | only under crd.projectcalico.org/v1
        lanes | {"cidr": "10.0.0.0/16", "nat-outgoing": true}             | spec.nat-outgoing   | deprecated
        crd   | {"cidr": "10.0.0.0/16", "ipip": {"enabled": true, "mode": "x"}} | spec.ipip.mode | always, cross-subnet
        crd   | {"cidr": "10.0.0.0/16", "ipip": {"enable": true}}         | spec.ipip.enable    | did you mean enabled?
        v3    | {"cidr": "10.0.0.0/16", "nodeSelector": "rack == r1"}     | spec.nodeSelector   | invalid selector: column
        v3    | {"cidr": "10.0.0.0/16", "namespaceSelector": "=="}        | spec.namespaceSelector | column
        v3    | {"blockSize": 26}                                         | spec.cidr           | required
        v3    | {"cidr": "10.0.0.300/16"}                                 | spec.cidr           | expected an IPv4 or IPv6 CIDR
        v3    | {"cidr": "10.0.0.1"}                                      | spec.cidr           | missing prefix length
        v3    | {"cidr": "169.254.0.0/20"}                                | spec.cidr           | link-local
        v3    | {"cidr": "169.0.0.0/8"}                                   | spec.cidr           | 169.254.0.0/16
        v3    | {"cidr": "fe80::/64"}                                     | spec.cidr           | fe80::/10
        v3    | {"cidr": "10.0.0.0/16", "allowedUses": ["Workload", "Pods"]} | spec.allowedUses[1] | Workload, Tunnel, LoadBalancer
        v3    | {"cidr": "10.0.0.0/16", "allowedUses": ["Workload", "LoadBalancer"]} | spec.allowedUses | cannot be combined
        v3    | {"cidr": "10.0.0.0/16", "allowedUses": "Workload"}        | spec.allowedUses    | a list
        v3    | {"cidr": "10.0.0.0/16", "assignmentMode": "Auto"}         | spec.assignmentMode | Automatic, Manual
        v3    | {"cidr": "10.0.0.0/16", "natOutgoing": "yes"}             | spec.natOutgoing    | true or false
        lanes | {"cidr": "10.0.0.0/16", "bgpExport": "pods"}             | spec.bgpExport      | aggregate+pods
        v3    | "10.0.0.0/16"                                             | spec                | expected a mapping
    "#;

    #[test]
    fn rejections_name_the_field() {
        for line in REJECTIONS.lines().filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let api = match cols[0] {
                "lanes" => API_LANES,
                "v3" => API_CALICO_V3,
                "crd" => API_CALICO_CRD,
                other => panic!("{other}"),
            };
            let err = pool(api, serde_json::from_str(cols[1]).unwrap()).unwrap_err();
            assert_eq!(err.field, cols[2], "{line}: {err:?}");
            assert!(err.reason.contains(cols[3]), "{line}: {}", err.reason);
        }
    }

    #[test]
    fn overlap_is_symmetric() {
        let a: IpNet = "10.0.0.0/16".parse().unwrap();
        let b: IpNet = "10.0.128.0/20".parse().unwrap();
        let c: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(overlaps(&a, &b) && overlaps(&b, &a));
        assert!(!overlaps(&a, &c));
    }
}
