//! Tests of [`super`]: the seed NAD, every field's forms and errors.

use super::*;
use crate::resources::meta::ObjectMeta;
use serde_json::json;

/// The seed's NAD, `spec.config` byte for byte.
const SEED_CONFIG: &str = r#"{"cniVersion":"0.3.1","name":"yusur-ovn","type":"ovn-k8s-cni-overlay","topology":"layer2","subnets":"10.144.0.0/16","mtu":1400,"netAttachDefName":"default/yusur-ovn"}"#;

fn raw(namespace: &str, name: &str, config: &str) -> RawResource {
    RawResource {
        api_version: API_NAD.into(),
        kind: NAD_KIND.into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        spec: json!({ "config": config }),
        source: "nads.yaml".into(),
    }
}

/// A lanes-type config with `extra` merged in, for the default/fast NAD.
fn lanes(extra: Value) -> Result<Network, NadError> {
    let mut config = json!({"cniVersion": "1.0.0", "name": "fast", "type": "lanes", "subnets": "10.9.0.0/24"});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    parse_nad(&raw("default", "fast", &config.to_string()))
}

fn err(extra: Value) -> NadError {
    lanes(extra).unwrap_err()
}

#[test]
fn seed_nad_is_accepted_unchanged() {
    let net = parse_nad(&raw("default", "yusur-ovn", SEED_CONFIG)).unwrap();
    assert_eq!(net.key, ("default".to_string(), "yusur-ovn".to_string()));
    assert_eq!(net.nad_name(), "default/yusur-ovn");
    assert_eq!(
        (net.net_name.as_str(), net.plugin_type),
        ("yusur-ovn", PluginType::OvnK8sOverlay)
    );
    assert_eq!(net.topology.as_str(), "layer2");
    assert_eq!(net.subnets, ["10.144.0.0/16".parse::<IpNet>().unwrap()]);
    assert!(net.exclude.is_empty() && net.gateway.is_none());
    assert_eq!(net.mtu, 1400);
    assert_eq!(net.switch_name, "yusur.ovn_ovn_layer2_switch");
}

#[test]
fn conflist_takes_the_first_plugin_of_ours() {
    let config = json!({"cniVersion": "0.4.0", "name": "fast", "plugins": [
        {"type": "tuning"},
        {"type": "lanes", "subnets": ["10.9.0.0/24"], "excludeSubnets": "10.9.0.0/28",
         "gateway": true, "mtu": 8900},
        {"type": "ovn-k8s-cni-overlay"}
    ]});
    let net = parse_nad(&raw("team", "fast", &config.to_string())).unwrap();
    assert_eq!(
        (net.net_name.as_str(), net.plugin_type, net.mtu),
        ("fast", PluginType::Lanes, 8900)
    );
    assert_eq!(net.subnets.len(), 1);
    assert_eq!(net.exclude, ["10.9.0.0/28".parse::<IpNet>().unwrap()]);
    assert_eq!(net.gateway, Some("10.9.0.1".parse().unwrap()));
    let e = parse_nad(&raw(
        "team",
        "fast",
        r#"{"name":"x","plugins":[{"type":"lanes","mtu":1}]}"#,
    ))
    .unwrap_err();
    assert_eq!(e.field, "spec.config.plugins[0].mtu");
}

#[test]
fn subnet_forms_and_gateways() {
    let net = lanes(
        json!({"subnets": "10.9.0.7/24 ", "excludeSubnets": " 10.9.0.200/29 ,10.9.0.9/32",
                           "gateway": "10.9.0.254"}),
    )
    .unwrap();
    assert_eq!(net.subnets[0].to_string(), "10.9.0.0/24");
    assert_eq!(net.exclude[0].to_string(), "10.9.0.200/29");
    assert_eq!(net.gateway, Some("10.9.0.254".parse().unwrap()));
    assert!(net.is_excluded("10.9.0.201".parse().unwrap()) && !net.is_excluded("10.9.0.1".parse().unwrap()));
    assert_eq!(
        net.subnet_for("10.9.0.5".parse().unwrap()).unwrap().to_string(),
        "10.9.0.0/24"
    );
    // Dual stack and several subnets are refused by name, not dropped.
    let e = err(json!({"subnets": "10.9.0.0/24, fd00:9::/64"}));
    assert_eq!(e.field, "spec.config.subnets[1]", "{e}");
    assert!(
        e.to_string()
            .contains("IPv6 subnets on secondary networks are not supported yet"),
        "{e}"
    );
    let e = err(json!({"subnets": ["10.9.0.0/24", "10.10.0.0/24"]}));
    assert_eq!(e.field, "spec.config.subnets[1]", "{e}");
    assert!(e.to_string().contains("more than one subnet"), "{e}");
    assert!(lanes(json!({"subnets": " "})).unwrap().subnets.is_empty());
    assert_eq!(lanes(json!({"gateway": false, "mtu": 0})).unwrap().mtu, DEFAULT_MTU);
}

#[test]
fn errors_name_the_nad_and_the_field() {
    let cases = [
        (
            json!({"subnets": "10.9.0.0/24,10.10.0.0/33"}),
            "spec.config.subnets[1]",
            "CIDR",
        ),
        (json!({"subnets": ["10.9.0.0/24", 7]}), "spec.config.subnets[1]", "CIDR"),
        (
            json!({"subnets": "10.9.0.0/16,10.9.3.0/24"}),
            "spec.config.subnets[1]",
            "overlaps",
        ),
        (json!({"subnets": "10.9.0.0/31"}), "spec.config.subnets[0]", "too small"),
        (json!({"subnets": "10.128.0.0/16/24"}), "spec.config.subnets[0]", "CIDR"),
        (
            json!({"excludeSubnets": "10.8.0.0/28"}),
            "spec.config.excludeSubnets[0]",
            "not inside",
        ),
        (
            json!({"subnets": "", "excludeSubnets": "10.8.0.0/28"}),
            "spec.config.excludeSubnets[0]",
            "no subnets",
        ),
        (
            json!({"topology": "layer3"}),
            "spec.config.topology",
            "topology layer3 is not supported yet",
        ),
        (
            json!({"topology": "localnet"}),
            "spec.config.topology",
            "topology localnet is not supported yet",
        ),
        (json!({"topology": "l2"}), "spec.config.topology", "unknown topology"),
        (json!({"mtu": 9001}), "spec.config.mtu", "576..=9000"),
        (json!({"mtu": "1400"}), "spec.config.mtu", "integer"),
        (
            json!({"netAttachDefName": "default/other"}),
            "spec.config.netAttachDefName",
            "default/fast",
        ),
        (json!({"gateway": "10.8.0.1"}), "spec.config.gateway", "not inside"),
        (json!({"gateway": "10.9.0.255"}), "spec.config.gateway", "broadcast"),
        (
            json!({"subnets": "", "gateway": true}),
            "spec.config.gateway",
            "needs subnets",
        ),
        (json!({"gateway": 1}), "spec.config.gateway", "expected"),
        (json!({"vlanID": 10}), "spec.config.vlanID", "localnet"),
        (json!({"vlanID": 5000}), "spec.config.vlanID", "1..=4094"),
        (json!({"role": "primary"}), "spec.config.role", "only secondary"),
        (
            json!({"role": "tertiary"}),
            "spec.config.role",
            "expected primary or secondary",
        ),
        (
            json!({"subnet": "10.0.0.0/8"}),
            "spec.config.subnet",
            "did you mean subnets?",
        ),
        (
            json!({"reservedSubnets": "10.9.0.0/30"}),
            "spec.config.reservedSubnets",
            "not supported",
        ),
        (json!({"name": "default"}), "spec.config.name", "reserved"),
        (json!({"name": ""}), "spec.config.name", "required"),
        (
            json!({"cniVersion": "0.2.0"}),
            "spec.config.cniVersion",
            "supported: 0.3.0",
        ),
    ];
    for (extra, field, fragment) in cases {
        let e = err(extra.clone());
        assert_eq!(e.field, field, "{extra}: {e}");
        assert!(e.to_string().contains(fragment), "{extra}: {e}");
        assert!(
            e.to_string().starts_with("NetworkAttachmentDefinition default/fast: "),
            "{e}"
        );
        assert!(!e.not_ours);
    }
}

#[test]
fn ovn_k8s_type_requires_topology_and_nad_name() {
    let config = r#"{"name":"n","type":"ovn-k8s-cni-overlay","netAttachDefName":"default/n"}"#;
    assert_eq!(
        parse_nad(&raw("default", "n", config)).unwrap_err().field,
        "spec.config.topology"
    );
    let config = r#"{"name":"n","type":"ovn-k8s-cni-overlay","topology":"layer2"}"#;
    let e = parse_nad(&raw("default", "n", config)).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("spec.config.netAttachDefName", "required: default/n")
    );
}

#[test]
fn document_level_errors() {
    let mut r = raw("default", "n", &format!("{{not json{}", " ".repeat(500)));
    let e = parse_nad(&r).unwrap_err();
    assert!(e.reason.starts_with("invalid JSON") && e.value.len() < 110, "{e}");
    r.spec = json!({});
    assert_eq!(parse_nad(&r).unwrap_err().field, "spec.config");
    r.spec = json!({"config": "[]"});
    assert_eq!(parse_nad(&r).unwrap_err().reason, "expected a JSON object");
    r.spec = json!({"config": "{}", "other": 1});
    assert_eq!(parse_nad(&r).unwrap_err().field, "spec.other");
    r.kind = "Pod".into();
    assert_eq!(parse_nad(&r).unwrap_err().field, "kind");
}

#[test]
fn foreign_nads_are_marked_not_ours() {
    let e = parse_nad(&raw(
        "default",
        "mv",
        r#"{"name":"mv","type":"macvlan","master":"ens3"}"#,
    ))
    .unwrap_err();
    assert!(e.not_ours && e.field == "spec.config.type", "{e}");
    let list = r#"{"name":"mv","plugins":[{"type":"macvlan"},{"type":"tuning"}],"newListKey":1}"#;
    let e = parse_nad(&raw("default", "mv", list)).unwrap_err();
    assert!(e.not_ours, "{e}");
    assert_eq!(
        (e.field.as_str(), e.value.as_str()),
        ("spec.config.plugins", "macvlan,tuning")
    );
}

#[test]
fn cni_error_is_code_7() {
    let cni: CniError = err(json!({"mtu": 100})).into();
    assert_eq!(cni.code, crate::cni::error::ERR_INVALID_CONFIG);
    assert_eq!(cni.msg, "invalid NetworkAttachmentDefinition default/fast");
    assert_eq!(cni.details, "spec.config.mtu = 100: must be 576..=9000");
}

#[test]
fn shared_network_names_must_agree() {
    let a = lanes(json!({})).unwrap();
    let mut b = parse_nad(&raw(
        "team",
        "fast",
        r#"{"name":"fast","type":"lanes","subnets":"10.9.0.0/24"}"#,
    ))
    .unwrap();
    assert_eq!(a.conflicts_with(&b), None);
    b.mtu = 1300;
    assert_eq!(a.conflicts_with(&b), Some("mtu"));
    b.net_name = "other".into();
    assert_eq!(a.conflicts_with(&b), None);
}
