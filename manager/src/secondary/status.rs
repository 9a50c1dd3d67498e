//! The pod annotation `k8s.v1.cni.cncf.io/network-status`, written byte for byte as Multus
//! writes it, so tools that read Multus' output read ours.
//!
//! Multus marshals each entry with Go's `json.MarshalIndent(status, "", "    ")` and joins them
//! as `[` + entries joined by `,` + `]`. Fields, in order: `name`, `interface`, `ips` (addresses
//! without prefix), `mac`, `mtu`, `default`, `dns`, `gateway`; every one but `name` and `dns` is
//! left out when empty, `dns` (a struct in Go) is always there, `{}` when empty. Go escapes
//! `<`, `>`, `&`, U+2028 and U+2029 in strings, and so does [`render_network_status`].
//!
//! The default network's entry comes first with `"default": true`, named after the cluster
//! network (`lanes`); secondaries are named `namespace/name` after their NAD.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Deserialize;

use crate::cni::Dns;

pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// What one attachment looks like in the pod: the plain input for an entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AttachmentStatus {
    pub interface: String,
    /// Addresses only: Multus writes no prefix length.
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub dns: Dns,
    /// Gateways of the default routes through this interface (empty on eth0 when a secondary's
    /// `default-route` took the default route over, as Multus does).
    pub gateway: Vec<IpAddr>,
}

/// One entry of the annotation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NetworkStatus {
    pub name: String,
    pub default: bool,
    pub attachment: AttachmentStatus,
}

/// The entries for a pod: the default network's first (named `default_network`, marked
/// default), then each secondary under its NAD's `namespace/name`, in attachment order.
pub fn pod_network_status(
    default_network: &str,
    primary: Option<&AttachmentStatus>,
    secondaries: &[(String, AttachmentStatus)],
) -> Vec<NetworkStatus> {
    let primary = primary.map(|a| NetworkStatus {
        name: default_network.to_string(),
        default: true,
        attachment: a.clone(),
    });
    let rest = secondaries.iter().map(|(nad, a)| NetworkStatus {
        name: nad.clone(),
        default: false,
        attachment: a.clone(),
    });
    primary.into_iter().chain(rest).collect()
}

/// The annotation's value, exactly as Multus formats it.
pub fn render_network_status(entries: &[NetworkStatus]) -> String {
    let parts: Vec<String> = entries.iter().map(render_entry).collect();
    format!("[{}]", parts.join(","))
}

fn render_entry(s: &NetworkStatus) -> String {
    let a = &s.attachment;
    let addrs = |ips: &[IpAddr]| ips.iter().map(|ip| quote(&ip.to_string())).collect::<Vec<_>>();
    let mut fields = vec![("name", quote(&s.name))];
    if !a.interface.is_empty() {
        fields.push(("interface", quote(&a.interface)));
    }
    if !a.ips.is_empty() {
        fields.push(("ips", array(&addrs(&a.ips), 1)));
    }
    if let Some(mac) = a.mac.as_deref().filter(|m| !m.is_empty()) {
        fields.push(("mac", quote(mac)));
    }
    if let Some(mtu) = a.mtu.filter(|&m| m != 0) {
        fields.push(("mtu", mtu.to_string()));
    }
    if s.default {
        fields.push(("default", "true".to_string()));
    }
    fields.push(("dns", dns(&a.dns)));
    if !a.gateway.is_empty() {
        fields.push(("gateway", array(&addrs(&a.gateway), 1)));
    }
    object(&fields, 0)
}

fn dns(d: &Dns) -> String {
    let strings = |items: &[String]| array(&items.iter().map(|s| quote(s)).collect::<Vec<_>>(), 2);
    let mut fields = Vec::new();
    if !d.nameservers.is_empty() {
        fields.push(("nameservers", strings(&d.nameservers)));
    }
    if let Some(domain) = d.domain.as_deref().filter(|d| !d.is_empty()) {
        fields.push(("domain", quote(domain)));
    }
    if !d.search.is_empty() {
        fields.push(("search", strings(&d.search)));
    }
    if !d.options.is_empty() {
        fields.push(("options", strings(&d.options)));
    }
    object(&fields, 1)
}

/// `{...}` as Go's indenter lays it out at nesting `depth`; empty is `{}`.
fn object(fields: &[(&str, String)], depth: usize) -> String {
    let items: Vec<String> = fields.iter().map(|(k, v)| format!("{}: {v}", quote(k))).collect();
    block('{', '}', &items, depth)
}

fn array(items: &[String], depth: usize) -> String {
    block('[', ']', items, depth)
}

fn block(open: char, close: char, items: &[String], depth: usize) -> String {
    if items.is_empty() {
        return format!("{open}{close}");
    }
    let inner = "    ".repeat(depth + 1);
    let body: Vec<String> = items.iter().map(|i| format!("{inner}{i}")).collect();
    format!("{open}\n{}\n{}{close}", body.join(",\n"), "    ".repeat(depth))
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe escaping).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Deserialize)]
struct WireEntry {
    name: String,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    ips: Vec<IpAddr>,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    dns: WireDns,
    #[serde(default)]
    gateway: Vec<IpAddr>,
}

#[derive(Deserialize, Default)]
struct WireDns {
    #[serde(default)]
    nameservers: Vec<String>,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    search: Vec<String>,
    #[serde(default)]
    options: Vec<String>,
}

/// Reads an annotation back (ours or Multus'); `device-info` and unknown keys are ignored.
pub fn parse_network_status(text: &str) -> Result<Vec<NetworkStatus>, serde_json::Error> {
    let wire: Vec<WireEntry> = serde_json::from_str(text)?;
    Ok(wire
        .into_iter()
        .map(|w| NetworkStatus {
            name: w.name,
            default: w.default,
            attachment: AttachmentStatus {
                interface: w.interface,
                ips: w.ips,
                mac: Some(w.mac).filter(|m| !m.is_empty()),
                mtu: Some(w.mtu).filter(|&m| m != 0),
                dns: Dns {
                    nameservers: w.dns.nameservers,
                    domain: Some(w.dns.domain).filter(|d| !d.is_empty()),
                    search: w.dns.search,
                    options: w.dns.options,
                },
                gateway: w.gateway,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// busybox3 from the seed: eth0 on the primary network, eth1 on yusur-ovn with the default
    /// route moved to it.
    fn busybox3() -> Vec<NetworkStatus> {
        let eth0 = AttachmentStatus {
            interface: "eth0".into(),
            ips: vec![ip("10.244.1.5")],
            mac: Some("ee:ee:ee:ee:ee:ee".into()),
            mtu: Some(1500),
            ..Default::default()
        };
        let eth1 = AttachmentStatus {
            interface: "eth1".into(),
            ips: vec![ip("10.144.0.5")],
            mac: Some("0a:58:0a:90:00:05".into()),
            mtu: Some(1400),
            gateway: vec![ip("10.144.0.1")],
            ..Default::default()
        };
        pod_network_status("lanes", Some(&eth0), &[("default/yusur-ovn".into(), eth1)])
    }

    const BUSYBOX3_GOLDEN: &str = r#"[{
    "name": "lanes",
    "interface": "eth0",
    "ips": [
        "10.244.1.5"
    ],
    "mac": "ee:ee:ee:ee:ee:ee",
    "mtu": 1500,
    "default": true,
    "dns": {}
},{
    "name": "default/yusur-ovn",
    "interface": "eth1",
    "ips": [
        "10.144.0.5"
    ],
    "mac": "0a:58:0a:90:00:05",
    "mtu": 1400,
    "dns": {},
    "gateway": [
        "10.144.0.1"
    ]
}]"#;

    #[test]
    fn golden_busybox3() {
        let entries = busybox3();
        assert_eq!(render_network_status(&entries), BUSYBOX3_GOLDEN);
        assert_eq!(parse_network_status(BUSYBOX3_GOLDEN).unwrap(), entries);
    }

    #[test]
    fn golden_dns_dual_stack_and_minimal() {
        let eth0 = AttachmentStatus {
            interface: "eth0".into(),
            ips: vec![ip("10.244.1.5"), ip("fd00:244::5")],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                domain: Some("cluster.local".into()),
                search: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
                options: vec![],
            },
            gateway: vec![ip("169.254.1.1")],
            ..Default::default()
        };
        let entries = pod_network_status("lanes", Some(&eth0), &[("team/l2".into(), AttachmentStatus::default())]);
        let golden = r#"[{
    "name": "lanes",
    "interface": "eth0",
    "ips": [
        "10.244.1.5",
        "fd00:244::5"
    ],
    "default": true,
    "dns": {
        "nameservers": [
            "10.96.0.10"
        ],
        "domain": "cluster.local",
        "search": [
            "default.svc.cluster.local",
            "svc.cluster.local"
        ]
    },
    "gateway": [
        "169.254.1.1"
    ]
},{
    "name": "team/l2",
    "dns": {}
}]"#;
        assert_eq!(render_network_status(&entries), golden);
        assert_eq!(parse_network_status(golden).unwrap(), entries);
        assert_eq!(render_network_status(&[]), "[]");
        assert!(pod_network_status("lanes", None, &[]).is_empty());
    }

    #[test]
    fn output_is_valid_json_with_go_escaping() {
        assert_eq!(
            quote("a<b>&\"\\\n\u{1}\u{2028}é"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#
        );
        let entries = vec![NetworkStatus {
            name: "x<y".into(),
            ..Default::default()
        }];
        let text = render_network_status(&entries);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["name"], "x<y");
        assert_eq!(parse_network_status(&text).unwrap(), entries);
    }

    #[test]
    fn reads_multus_output_with_device_info() {
        let text = r#"[{"name":"k8s-pod-network","ips":["10.1.2.3"],"default":true,"dns":{},
                        "device-info":{"type":"pci","version":"1.1.0"}}]"#;
        let parsed = parse_network_status(text).unwrap();
        assert_eq!((parsed[0].name.as_str(), parsed[0].default), ("k8s-pod-network", true));
        assert!(
            parse_network_status("[{\"interface\":\"eth0\"}]").is_err(),
            "name is required"
        );
    }
}
