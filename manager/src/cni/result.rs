//! The ADD result: a version-independent model, rendered and parsed per spec version.
//!
//! Layouts: 0.3.x/0.4.0 carry `ips[].version` ("4"/"6"); 1.0.0 drops it; 1.1.0 adds
//! `interfaces[].mtu/socketPath/pciID` and `routes[].mtu/advmss/priority/table/scope`.
//! Rendering leaves out unset fields, empty lists and an empty `dns`, as libcni does.

use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::error::{kind, short, CniError};
use super::version::SpecVersion;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// The netns path; `None` for host-side interfaces.
    pub sandbox: Option<String>,
    /// 1.1.0.
    pub mtu: Option<u32>,
    /// 1.1.0.
    pub socket_path: Option<String>,
    /// 1.1.0.
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length, host bits kept (`198.18.0.2/24`).
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into the result's `interfaces`.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    /// 1.1.0 (and the four below).
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    /// 0 global, 253 link, 254 host.
    pub scope: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_none() && self.search.is_empty() && self.options.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn put<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), v.into());
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, list: &[String]) {
    if !list.is_empty() {
        m.insert(key.to_owned(), list.into());
    }
}

impl CniResult {
    /// The result in the layout of `v`, with `"cniVersion"` set to `v`.
    pub fn render(&self, v: SpecVersion) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), v.to_string().into());
        let interfaces: Vec<Value> = self.interfaces.iter().map(|i| i.render(v)).collect();
        let ips: Vec<Value> = self.ips.iter().map(|ip| ip.render(v)).collect();
        let routes: Vec<Value> = self.routes.iter().map(|r| r.render(v)).collect();
        for (key, list) in [("interfaces", interfaces), ("ips", ips), ("routes", routes)] {
            if !list.is_empty() {
                out.insert(key.into(), list.into());
            }
        }
        if !self.dns.is_empty() {
            let mut dns = Map::new();
            put_list(&mut dns, "nameservers", &self.dns.nameservers);
            put(&mut dns, "domain", self.dns.domain.as_deref());
            put_list(&mut dns, "search", &self.dns.search);
            put_list(&mut dns, "options", &self.dns.options);
            out.insert("dns".into(), dns.into());
        }
        Value::Object(out)
    }

    /// [`CniResult::render`] as JSON bytes.
    pub fn to_bytes(&self, v: SpecVersion) -> Vec<u8> {
        serde_json::to_vec(&self.render(v)).expect("serializing a JSON value cannot fail")
    }

    /// Parses a result of any supported layout, e.g. a `prevResult`; errors name the field
    /// as `prevResult.…`. Wrong JSON types and unparseable addresses are code 6; missing
    /// required fields, out-of-range interface indices and a wrong `ips[].version` are code 7.
    pub fn parse(value: &Value) -> Result<CniResult, CniError> {
        Self::parse_at(value, "prevResult")
    }

    /// [`CniResult::parse`] with `root` as the start of the field paths in errors.
    pub fn parse_at(value: &Value, root: &str) -> Result<CniResult, CniError> {
        let o = object(value, root)?;
        opt_string(o, "cniVersion", root)?;
        let interfaces = parse_list(o, "interfaces", root, Interface::parse)?;
        let ips = parse_list(o, "ips", root, |v, path| IpConfig::parse(v, path, interfaces.len()))?;
        let routes = parse_list(o, "routes", root, Route::parse)?;
        let dns = match field(o, "dns") {
            None => Dns::default(),
            Some(v) => {
                let path = format!("{root}.dns");
                let d = object(v, &path)?;
                Dns {
                    nameservers: string_list(d, "nameservers", &path)?,
                    domain: opt_string(d, "domain", &path)?,
                    search: string_list(d, "search", &path)?,
                    options: string_list(d, "options", &path)?,
                }
            }
        };
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// Chains `other` after `self`: its interfaces are appended and its IPs' interface indices
    /// shifted to match; IPs and routes are appended; DNS lists gain the entries they lack and
    /// `domain` is taken from `other` only if `self` has none.
    pub fn append(&mut self, other: CniResult) {
        let shift = self.interfaces.len();
        self.interfaces.extend(other.interfaces);
        self.ips.extend(other.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + shift);
            ip
        }));
        self.routes.extend(other.routes);
        let merge = |into: &mut Vec<String>, from: Vec<String>| {
            for item in from {
                if !into.contains(&item) {
                    into.push(item);
                }
            }
        };
        merge(&mut self.dns.nameservers, other.dns.nameservers);
        merge(&mut self.dns.search, other.dns.search);
        merge(&mut self.dns.options, other.dns.options);
        if self.dns.domain.is_none() {
            self.dns.domain = other.dns.domain;
        }
    }
}

impl Interface {
    fn render(&self, v: SpecVersion) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), self.name.as_str().into());
        put(&mut m, "mac", self.mac.as_deref());
        put(&mut m, "sandbox", self.sandbox.as_deref());
        if v.has_1_1_fields() {
            put(&mut m, "mtu", self.mtu);
            put(&mut m, "socketPath", self.socket_path.as_deref());
            put(&mut m, "pciID", self.pci_id.as_deref());
        }
        Value::Object(m)
    }

    fn parse(value: &Value, path: &str) -> Result<Self, CniError> {
        let o = object(value, path)?;
        Ok(Interface {
            name: opt_string(o, "name", path)?.ok_or_else(|| missing(path, "name"))?,
            mac: opt_string(o, "mac", path)?,
            sandbox: opt_string(o, "sandbox", path)?,
            mtu: opt_uint(o, "mtu", path)?,
            socket_path: opt_string(o, "socketPath", path)?,
            pci_id: opt_string(o, "pciID", path)?,
        })
    }
}

impl IpConfig {
    pub fn new(address: IpNet, gateway: Option<IpAddr>, interface: Option<usize>) -> Self {
        Self {
            address,
            gateway,
            interface,
        }
    }

    fn render(&self, v: SpecVersion) -> Value {
        let mut m = Map::new();
        if v.has_ip_version_field() {
            let family = if self.address.addr().is_ipv4() { "4" } else { "6" };
            m.insert("version".into(), family.into());
        }
        put(&mut m, "interface", self.interface);
        m.insert("address".into(), self.address.to_string().into());
        put(&mut m, "gateway", self.gateway.map(|g| g.to_string()));
        Value::Object(m)
    }

    fn parse(value: &Value, path: &str, n_interfaces: usize) -> Result<Self, CniError> {
        let o = object(value, path)?;
        let address: IpNet = opt_parsed(o, "address", path)?.ok_or_else(|| missing(path, "address"))?;
        let interface = opt_uint::<usize>(o, "interface", path)?;
        if let Some(i) = interface.filter(|i| *i >= n_interfaces) {
            return Err(invalid(
                &format!("{path}.interface"),
                format!("index {i} is out of range: the result has {n_interfaces} interfaces"),
            ));
        }
        if let Some(version) = opt_string(o, "version", path)? {
            let family = if address.addr().is_ipv4() { "4" } else { "6" };
            if version != family {
                return Err(invalid(
                    &format!("{path}.version"),
                    format!("{version:?} does not match address {address} (expected {family:?})"),
                ));
            }
        }
        Ok(IpConfig {
            address,
            gateway: opt_parsed(o, "gateway", path)?,
            interface,
        })
    }
}

impl Route {
    /// A route with only `dst` and `gw` set.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    fn render(&self, v: SpecVersion) -> Value {
        let mut m = Map::new();
        m.insert("dst".into(), self.dst.to_string().into());
        put(&mut m, "gw", self.gw.map(|g| g.to_string()));
        if v.has_1_1_fields() {
            put(&mut m, "mtu", self.mtu);
            put(&mut m, "advmss", self.advmss);
            put(&mut m, "priority", self.priority);
            put(&mut m, "table", self.table);
            put(&mut m, "scope", self.scope);
        }
        Value::Object(m)
    }

    fn parse(value: &Value, path: &str) -> Result<Self, CniError> {
        let o = object(value, path)?;
        Ok(Route {
            dst: opt_parsed(o, "dst", path)?.ok_or_else(|| missing(path, "dst"))?,
            gw: opt_parsed(o, "gw", path)?,
            mtu: opt_uint(o, "mtu", path)?,
            advmss: opt_uint(o, "advmss", path)?,
            priority: opt_uint(o, "priority", path)?,
            table: opt_uint(o, "table", path)?,
            scope: opt_uint(o, "scope", path)?,
        })
    }
}

fn decode_error(path: &str, value: &Value, why: impl Display) -> CniError {
    CniError::decoding(
        "failed to decode CNI result",
        format!("`{path}` = {}: {why}", short(value)),
    )
}

fn invalid(path: &str, why: impl Display) -> CniError {
    CniError::invalid_config("invalid CNI result", format!("`{path}`: {why}"))
}

fn missing(path: &str, key: &str) -> CniError {
    invalid(&format!("{path}.{key}"), "required field missing")
}

/// A present, non-null field.
fn field<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, CniError> {
    value
        .as_object()
        .ok_or_else(|| decode_error(path, value, format!("expected an object, found {}", kind(value))))
}

fn opt_string(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, CniError> {
    match field(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(decode_error(&format!("{path}.{key}"), v, "expected a string")),
    }
}

/// Each element of the list `key` (absent: none) parsed by `parse` with its path.
fn parse_list<T>(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    parse: impl Fn(&Value, &str) -> Result<T, CniError>,
) -> Result<Vec<T>, CniError> {
    let items = match field(o, key) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => return Err(decode_error(&format!("{path}.{key}"), v, "expected a list")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v, &format!("{path}.{key}[{i}]")))
        .collect()
}

fn string_list(o: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>, CniError> {
    parse_list(o, key, path, |v, path| match v {
        Value::String(s) => Ok(s.clone()),
        v => Err(decode_error(path, v, "expected a string")),
    })
}

fn opt_uint<T: TryFrom<u64>>(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<T>, CniError> {
    field(o, key)
        .map(|v| {
            v.as_u64()
                .and_then(|n| T::try_from(n).ok())
                .ok_or_else(|| decode_error(&format!("{path}.{key}"), v, "expected a non-negative integer in range"))
        })
        .transpose()
}

fn opt_parsed<T: FromStr>(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<T>, CniError>
where
    T::Err: Display,
{
    let Some(text) = opt_string(o, key, path)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| decode_error(&format!("{path}.{key}"), &Value::from(text.as_str()), e))
}

#[cfg(test)]
mod tests {
    use super::super::error::{ERR_DECODING, ERR_INVALID_CONFIG};
    use super::*;
    use serde_json::json;

    const PTP: &str = r#"{"cniVersion":"1.0.0",
 "interfaces":[{"name":"veth5ec72998","mac":"a2:ab:6c:33:22:fe"},
               {"name":"eth0","mac":"9e:8c:f5:22:ef:2d","sandbox":"/var/run/netns/cnidemo-ctr-18967"}],
 "ips":[{"interface":1,"address":"198.18.0.2/24","gateway":"198.18.0.1"}],
 "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "lh1".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:02".into()),
                    sandbox: Some("/run/netns/p".into()),
                    mtu: Some(1450),
                    socket_path: Some("/run/s.sock".into()),
                    pci_id: Some("0000:00:01.0".into()),
                },
            ],
            ips: vec![
                IpConfig::new(
                    "10.1.0.5/24".parse().unwrap(),
                    Some("10.1.0.1".parse().unwrap()),
                    Some(1),
                ),
                IpConfig::new("fd00::5/64".parse().unwrap(), None, None),
            ],
            routes: vec![
                Route::new("0.0.0.0/0".parse().unwrap(), Some("10.1.0.1".parse().unwrap())),
                Route {
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(10),
                    table: Some(100),
                    scope: Some(253),
                    ..Route::new("fd01::/64".parse().unwrap(), None)
                },
            ],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                domain: None,
                search: vec!["svc.local".into()],
                options: vec![],
            },
        }
    }

    /// The exact rendering of `sample()` per version.
    fn expected(v: &str) -> Value {
        let text = match v {
            "0.3.0" | "0.3.1" | "0.4.0" => {
                r#"{"cniVersion":"VER",
                "interfaces":[{"name":"lh1","mac":"02:00:00:00:00:01"},
                              {"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/run/netns/p"}],
                "ips":[{"version":"4","interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"},
                       {"version":"6","address":"fd00::5/64"}],
                "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"fd01::/64"}],
                "dns":{"nameservers":["10.96.0.10"],"search":["svc.local"]}}"#
            }
            "1.0.0" => {
                r#"{"cniVersion":"VER",
                "interfaces":[{"name":"lh1","mac":"02:00:00:00:00:01"},
                              {"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/run/netns/p"}],
                "ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"},{"address":"fd00::5/64"}],
                "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"fd01::/64"}],
                "dns":{"nameservers":["10.96.0.10"],"search":["svc.local"]}}"#
            }
            "1.1.0" => {
                r#"{"cniVersion":"VER",
                "interfaces":[{"name":"lh1","mac":"02:00:00:00:00:01"},
                              {"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/run/netns/p",
                               "mtu":1450,"socketPath":"/run/s.sock","pciID":"0000:00:01.0"}],
                "ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"},{"address":"fd00::5/64"}],
                "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},
                          {"dst":"fd01::/64","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":253}],
                "dns":{"nameservers":["10.96.0.10"],"search":["svc.local"]}}"#
            }
            _ => unreachable!("{v}"),
        };
        serde_json::from_str(&text.replace("VER", v)).unwrap()
    }

    #[test]
    fn render_every_version() {
        let r = sample();
        for v in super::super::version::SUPPORTED_VERSIONS {
            let spec: SpecVersion = v.parse().unwrap();
            assert_eq!(r.render(spec), expected(v), "{v}");
            let bytes: Value = serde_json::from_slice(&r.to_bytes(spec)).unwrap();
            assert_eq!(bytes, expected(v));
        }
    }

    #[test]
    fn render_empty() {
        let r = CniResult::default();
        assert_eq!(r.to_bytes(SpecVersion::V1_0_0), br#"{"cniVersion":"1.0.0"}"#.to_vec());
    }

    #[test]
    fn ptp_round_trip() {
        let input: Value = serde_json::from_str(PTP).unwrap();
        let r = CniResult::parse(&input).unwrap();
        assert_eq!(r.interfaces.len(), 2);
        assert_eq!(r.interfaces[0].sandbox, None);
        assert_eq!(r.ips[0].interface, Some(1));
        assert_eq!(r.ips[0].address.to_string(), "198.18.0.2/24");
        assert!(r.dns.is_empty());
        let mut want = input.clone();
        want.as_object_mut().unwrap().remove("dns");
        assert_eq!(r.render(SpecVersion::V1_0_0), want);
        assert_eq!(CniResult::parse(&r.render(SpecVersion::V1_1_0)).unwrap(), r);
    }

    #[test]
    fn parse_with_version_field_and_1_1_fields() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let r = CniResult::parse(&expected(v)).unwrap();
            let mut want = sample();
            if v != "1.1.0" {
                let eth0 = &mut want.interfaces[1];
                (eth0.mtu, eth0.socket_path, eth0.pci_id) = (None, None, None);
                want.routes[1] = Route::new(want.routes[1].dst, None);
            }
            assert_eq!(r, want, "{v}");
        }
        // An abbreviated IPAM result: no interfaces, no ips[].interface.
        let r = CniResult::parse(
            &json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": null}),
        )
        .unwrap();
        assert_eq!(r.ips.len(), 1);
    }

    #[test]
    fn append_shifts_indices() {
        let mut a = CniResult::parse(&serde_json::from_str(PTP).unwrap()).unwrap();
        let mut b = sample();
        b.dns.domain = Some("x".into());
        a.dns.search = vec!["svc.local".into()];
        a.append(b);
        assert_eq!(a.interfaces.len(), 4);
        assert_eq!(a.interfaces[2].name, "lh1");
        let idx: Vec<_> = a.ips.iter().map(|ip| ip.interface).collect();
        assert_eq!(idx, [Some(1), Some(3), None]);
        assert_eq!(a.routes.len(), 3);
        assert_eq!(a.dns.search, ["svc.local"]);
        assert_eq!(a.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(a.dns.domain.as_deref(), Some("x"));
        // Still a valid result.
        assert_eq!(CniResult::parse(&a.render(SpecVersion::V1_1_0)).unwrap(), a);
    }

    #[test]
    fn bad_field_paths() {
        #[rustfmt::skip]
        let cases = [
            (r#"[]"#, ERR_DECODING, "`prevResult` = []"),
            (r#"{"cniVersion": 1}"#, ERR_DECODING, "`prevResult.cniVersion`"),
            (r#"{"ips": {}}"#, ERR_DECODING, "`prevResult.ips` = {}"),
            (r#"{"ips": [{"address": "198.18.0.300/24"}]}"#, ERR_DECODING, r#"`prevResult.ips[0].address` = "198.18"#),
            (r#"{"ips": [{"address": 5}]}"#, ERR_DECODING, "`prevResult.ips[0].address` = 5"),
            (r#"{"ips": [{"gateway": "1.1.1.1"}]}"#, ERR_INVALID_CONFIG, "`prevResult.ips[0].address`: required"),
            (r#"{"ips": [{"address": "10.0.0.1/8", "gateway": "x"}]}"#, ERR_DECODING, "`prevResult.ips[0].gateway`"),
            (r#"{"ips": [{"address": "10.0.0.1/8", "interface": 0}]}"#, ERR_INVALID_CONFIG, "`prevResult.ips[0].interface`: index 0"),
            (r#"{"ips": [{"address": "10.0.0.1/8", "interface": -1}]}"#, ERR_DECODING, "`prevResult.ips[0].interface`"),
            (r#"{"ips": [{"address": "10.0.0.1/8", "version": "6"}]}"#, ERR_INVALID_CONFIG, "`prevResult.ips[0].version`"),
            (r#"{"interfaces": [{"mac": "x"}]}"#, ERR_INVALID_CONFIG, "`prevResult.interfaces[0].name`"),
            (r#"{"interfaces": [{"name": "a", "mtu": "9000"}]}"#, ERR_DECODING, "`prevResult.interfaces[0].mtu`"),
            (r#"{"routes": [{}, {"dst": "x"}]}"#, ERR_INVALID_CONFIG, "`prevResult.routes[0].dst`"),
            (r#"{"routes": [{"dst": "0.0.0.0/0", "scope": 256}]}"#, ERR_DECODING, "`prevResult.routes[0].scope` = 256"),
            (r#"{"dns": {"nameservers": ["a", 1]}}"#, ERR_DECODING, "`prevResult.dns.nameservers[1]`"),
            (r#"{"dns": []}"#, ERR_DECODING, "`prevResult.dns`"),
        ];
        for (input, code, prefix) in cases {
            let e = CniResult::parse(&serde_json::from_str(input).unwrap()).unwrap_err();
            assert_eq!(e.code, code, "{input}: {e:?}");
            assert!(e.details.starts_with(prefix), "{input}: {}", e.details);
        }
        let e = CniResult::parse_at(&json!({"routes": 1}), "result").unwrap_err();
        assert!(e.details.starts_with("`result.routes`"));
    }
}
