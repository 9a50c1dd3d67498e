//! Tests of [`super`]: both annotation forms, Multus' interface numbering, validation, resolve.

use super::*;
use crate::secondary::nad::{PluginType, Topology};
use serde_json::json;

/// The seed's busybox3 annotation.
const BUSYBOX3: &str =
    r#"[{"name":"yusur-ovn","namespace":"default","interface":"eth1","default-route":["10.144.0.1"]}]"#;

fn err(annotation: &str) -> SelectionError {
    parse_selection(annotation, "shop").unwrap_err()
}

fn network(ns: &str, name: &str, subnets: &[&str]) -> Network {
    Network {
        key: (ns.into(), name.into()),
        net_name: name.into(),
        plugin_type: PluginType::OvnK8sOverlay,
        topology: Topology::Layer2,
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        exclude: Vec::new(),
        mtu: 1400,
        gateway: None,
        switch_name: String::new(),
    }
}

fn nads(networks: Vec<Network>) -> BTreeMap<(String, String), Network> {
    networks.into_iter().map(|n| (n.key.clone(), n)).collect()
}

#[test]
fn seed_busybox3_annotation() {
    let sel = parse_selection(BUSYBOX3, "default").unwrap();
    assert_eq!(sel.len(), 1);
    let s = &sel[0];
    assert_eq!(s.nad_key(), ("default".to_string(), "yusur-ovn".to_string()));
    assert_eq!(s.label(), "default/yusur-ovn@eth1");
    assert_eq!(s.default_route, ["10.144.0.1".parse::<IpAddr>().unwrap()]);
    assert!(s.ips.is_empty() && s.mac.is_none() && s.ignored_fields.is_empty());

    let resolved = resolve(&sel, &nads(vec![network("default", "yusur-ovn", &["10.144.0.0/16"])])).unwrap();
    assert_eq!((resolved[0].index, resolved[0].interface.as_str()), (0, "eth1"));
    assert_eq!(resolved[0].network.net_name, "yusur-ovn");
}

#[test]
fn short_form() {
    let sel = parse_selection(" fast , team/slow@eth2,  other@net5,team/x ", "shop").unwrap();
    let labels: Vec<String> = sel.iter().map(Selection::label).collect();
    assert_eq!(labels, ["shop/fast", "team/slow@eth2", "shop/other@net5", "team/x"]);
    assert_eq!(assign_interfaces(&sel), ["net1", "eth2", "net5", "net4"]);
    assert!(parse_selection("  ", "shop").unwrap().is_empty());
}

#[test]
fn short_form_errors() {
    for (text, fragment) in [
        ("a,,b", "networks[1]: empty element"),
        ("a,", "networks[1]: empty element"),
        ("a/b/c", "networks[0] (a/b/c): more than one '/'"),
        ("a@b@c", "more than one '@'"),
        ("/a", "empty namespace"),
        ("ns/@eth1", "empty network name"),
        ("a@", "empty interface"),
        ("My-Net", "network name = My-Net: must be a DNS-1123 label"),
        ("a@net_1", "interface = net_1: must be a DNS-1123 label"),
        ("a@eth0", "eth0 is taken"),
        ("a@averyverylongname1", "1..=15 bytes"),
        (
            "a@eth1, b@eth1",
            "networks[1] (shop/b@eth1): interface = eth1: already requested by networks[0] (shop/a@eth1)",
        ),
    ] {
        let e = err(text).to_string();
        assert!(e.contains(fragment), "{text}: {e}");
    }
}

#[test]
fn json_form_reads_every_field() {
    let text = json!([{
        "name": "fast", "interface": "lane1", "ips": ["10.9.0.5/24", "fd00:9::5/64"], "mac": "0A-58-0A-09-00-05",
        "default-route": ["10.9.0.1"], "cni-args": {"foo": "bar"}, "portMappings": [{"hostPort": 80}],
        "bandwidth": {"ingressRate": 1}, "ipam-claim-reference": "x", "zzz": null
    }, {"name": "slow", "namespace": "team", "interface": ""}])
    .to_string();
    let sel = parse_selection(&text, "shop").unwrap();
    let s = &sel[0];
    assert_eq!(s.label(), "shop/fast@lane1");
    assert_eq!(s.ips[1].to_string(), "fd00:9::5/64");
    assert_eq!(s.mac.as_deref(), Some("0a:58:0a:09:00:05"));
    assert_eq!(s.cni_args.as_ref().unwrap()["foo"], "bar");
    assert_eq!(s.port_mappings, Some(json!([{"hostPort": 80}])));
    assert_eq!(s.bandwidth, Some(json!({"ingressRate": 1})));
    assert_eq!(s.ignored_fields, ["ipam-claim-reference", "zzz"]);
    assert_eq!(
        (sel[1].label().as_str(), sel[1].interface.is_none()),
        ("team/slow", true)
    );
    assert_eq!(assign_interfaces(&sel), ["lane1", "net2"]);
}

#[test]
fn json_form_errors_name_element_and_field() {
    for (value, fragment) in [
        (json!({"name": "a"}), "networks: expected a JSON list"),
        (json!([{"name": "a"}, 5]), "networks[1]: expected an object"),
        (json!([{"namespace": "x"}]), "networks[0]: name: required"),
        (json!([{"name": ""}]), "networks[0]: name: required"),
        (json!([{"name": "A_b"}]), "name = A_b: must be a DNS-1123 subdomain"),
        (
            json!([{"name": "a", "namespace": "a.b"}]),
            "networks[0] (a.b/a): namespace = a.b",
        ),
        (
            json!([{"name": "a", "interface": "eth0"}]),
            "(shop/a@eth0): interface = eth0: eth0 is taken",
        ),
        (
            json!([{"name": "a", "interface": "e:1"}]),
            "interface = e:1: not a valid interface name",
        ),
        (
            json!([{"name": "a", "interface": 1}]),
            "interface = 1: expected a string",
        ),
        (
            json!([{"name": "a", "ips": ["10.0.0.1"]}]),
            "ips[0] = 10.0.0.1: expected a CIDR",
        ),
        (
            json!([{"name": "a", "ips": "10.0.0.1/24"}]),
            "ips = 10.0.0.1/24: expected a list",
        ),
        (
            json!([{"name": "a", "mac": "01:00:5e:00:00:01"}]),
            "mac = 01:00:5e:00:00:01: a multicast",
        ),
        (
            json!([{"name": "a", "mac": "0a:58:0a:09:00"}]),
            "expected a MAC address",
        ),
        (
            json!([{"name": "a", "mac": "0a:58:0a:09:00:+5"}]),
            "expected a MAC address",
        ),
        (json!([{"name": "a", "mac": "00:00:00:00:00:00"}]), "all-zero"),
        (
            json!([{"name": "a", "default-route": ["gw"]}]),
            "default-route[0] = gw: expected an IP address",
        ),
        (
            json!([{"name": "a", "cni-args": []}]),
            "cni-args = []: expected an object",
        ),
        (
            json!([{"name": "a", "portMappings": {}}]),
            "portMappings = {}: expected a list",
        ),
        (
            json!([{"name": "a", "bandwidth": 5}]),
            "bandwidth = 5: expected an object",
        ),
        (
            json!([{"name": "a", "default-route": ["10.0.0.1"]}, {"name": "b", "default-route": ["fd00::1", "10.1.0.1"]}]),
            "networks[1] (shop/b): default-route[1] = 10.1.0.1: only one IPv4 default route per pod; \
             networks[0] (shop/a) already sets one via 10.0.0.1",
        ),
    ] {
        let e = err(&value.to_string()).to_string();
        assert!(e.contains(fragment), "{value}: {e}");
    }
    assert!(err("[{\"name\": ").to_string().starts_with("networks: invalid JSON"));
}

#[test]
fn multus_interface_numbering() {
    let sel = |text: &str| parse_selection(text, "ns").unwrap();
    assert_eq!(assign_interfaces(&sel("a,b,c")), ["net1", "net2", "net3"]);
    assert_eq!(assign_interfaces(&sel("a@eth1,b,c")), ["eth1", "net2", "net3"]);
    // Multus would give `b` net1 and clash with `a`; the next free name is taken instead.
    assert_eq!(assign_interfaces(&sel("b,a@net1,c")), ["net2", "net1", "net3"]);
    assert_eq!(assign_interfaces(&sel("b,c,a@net2")), ["net1", "net3", "net2"]);
}

#[test]
fn mac_and_ifname_rules() {
    assert_eq!(parse_mac("AA:bb:CC:00:11:22").unwrap(), "aa:bb:cc:00:11:22");
    assert!(parse_mac("aa:bb:cc:dd:ee:ff:00:11").is_err());
    assert!(parse_mac("aabb.ccdd.eeff").is_err());
    assert!(check_ifname("net1").is_ok() && check_ifname("a.b-c_d").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", "lo", &"x".repeat(16)] {
        assert!(check_ifname(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn resolve_checks_against_the_network() {
    let mut net = network("shop", "fast", &["10.9.0.0/24", "fd00:9::/64"]);
    net.exclude = vec!["10.9.0.240/28".parse().unwrap()];
    net.gateway = Some("10.9.0.1".parse().unwrap());
    let all = nads(vec![net, network("shop", "bare", &[])]);
    let ok = |v: Value| resolve(&parse_selection(&v.to_string(), "shop").unwrap(), &all);
    let r = ok(
        json!([{"name": "fast", "ips": ["10.9.0.5/24", "fd00:9::5/64"], "default-route": ["10.9.0.1"]},
                      {"name": "bare", "ips": ["192.168.7.2/24"], "default-route": ["fd00:1::1"]}]),
    );
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains(
            "networks[1] (shop/bare@net2): default-route[0] = fd00:1::1: gateway not on the network (192.168.7.0/24)"
        ),
        "{e}"
    );
    let r =
        ok(json!([{"name": "bare", "ips": ["192.168.7.2/24"], "default-route": ["192.168.7.1"]}, {"name": "fast"}]))
            .unwrap();
    assert_eq!(
        (r[0].interface.as_str(), r[1].interface.as_str(), r[1].index),
        ("net1", "net2", 1)
    );

    for (value, fragment) in [
        (
            json!([{"name": "foo"}]),
            "networks[0] (shop/foo@net1): NetworkAttachmentDefinition shop/foo not found",
        ),
        (
            json!([{"name": "fast", "namespace": "team"}]),
            "NetworkAttachmentDefinition team/fast not found",
        ),
        (
            json!([{"name": "fast", "ips": ["10.8.0.5/24"]}]),
            "ips[0] = 10.8.0.5/24: outside the subnets of shop/fast (10.9.0.0/24, fd00:9::/64)",
        ),
        (
            json!([{"name": "fast", "ips": ["10.9.0.255/24"]}]),
            "broadcast address of 10.9.0.0/24",
        ),
        (json!([{"name": "fast", "ips": ["10.9.0.241/24"]}]), "excludeSubnets"),
        (
            json!([{"name": "fast", "ips": ["10.9.0.1/24"]}]),
            "is the network's gateway",
        ),
        (
            json!([{"name": "fast", "default-route": ["10.8.0.1"]}]),
            "default-route[0] = 10.8.0.1: gateway not on the network",
        ),
        (
            json!([{"name": "fast"}, {"name": "fast", "interface": "eth3"}]),
            "networks[1] (shop/fast@eth3): selects the same NetworkAttachmentDefinition as networks[0]",
        ),
    ] {
        let e = ok(value.clone()).unwrap_err().to_string();
        assert!(e.contains(fragment), "{value}: {e}");
    }
}

#[test]
fn cni_error_is_code_7() {
    let e: CniError = err("a@eth0").into();
    assert_eq!(e.code, crate::cni::error::ERR_INVALID_CONFIG);
    assert_eq!(e.msg, "invalid k8s.v1.cni.cncf.io/networks annotation");
    assert!(e.details.starts_with("networks[0] (a@eth0): "), "{}", e.details);
}
