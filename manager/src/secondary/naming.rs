//! Names of the OVN and OVS objects of a secondary network, chosen as ovn-kubernetes chooses
//! them so that its tools and habits (`ovn-nbctl find logical_switch_port …`) carry over.
//!
//! - prefix of a network's entities: its name with `-` and `/` as `.`, then `_`
//!   (ovn-kubernetes' `GetSecondaryNetworkPrefix`);
//! - layer-2 logical switch: prefix + `ovn_layer2_switch` (`yusur.ovn_ovn_layer2_switch`);
//! - logical switch port: the prefix of the NAD's `namespace/name`, then `<pod namespace>_<pod>`
//!   (`default.yusur.ovn_default_busybox3`);
//! - OVS `Interface` `external_ids`: `iface-id` (the port), `iface-id-ver` (pod UID),
//!   `attached_mac`, `sandbox` (container id), `ip_addresses`, `k8s.ovn.org/network`,
//!   `k8s.ovn.org/nad`.
//!
//! The host end of the veth is where Lanes differs: ovn-kubernetes names it after the container
//! id and the pod-side ifindex, known only once the link exists; Lanes uses a hash of
//! (container id, interface), known up front, so DEL and GC find it without looking.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Suffix of a layer-2 network's logical switch (ovn-kubernetes' `OVNLayer2Switch`).
pub const LAYER2_SWITCH_SUFFIX: &str = "ovn_layer2_switch";
/// Prefix of secondary host-side veths. Not `lan`: that prefix is the primary network's, whose
/// GC lists host links by it.
pub const HOST_IFNAME_PREFIX: &str = "lov";
/// `external_ids` key naming the network (ovn-kubernetes' `NetworkExternalID`).
pub const EXTERNAL_ID_NETWORK: &str = "k8s.ovn.org/network";
/// `external_ids` key naming the NAD `namespace/name` (ovn-kubernetes' `NADExternalID`).
pub const EXTERNAL_ID_NAD: &str = "k8s.ovn.org/nad";

/// `name` with `-` and `/` as `.`, then `_`: `default/yusur-ovn` → `default.yusur.ovn_`.
pub fn network_prefix(name: &str) -> String {
    let mut prefix = name.replace(['-', '/'], ".");
    prefix.push('_');
    prefix
}

/// The logical switch of a layer-2 network named `net_name` (the NAD config's `name`).
pub fn switch_name(net_name: &str) -> String {
    network_prefix(net_name) + LAYER2_SWITCH_SUFFIX
}

/// The logical switch port of a pod on the NAD `nad` (`namespace/name`); also the OVS
/// interface's `iface-id`.
pub fn lsp_name(nad: &str, pod_namespace: &str, pod_name: &str) -> String {
    format!("{}{pod_namespace}_{pod_name}", network_prefix(nad))
}

/// The host-side veth of a secondary interface: `lov` + 12 hex digits of FNV-1a-64 over
/// `container_id + "." + ifname`, 15 bytes.
///
/// Stable across Lanes versions (DEL after an upgrade must find old veths) and unique per
/// (container, interface) with 48 bits of hash.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let hash = format!("{:016x}", fnv1a64(format!("{container_id}.{ifname}").as_bytes()));
    format!("{HOST_IFNAME_PREFIX}{}", &hash[..12])
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// ovn-kubernetes' MAC for a pod address (`IPAddrToHWAddr`): `0a:58:` then the IPv4 address'
/// four bytes, or the last four of an IPv6 address.
pub fn mac_from_ip(ip: IpAddr) -> String {
    let tail: [u8; 4] = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", tail[0], tail[1], tail[2], tail[3])
}

/// What the OVS `Interface` of a pod's secondary port is tagged with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortIds<'a> {
    /// The logical switch port ([`lsp_name`]): ovn-controller binds the interface to it.
    pub iface_id: &'a str,
    /// The pod UID; ovn-controller compares it with the port's `options:iface-id-ver` when set.
    /// Left out when unknown (no UID in the file datastore).
    pub pod_uid: Option<&'a str>,
    pub mac: &'a str,
    pub container_id: &'a str,
    /// The pod's addresses with prefix (`10.144.0.5/16`); the key is left out when empty.
    pub ips: &'a [IpNet],
    /// The network's `name`.
    pub network: &'a str,
    /// The NAD, `namespace/name`.
    pub nad: &'a str,
}

impl PortIds<'_> {
    /// The `external_ids` map, as `ovs-vsctl set interface … external_ids:iface-id=…` would set
    /// it in ovn-kubernetes' `ConfigureOVS`.
    pub fn external_ids(&self) -> BTreeMap<String, String> {
        let mut ids = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            ids.insert(k.to_string(), v);
        };
        put("iface-id", self.iface_id.to_string());
        if let Some(uid) = self.pod_uid.filter(|u| !u.is_empty()) {
            put("iface-id-ver", uid.to_string());
        }
        put("attached_mac", self.mac.to_string());
        put("sandbox", self.container_id.to_string());
        if !self.ips.is_empty() {
            let ips: Vec<String> = self.ips.iter().map(IpNet::to_string).collect();
            put("ip_addresses", ips.join(","));
        }
        put(EXTERNAL_ID_NETWORK, self.network.to_string());
        put(EXTERNAL_ID_NAD, self.nad.to_string());
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ovn_kubernetes_names() {
        assert_eq!(network_prefix("default/yusur-ovn"), "default.yusur.ovn_");
        assert_eq!(switch_name("yusur-ovn"), "yusur.ovn_ovn_layer2_switch");
        assert_eq!(switch_name("l2.net"), "l2.net_ovn_layer2_switch");
        assert_eq!(
            lsp_name("default/yusur-ovn", "default", "busybox3"),
            "default.yusur.ovn_default_busybox3"
        );
        // Pod namespace and name are kept as they are, dashes included.
        assert_eq!(lsp_name("team-a/fast", "team-a", "web-0"), "team.a.fast_team-a_web-0");
    }

    #[test]
    fn host_ifname_is_stable_short_and_distinct() {
        let cid = "3f0e6a5b9c1d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
        let a = host_ifname(cid, "eth1");
        assert_eq!(a, "lov286be3b86b15", "the name must never change across versions");
        assert_eq!(a.len(), 15);
        assert_eq!(a, host_ifname(cid, "eth1"));
        assert_ne!(a, host_ifname(cid, "eth2"));
        assert_ne!(a, host_ifname("other", "eth1"));
        assert!(!a.starts_with("lan"));
        // FNV-1a-64 reference values.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn macs_from_addresses() {
        assert_eq!(mac_from_ip("10.144.0.5".parse().unwrap()), "0a:58:0a:90:00:05");
        assert_eq!(mac_from_ip("fd00::a:b0c:d0e".parse().unwrap()), "0a:58:0b:0c:0d:0e");
    }

    #[test]
    fn external_ids_like_configure_ovs() {
        let ips: Vec<IpNet> = vec!["10.144.0.5/16".parse().unwrap(), "fd00::5/64".parse().unwrap()];
        let ids = PortIds {
            iface_id: "default.yusur.ovn_default_busybox3",
            pod_uid: Some("7d3c1a2e-0000-4000-8000-000000000001"),
            mac: "0a:58:0a:90:00:05",
            container_id: "3f0e6a5b9c1d",
            ips: &ips,
            network: "yusur-ovn",
            nad: "default/yusur-ovn",
        };
        let got: Vec<(String, String)> = ids.external_ids().into_iter().collect();
        let want: Vec<(String, String)> = [
            ("attached_mac", "0a:58:0a:90:00:05"),
            ("iface-id", "default.yusur.ovn_default_busybox3"),
            ("iface-id-ver", "7d3c1a2e-0000-4000-8000-000000000001"),
            ("ip_addresses", "10.144.0.5/16,fd00::5/64"),
            ("k8s.ovn.org/nad", "default/yusur-ovn"),
            ("k8s.ovn.org/network", "yusur-ovn"),
            ("sandbox", "3f0e6a5b9c1d"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);

        let bare = PortIds {
            pod_uid: None,
            ips: &[],
            ..ids
        };
        let keys: Vec<String> = bare.external_ids().into_keys().collect();
        assert_eq!(
            keys,
            [
                "attached_mac",
                "iface-id",
                "k8s.ovn.org/nad",
                "k8s.ovn.org/network",
                "sandbox"
            ]
        );
    }
}
