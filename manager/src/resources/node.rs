//! `Node`: a node's labels (for pool and peer selectors) and Calico's `spec.bgp` (its BGP
//! address, AS number and route-reflector cluster ID). The rest of the spec is kept raw. Core
//! `v1` Nodes are accepted as well as Calico's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::Value;

use super::bgpfields;
use super::meta::{FieldError, Obj, ObjectMeta};

/// Calico's `NodeBGPSpec`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBgp {
    /// This node's AS, overriding the BGPConfiguration's.
    pub as_number: Option<u32>,
    /// The node's IPv4 address with its subnet's prefix length (`192.168.0.11/24`; a bare
    /// address reads as /32). Host bits are kept: the address is the point.
    pub ipv4_address: Option<Ipv4Net>,
    pub ipv6_address: Option<Ipv6Net>,
    /// Set on route reflectors (`routeReflectorClusterID: 224.0.0.1`).
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// `ipv4IPIPTunnelAddr`, accepted and kept.
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
}

/// A node as the resources describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeResource {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.bgp`, when present.
    pub bgp: Option<NodeBgp>,
    /// `spec` as written (`Value::Null` when absent), e.g. `{"bgp": {"ipv4Address": ...}}`.
    pub spec: Value,
    /// Kubernetes' `InternalIP` (core Node `status.addresses`): BGP's address of last resort,
    /// after `spec.bgp.ipv4Address` and the address lanesd finds on the primary interface. Not
    /// first, because on a dual-NIC node it is often the API's network, not the BGP one.
    pub internal_ipv4: Option<Ipv4Addr>,
    pub api_version: String,
    pub source: String,
}

pub(crate) fn parse(
    api_version: &str,
    meta: ObjectMeta,
    top: &Obj<'_>,
    source: &str,
) -> Result<NodeResource, FieldError> {
    // Only `spec.bgp` is checked field by field; the rest belongs to other code (or to nobody,
    // for a pasted core Node).
    let spec = top.obj("spec")?;
    let bgp = spec.obj("bgp")?;
    let bgp = if bgp.is_present() { Some(parse_bgp(&bgp)?) } else { None };
    Ok(NodeResource {
        name: meta.name,
        labels: meta.labels,
        annotations: meta.annotations,
        bgp,
        spec: top.get("spec").cloned().unwrap_or(Value::Null),
        internal_ipv4: internal_ipv4(top),
        api_version: api_version.to_string(),
        source: source.to_string(),
    })
}

impl NodeResource {
    /// `spec.bgp.ipv4Address` without its prefix length.
    pub fn ipv4_address(&self) -> Option<Ipv4Addr> {
        self.bgp.as_ref()?.ipv4_address.map(|n| n.addr())
    }

    /// `spec.bgp.asNumber`.
    pub fn as_number(&self) -> Option<u32> {
        self.bgp.as_ref()?.as_number
    }

    /// `spec.bgp.routeReflectorClusterID`.
    pub fn route_reflector_cluster_id(&self) -> Option<Ipv4Addr> {
        self.bgp.as_ref()?.route_reflector_cluster_id
    }
}

/// The first IPv4 `InternalIP` in `status.addresses`; read leniently, as `status` is the
/// kubelet's to write, not ours to validate.
fn internal_ipv4(top: &Obj<'_>) -> Option<Ipv4Addr> {
    top.get("status")?
        .get("addresses")?
        .as_array()?
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .find_map(|a| a.get("address")?.as_str()?.parse().ok())
}

fn parse_bgp(bgp: &Obj<'_>) -> Result<NodeBgp, FieldError> {
    bgp.deny_unknown(&[
        "asNumber",
        "ipv4Address",
        "ipv6Address",
        "routeReflectorClusterID",
        "ipv4IPIPTunnelAddr",
    ])?;
    let address = |key: &str| -> Result<Option<IpNet>, FieldError> {
        let Some(text) = bgp.str(key)?.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let bad = || {
            FieldError::new(
                bgp.path_of(key),
                text,
                "expected an address with prefix length, e.g. 192.168.0.11/24",
            )
        };
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?),
        };
        Ok(Some(net))
    };
    let ipv4_address = match address("ipv4Address")? {
        None => None,
        Some(IpNet::V4(n)) => Some(n),
        Some(IpNet::V6(n)) => {
            return Err(FieldError::new(
                "spec.bgp.ipv4Address",
                n.to_string(),
                "expected an IPv4 address",
            ))
        }
    };
    let ipv6_address = match address("ipv6Address")? {
        None => None,
        Some(IpNet::V6(n)) => Some(n),
        Some(IpNet::V4(n)) => {
            return Err(FieldError::new(
                "spec.bgp.ipv6Address",
                n.to_string(),
                "expected an IPv6 address",
            ))
        }
    };
    let dotted = |key: &str| -> Result<Option<Ipv4Addr>, FieldError> {
        match bgp.str(key)?.filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| FieldError::new(bgp.path_of(key), text, "expected a dotted quad such as 224.0.0.1")),
        }
    };
    Ok(NodeBgp {
        as_number: bgpfields::as_number(bgp, "asNumber")?,
        ipv4_address,
        ipv6_address,
        route_reflector_cluster_id: dotted("routeReflectorClusterID")?,
        ipv4_ipip_tunnel_addr: dotted("ipv4IPIPTunnelAddr")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(doc: Value) -> Result<NodeResource, FieldError> {
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false)?;
        parse("projectcalico.org/v3", meta, &top, "nodes.yaml")
    }

    #[test]
    fn keeps_labels_and_raw_spec() {
        let n = node(json!({
            "metadata": {"name": "node1", "labels": {"rack": "r1"}},
            "spec": {"bgp": {"ipv4Address": "192.168.1.1/24", "asNumber": 1111111}}
        }))
        .unwrap();
        assert_eq!(n.labels["rack"], "r1");
        assert_eq!(n.spec["bgp"]["asNumber"], 1111111);
        assert_eq!(n.as_number(), Some(1111111));
        assert_eq!(n.ipv4_address(), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(n.bgp.as_ref().unwrap().ipv4_address.unwrap().prefix_len(), 24);
        let bare = node(json!({"metadata": {"name": "node2"}})).unwrap();
        assert_eq!(bare.spec, Value::Null);
        assert_eq!((&bare.bgp, bare.ipv4_address(), bare.as_number()), (&None, None, None));
    }

    #[test]
    fn internal_ip_is_read_from_status_addresses() {
        let n = node(json!({
            "metadata": {"name": "work01"},
            "status": {"addresses": [{"type": "Hostname", "address": "work01"},
                                     {"type": "InternalIP", "address": "fd00::11"},
                                     {"type": "InternalIP", "address": "192.168.122.11"}]}
        }))
        .unwrap();
        assert_eq!(n.internal_ipv4, Some(Ipv4Addr::new(192, 168, 122, 11)));
        // Not a BGP address: spec.bgp says nothing.
        assert_eq!((n.ipv4_address(), &n.bgp), (None, &None));
        let none = node(json!({"metadata": {"name": "x"}, "status": {"addresses": "junk"}})).unwrap();
        assert_eq!(none.internal_ipv4, None);
    }

    #[test]
    fn bgp_spec_fields() {
        let n = node(json!({
            "metadata": {"name": "rr1", "labels": {"route-reflector": "true"}},
            "spec": {"bgp": {"ipv4Address": "192.168.0.10", "ipv6Address": "fd00::10/64",
                             "asNumber": "1.10", "routeReflectorClusterID": "224.0.0.1",
                             "ipv4IPIPTunnelAddr": "10.244.0.1"},
                     "orchRefs": [{"nodeName": "rr1", "orchestrator": "k8s"}]}
        }))
        .unwrap();
        let bgp = n.bgp.clone().unwrap();
        assert_eq!(bgp.ipv4_address.unwrap().to_string(), "192.168.0.10/32");
        assert_eq!(bgp.ipv6_address.unwrap().to_string(), "fd00::10/64");
        assert_eq!(n.as_number(), Some(65546));
        assert_eq!(n.route_reflector_cluster_id(), Some(Ipv4Addr::new(224, 0, 0, 1)));
        assert_eq!(bgp.ipv4_ipip_tunnel_addr, Some(Ipv4Addr::new(10, 244, 0, 1)));
    }

    #[test]
    fn bgp_spec_rejections_name_the_field() {
        let cases = [
            (json!({"asNumber": 0}), "spec.bgp.asNumber", "1 to 4294967295"),
            (json!({"ipv4Address": "fd00::1/64"}), "spec.bgp.ipv4Address", "IPv4"),
            (json!({"ipv4Address": "node1"}), "spec.bgp.ipv4Address", "prefix length"),
            (json!({"ipv6Address": "10.0.0.1/24"}), "spec.bgp.ipv6Address", "IPv6"),
            (
                json!({"routeReflectorClusterID": "1"}),
                "spec.bgp.routeReflectorClusterID",
                "dotted quad",
            ),
            (json!({"asNumbr": 1}), "spec.bgp.asNumbr", "did you mean asNumber?"),
            (json!([1]), "spec.bgp", "expected a mapping"),
        ];
        for (bgp, field, fragment) in cases {
            let err = node(json!({"metadata": {"name": "n"}, "spec": {"bgp": bgp}})).unwrap_err();
            assert_eq!(err.field, field, "{bgp}");
            assert!(err.reason.contains(fragment), "{bgp}: {}", err.reason);
        }
    }

    #[test]
    fn spec_must_be_a_mapping_and_labels_strings() {
        let err = node(json!({"metadata": {"name": "n"}, "spec": [1]})).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("spec", "expected a mapping")
        );
        let err = node(json!({"metadata": {"name": "n", "labels": {"rack": 1}}})).unwrap_err();
        assert_eq!(err.field, "metadata.labels.rack");
    }
}
