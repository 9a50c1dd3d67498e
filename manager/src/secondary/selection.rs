//! The pod annotation `k8s.v1.cni.cncf.io/networks`: which secondary networks a pod wants, as
//! the Network Plumbing Working Group's spec (and Multus) reads it.
//!
//! Two forms. Short: `name`, `ns/name`, `name@ifname`, `ns/name@ifname`, comma-separated, spaces
//! allowed, each part a DNS-1123 label (Multus' rule). JSON: a list of objects with `name`
//! (required), `namespace`, `interface`, `ips` (CIDRs), `mac`, `default-route` (gateway IPs),
//! `cni-args`, `portMappings` and `bandwidth`; other keys are ignored as Multus ignores them, and
//! listed in [`Selection::ignored_fields`] so the caller can warn. As in Multus, text containing
//! `[`, `{` or `"` is the JSON form. The namespace defaults to the pod's.
//!
//! [`parse_selection`] checks each element and the list as a whole; [`assign_interfaces`] names
//! the elements that did not ask for a name; [`resolve`] pairs each with its [`Network`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::nad::{Network, NAD_KIND};
use super::subnets::is_reserved_address;
use crate::cni::CniError;
use crate::resources::meta::{check_dns_label, check_dns_subdomain, show, FieldError, Obj};

pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The primary network's interface in the pod: never a secondary's.
pub const PRIMARY_IFNAME: &str = "eth0";
/// `IFNAMSIZ - 1`.
pub const MAX_IFNAME_LEN: usize = 15;

/// One element of the annotation.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Selection {
    pub namespace: String,
    pub name: String,
    /// The requested interface name; `None` leaves it to [`assign_interfaces`].
    pub interface: Option<String>,
    /// Requested addresses with their prefix length (`10.144.0.5/16`).
    pub ips: Vec<IpNet>,
    /// Requested MAC, lowercase with colons.
    pub mac: Option<String>,
    /// Gateways for default routes through this interface (one per IP family, across the pod).
    pub default_route: Vec<IpAddr>,
    pub cni_args: Option<Map<String, Value>>,
    /// Kept as written, for the plugin's runtime config.
    pub port_mappings: Option<Value>,
    pub bandwidth: Option<Value>,
    /// Keys that were not read (JSON form only), sorted.
    pub ignored_fields: Vec<String>,
}

impl Selection {
    /// The NAD this selects: (namespace, name).
    pub fn nad_key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// `ns/name` or `ns/name@ifname`, as in the short form.
    pub fn label(&self) -> String {
        match &self.interface {
            Some(ifname) => format!("{}/{}@{ifname}", self.namespace, self.name),
            None => format!("{}/{}", self.namespace, self.name),
        }
    }
}

/// A bad annotation, naming the element (`networks[1] (default/yusur-ovn@eth1)`) and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SelectionError {
    /// Position in the annotation; `None` when the annotation as a whole is bad.
    pub element: Option<usize>,
    /// The element as far as it could be read (`default/yusur-ovn@eth1`); may be empty.
    pub label: String,
    /// `mac`, `ips[0]`, …; empty when not about one field.
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.element {
            None => f.write_str("networks: ")?,
            Some(i) if self.label.is_empty() => write!(f, "networks[{i}]: ")?,
            Some(i) => write!(f, "networks[{i}] ({}): ", self.label)?,
        }
        match (self.field.is_empty(), self.value.is_empty()) {
            (true, _) => {}
            (false, true) => write!(f, "{}: ", self.field)?,
            (false, false) => write!(f, "{} = {}: ", self.field, self.value)?,
        }
        f.write_str(&self.reason)
    }
}

impl From<SelectionError> for CniError {
    fn from(e: SelectionError) -> Self {
        CniError::invalid_config(format!("invalid {NETWORKS_ANNOTATION} annotation"), e.to_string())
    }
}

impl SelectionError {
    fn at(element: usize, label: &str, e: FieldError) -> Self {
        Self {
            element: Some(element),
            label: label.to_string(),
            field: e.field,
            value: e.value,
            reason: e.reason,
        }
    }

    fn whole(reason: String) -> Self {
        let e = FieldError::new("", "", reason);
        Self {
            element: None,
            ..Self::at(0, "", e)
        }
    }
}

/// Parses the annotation of a pod in `pod_namespace`. Blank text selects nothing.
pub fn parse_selection(annotation: &str, pod_namespace: &str) -> Result<Vec<Selection>, SelectionError> {
    let text = annotation.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let list = if text.contains(['[', '{', '"']) {
        parse_json(text, pod_namespace)?
    } else {
        parse_short(text, pod_namespace)?
    };
    check_list(&list)?;
    Ok(list)
}

fn parse_short(text: &str, pod_namespace: &str) -> Result<Vec<Selection>, SelectionError> {
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            let item = item.trim();
            let fail = |reason: &str| SelectionError::at(i, item, FieldError::new("", "", reason));
            let (namespace, rest) = match item.split_once('/') {
                Some((_, rest)) if rest.contains('/') => return Err(fail("more than one '/'")),
                Some((ns, rest)) => (Some(ns.trim()), rest),
                None => (None, item),
            };
            let (name, interface) = match rest.split_once('@') {
                Some((_, ifname)) if ifname.contains('@') => return Err(fail("more than one '@'")),
                Some((name, ifname)) => (name.trim(), Some(ifname.trim())),
                None => (rest.trim(), None),
            };
            for (what, part) in [
                ("namespace", namespace),
                ("network name", Some(name)),
                ("interface", interface),
            ] {
                match part {
                    None => {}
                    Some("") if item.is_empty() => return Err(fail("empty element (a stray comma?)")),
                    Some("") => return Err(fail(&format!("empty {what}"))),
                    Some(p) => check_dns_label(what, p).map_err(|e| SelectionError::at(i, item, e))?,
                }
            }
            if let Some(ifname) = interface {
                let e = |r| SelectionError::at(i, item, FieldError::new("interface", ifname, r));
                check_ifname(ifname).map_err(e)?;
            }
            Ok(Selection {
                namespace: namespace.unwrap_or(pod_namespace).to_string(),
                name: name.to_string(),
                interface: interface.map(str::to_string),
                ..Selection::default()
            })
        })
        .collect()
}

/// Keys of a JSON element that are read.
const JSON_KEYS: &[&str] = &[
    "name",
    "namespace",
    "interface",
    "ips",
    "mac",
    "default-route",
    "cni-args",
    "portMappings",
    "bandwidth",
];

fn parse_json(text: &str, pod_namespace: &str) -> Result<Vec<Selection>, SelectionError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SelectionError::whole(format!("invalid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(SelectionError::whole(
            "expected a JSON list of objects ([{\"name\": ...}])".into(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let label = json_label(item, pod_namespace);
            parse_element(item, pod_namespace).map_err(|e| SelectionError::at(i, &label, e))
        })
        .collect()
}

/// The element as far as it reads, for error messages.
fn json_label(item: &Value, pod_namespace: &str) -> String {
    let text = |key| item.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (text("name"), text("interface")) {
        (None, _) => String::new(),
        (Some(name), ifname) => {
            let ns = text("namespace").unwrap_or(pod_namespace);
            ifname.map_or(format!("{ns}/{name}"), |i| format!("{ns}/{name}@{i}"))
        }
    }
}

fn parse_element(item: &Value, pod_namespace: &str) -> Result<Selection, FieldError> {
    if !item.is_object() {
        return Err(FieldError::new("", show(item), "expected an object"));
    }
    let o = Obj::new("", Some(item))?;
    let name = o.str("name")?.filter(|n| !n.is_empty());
    let name = name.ok_or_else(|| FieldError::new("name", "", "required"))?;
    check_dns_subdomain("name", name)?;
    let namespace = match o.str("namespace")?.filter(|n| !n.is_empty()) {
        Some(ns) => {
            check_dns_label("namespace", ns)?;
            ns
        }
        None => pod_namespace,
    };
    let interface = o.str("interface")?.filter(|i| !i.is_empty());
    if let Some(ifname) = interface {
        check_ifname(ifname).map_err(|r| FieldError::new("interface", ifname, r))?;
    }
    let ips = strings(&o, "ips")?
        .into_iter()
        .map(|(path, s)| {
            IpNet::from_str(s.trim())
                .map_err(|_| FieldError::new(path, s, "expected a CIDR (address/prefix), e.g. 10.144.0.5/16"))
        })
        .collect::<Result<_, _>>()?;
    let mac = match o.str("mac")?.filter(|m| !m.is_empty()) {
        Some(m) => Some(parse_mac(m).map_err(|r| FieldError::new("mac", m, r))?),
        None => None,
    };
    let default_route = strings(&o, "default-route")?
        .into_iter()
        .map(|(path, s)| IpAddr::from_str(s.trim()).map_err(|_| FieldError::new(path, s, "expected an IP address")))
        .collect::<Result<_, _>>()?;
    let cni_args = match o.get("cni-args") {
        None => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(other) => return Err(FieldError::new("cni-args", show(other), "expected an object")),
    };
    let port_mappings = match o.get("portMappings") {
        Some(v) if !v.is_array() => return Err(FieldError::new("portMappings", show(v), "expected a list")),
        v => v.cloned(),
    };
    let bandwidth = match o.get("bandwidth") {
        Some(v) if !v.is_object() => return Err(FieldError::new("bandwidth", show(v), "expected an object")),
        v => v.cloned(),
    };
    let mut ignored_fields: Vec<String> = item
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter(|k| !JSON_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    ignored_fields.sort();
    Ok(Selection {
        namespace: namespace.to_string(),
        name: name.to_string(),
        interface: interface.map(str::to_string),
        ips,
        mac,
        default_route,
        cni_args,
        port_mappings,
        bandwidth,
        ignored_fields,
    })
}

/// A list of strings, each with its path (`ips[0]`).
fn strings<'a>(o: &Obj<'a>, key: &str) -> Result<Vec<(String, &'a str)>, FieldError> {
    o.list(key)?
        .into_iter()
        .map(|(path, v)| match v {
            Value::String(s) => Ok((path, s.as_str())),
            other => Err(FieldError::new(path, show(other), "expected a string")),
        })
        .collect()
}

/// A Linux interface name a secondary may take: 1..=15 bytes, no '/', ':' or whitespace, not
/// `.`/`..`, and neither `eth0` (the primary's) nor `lo`.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name == PRIMARY_IFNAME || name == "lo" {
        return Err(format!(
            "{name} is taken: {PRIMARY_IFNAME} is the primary network's, lo the loopback"
        ));
    }
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace() || c == '\0';
    if name.is_empty() || name.len() > MAX_IFNAME_LEN || name == "." || name == ".." || name.contains(bad) {
        return Err(format!(
            "not a valid interface name: 1..={MAX_IFNAME_LEN} bytes without '/', ':' or whitespace"
        ));
    }
    Ok(())
}

/// A unicast 6-byte MAC with `:` or `-` separators, as `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Result<String, String> {
    const FORM: &str = "expected a MAC address such as 0a:58:0a:90:00:05";
    let sep = if text.contains(':') { ':' } else { '-' };
    let bytes: Vec<u8> = text
        .split(sep)
        .map(|p| {
            let hex = p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| u8::from_str_radix(p, 16).ok()).flatten()
        })
        .collect::<Option<_>>()
        .filter(|b: &Vec<u8>| b.len() == 6)
        .ok_or_else(|| FORM.to_string())?;
    if bytes[0] & 1 == 1 {
        return Err("a multicast address (the first byte is odd); expected a unicast MAC".into());
    }
    if bytes.iter().all(|&b| b == 0) {
        return Err("the all-zero MAC".into());
    }
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(parts.join(":"))
}

/// Checks across elements: interface names unique, one default route per IP family.
fn check_list(list: &[Selection]) -> Result<(), SelectionError> {
    let mut interfaces: HashMap<&str, usize> = HashMap::new();
    let mut gateways: [Option<(usize, IpAddr)>; 2] = [None, None];
    for (i, s) in list.iter().enumerate() {
        let fail = |field: String, value: String, reason: String| {
            SelectionError::at(i, &s.label(), FieldError::new(field, value, reason))
        };
        if let Some(ifname) = &s.interface {
            if let Some(&first) = interfaces.get(ifname.as_str()) {
                let reason = format!("already requested by networks[{first}] ({})", list[first].label());
                return Err(fail("interface".into(), ifname.clone(), reason));
            }
            interfaces.insert(ifname, i);
        }
        for (k, gw) in s.default_route.iter().enumerate() {
            let family = usize::from(gw.is_ipv6());
            if let Some((first, other)) = gateways[family] {
                let reason = format!(
                    "only one IPv{} default route per pod; networks[{first}] ({}) already sets one via {other}",
                    if gw.is_ipv6() { 6 } else { 4 },
                    list[first].label()
                );
                return Err(fail(format!("default-route[{k}]"), gw.to_string(), reason));
            }
            gateways[family] = Some((i, *gw));
        }
    }
    Ok(())
}

/// The interface name of every element, in order: the requested one, else `net<position+1>` as
/// Multus numbers them (its delegate 0 is the cluster network), moving on to the next free
/// `netN` when that name was requested explicitly by another element (where Multus would fail
/// with a clash).
pub fn assign_interfaces(selections: &[Selection]) -> Vec<String> {
    let mut used: Vec<String> = selections.iter().filter_map(|s| s.interface.clone()).collect();
    selections
        .iter()
        .enumerate()
        .map(|(i, s)| match &s.interface {
            Some(ifname) => ifname.clone(),
            None => {
                let name = (i + 1..)
                    .map(|n| format!("net{n}"))
                    .find(|n| !used.contains(n))
                    .expect("an unbounded range has a free name");
                used.push(name.clone());
                name
            }
        })
        .collect()
}

/// A selection paired with its network and final interface name.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// Position in the annotation.
    pub index: usize,
    pub selection: Selection,
    pub interface: String,
    pub network: Network,
}

/// Pairs each selection with its NAD's network (keyed by (namespace, name)) and checks the
/// requests against it: `ips` inside the subnets and not excluded, reserved or the gateway,
/// `default-route` gateways on the network. A NAD may be selected once per pod: ovn-kubernetes
/// names one logical switch port per pod and NAD.
pub fn resolve(
    selections: &[Selection],
    nads: &BTreeMap<(String, String), Network>,
) -> Result<Vec<Resolved>, SelectionError> {
    let interfaces = assign_interfaces(selections);
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::with_capacity(selections.len());
    for (i, (s, ifname)) in selections.iter().zip(interfaces).enumerate() {
        let label = format!("{}/{}@{ifname}", s.namespace, s.name);
        let fail = |field: String, value: String, reason: String| {
            SelectionError::at(i, &label, FieldError::new(field, value, reason))
        };
        let key = s.nad_key();
        if let Some(&first) = seen.get(&key) {
            let reason = format!("selects the same {NAD_KIND} as networks[{first}]; a pod may attach to it once");
            return Err(fail(String::new(), String::new(), reason));
        }
        seen.insert(key.clone(), i);
        let network = nads.get(&key).ok_or_else(|| {
            let reason = format!("{NAD_KIND} {}/{} not found", key.0, key.1);
            fail(String::new(), String::new(), reason)
        })?;
        let subnets: Vec<String> = network.subnets.iter().map(IpNet::to_string).collect();
        for (k, ip) in s.ips.iter().enumerate() {
            let addr = ip.addr();
            let problem = match network.subnet_for(addr) {
                _ if network.subnets.is_empty() => None,
                None => Some(format!(
                    "outside the subnets of {} ({})",
                    network.nad_name(),
                    subnets.join(", ")
                )),
                Some(net) if is_reserved_address(net, addr) => {
                    Some(format!("is the network or broadcast address of {net}"))
                }
                Some(_) if network.is_excluded(addr) => Some("is in the network's excludeSubnets".into()),
                Some(_) if network.gateway == Some(addr) => Some("is the network's gateway".into()),
                Some(_) => None,
            };
            if let Some(reason) = problem {
                return Err(fail(format!("ips[{k}]"), ip.to_string(), reason));
            }
        }
        // Without subnets the only on-link prefixes are the requested addresses'.
        let on_link: Vec<IpNet> = if network.subnets.is_empty() {
            s.ips.iter().map(IpNet::trunc).collect()
        } else {
            network.subnets.clone()
        };
        for (k, gw) in s.default_route.iter().enumerate() {
            if !on_link.iter().any(|n| n.contains(gw)) {
                let have: Vec<String> = on_link.iter().map(IpNet::to_string).collect();
                let reason = format!("gateway not on the network ({}): it must be on-link", have.join(", "));
                return Err(fail(format!("default-route[{k}]"), gw.to_string(), reason));
            }
        }
        out.push(Resolved {
            index: i,
            selection: s.clone(),
            interface: ifname,
            network: network.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "selection_tests.rs"]
mod tests;
