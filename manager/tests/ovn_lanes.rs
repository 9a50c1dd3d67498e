//! The low-latency lanes end to end, on real OVN: two nodes, each with
//! lanesd (BGP mesh on ens2 for eth0) and its own ovsdb-server +
//! ovs-vswitchd (userspace) + ovn-controller (encap on ens3/br-phy), OVN
//! central on a third netns. Pods made through lanes-cni get eth0 and, as
//! their annotation asks, eth1 on the seed's `yusur-ovn` NAD.

mod support;

use support::ovn::{prime_tunnels, OvnCentral, OvnNode, OVN_TOOLS};
use support::*;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;

fn resources() -> String {
    let nad = r#"apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: yusur-ovn, namespace: default}
spec:
  config: '{"cniVersion":"0.3.1","name":"yusur-ovn","type":"ovn-k8s-cni-overlay","topology":"layer2","subnets":"10.144.0.0/16","excludeSubnets":"10.144.0.1/32","gateway":"10.144.0.1","mtu":1400,"netAttachDefName":"default/yusur-ovn"}'
"#;
    let pod = |name: &str, ann: &str| {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    k8s.v1.cni.cncf.io/networks: '{ann}'\n")
    };
    let mut s = format!(
        "{SEED_POOL}---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{asNumber: 64512}}\n---\n{nad}"
    );
    s.push_str(&pod("busybox1", "yusur-ovn@eth1"));
    s.push_str(&pod("busybox2", "default/yusur-ovn@eth1"));
    s.push_str(&pod(
        "busybox3",
        r#"[{"name":"yusur-ovn","namespace":"default","interface":"eth1","default-route":["10.144.0.1"]}]"#,
    ));
    // Attached by Multus (docs/multus.md): lanes is its cluster network and a lanes NAD its delegate.
    s.push_str(&pod(
        "multus1",
        r#"[{"name":"yusur-ovn","namespace":"default","ips":["10.144.0.7/16"],"mac":"0a:58:0a:90:00:07"}]"#,
    ));
    s
}

fn add_pod(node: &Node, pod: &Netns, id: &str, name: &str) -> serde_json::Value {
    let mut env = cni_env(node, "ADD", id, &pod.path());
    env.insert(
        "CNI_ARGS",
        format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={name};K8S_POD_UID=uid-{name}"),
    );
    let (code, out) = node.shim(&env, CONF);
    assert_eq!(code, 0, "ADD {name}: {out}");
    out
}

/// `conf` with `prevResult` set, as a runtime sends it on DEL.
fn with_prev_result(conf: &str, result: &serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(conf).unwrap();
    v["prevResult"] = result.clone();
    v.to_string()
}

fn eth1_ip(result: &serde_json::Value) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .find(|a| a.starts_with("10.144."))
        .expect("an eth1 address in the result")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn eth0_and_eth1_across_two_nodes() {
    let mut tools = OVN_TOOLS.to_vec();
    tools.push("bird");
    if !prerequisites("eth0_and_eth1_across_two_nodes", &tools) {
        return;
    }
    let primary = Switch::new();
    let underlay = Switch::new();
    let central = OvnCentral::start(&underlay, "192.168.200.10/24");
    let (dir, store) = Node::store(&resources());
    let mut ovn_nodes = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=2 {
        let ns = Netns::new("lit-");
        primary.plug(&ns, "ens2", &format!("192.168.100.1{i}/24"));
        let name = format!("node{i}");
        let ovn = OvnNode::start(
            &ns.name,
            &name,
            &underlay,
            &format!("192.168.200.1{i}/24"),
            &central,
            true,
        );
        let args = [
            "--primary-interface".to_string(),
            "ens2".into(),
            "--primary-service-cidrs".into(),
            "10.96.0.0/12".into(),
            "--ovn-enabled".into(),
            "true".into(),
            "--ovn-ovsdb".into(),
            ovn.ovs_db.clone(),
            "--ovn-northbound".into(),
            central.nb_tcp(),
            "--ovn-southbound".into(),
            central.sb_tcp(),
            "--ovn-encap-interface".into(),
            "br-phy".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::prepared(&name, &dir, &store, ns, &args, true);
        ovn_nodes.push(ovn);
        nodes.push(node);
    }
    for o in ovn_nodes.iter_mut() {
        o.start_controller();
    }
    prime_tunnels(&ovn_nodes.iter().collect::<Vec<_>>());
    assert_eq!(central.chassis().len(), 2, "lanesd made both nodes chassis");

    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("litp-")).collect();
    let r1 = add_pod(&nodes[0], &pods[0], "c1", "busybox1");
    let r2 = add_pod(&nodes[1], &pods[1], "c2", "busybox2");
    let r3 = add_pod(&nodes[1], &pods[2], "c3", "busybox3");
    assert_eq!(
        r1["interfaces"].as_array().unwrap().len(),
        4,
        "eth0 and eth1 in the result: {r1}"
    );
    let (e1, e2, e3) = (eth1_ip(&r1), eth1_ip(&r2), eth1_ip(&r3));
    assert_eq!(pods[0].ip_json(&["link", "show", "eth1"])[0]["mtu"], 1400);
    // eth1 across nodes through geneve, and on the same node.
    // The remote chassis binds the port a moment after ours says ovn-installed.
    wait_for(&format!("eth1 node1 → node2 ({e2})"), 15, || {
        pods[0].ping(&e2).then_some(())
    });
    assert!(pods[1].ping(&e1), "eth1 node2 → node1 ({e1})");
    assert!(pods[1].ping(&e3), "eth1 same node ({e3})");
    // eth0 still reaches the other pods' eth0 (BGP mesh).
    wait_for("mesh up", 40, || (nodes[0].peers_up() == 1).then_some(()));
    let eth0_2 = result_ip(&r2);
    wait_for("eth0 route to node2's block", 20, || {
        pods[0].ping(&eth0_2).then_some(())
    });
    // busybox3: default via eth1, pools and services pinned on eth0.
    let routes = pods[2].routes();
    assert!(routes.contains("default via 10.144.0.1 dev eth1"), "{routes}");
    assert!(routes.contains("10.244.0.0/16 via 169.254.1.1 dev eth0"), "{routes}");
    assert!(routes.contains("10.96.0.0/12 via 169.254.1.1 dev eth0"), "{routes}");
    assert!(
        pods[2].ping(&result_ip(&r1)),
        "busybox3 eth0 → busybox1 eth0 with the default on eth1"
    );
    // The NAD's gateway is an OVN router port: the default route's first hop answers.
    wait_for("busybox3 → its eth1 gateway 10.144.0.1", 10, || {
        pods[2].ping("10.144.0.1").then_some(())
    });
    let lrps = central.nbctl(&["--bare", "--columns=name,networks", "list", "Logical_Router_Port"]);
    assert!(
        lrps.contains("rtos-yusur.ovn_ovn_layer2_switch") && lrps.contains("10.144.0.1/16"),
        "{lrps}"
    );
    // Names as ovn-kubernetes gives them.
    let lsps = central.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"]);
    assert!(lsps.contains("default.yusur.ovn_default_busybox1"), "{lsps}");
    let switches = central.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch"]);
    assert!(switches.contains("yusur.ovn_ovn_layer2_switch"), "{switches}");
    // network-status as Multus writes it, served by lanesctl.
    let (_, atts) = nodes[1].lanesctl(&["-o", "json", "attachments"]);
    let atts: serde_json::Value = serde_json::from_str(&atts).unwrap();
    let b3 = atts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["podName"] == "busybox3" && a["ifname"] == "eth0")
        .expect("busybox3 listed");
    let status = b3["networkStatus"].as_array().expect("network-status list").clone();
    assert_eq!(status[0]["default"], true, "{status:?}");
    assert_eq!(status[1]["name"], "default/yusur-ovn", "{status:?}");
    assert_eq!(status[1]["interface"], "eth1", "{status:?}");
    assert_eq!(status[1]["ips"][0], e3.as_str(), "{status:?}");
    // Under Multus (thick, v4): a NAD of type lanes handed over as delegate 1 with
    // CNI_IFNAME=net1, with exactly the env and stdin multus-daemon gives it (docs/multus.md,
    // "Verified facts for tests"): IgnoreUnknown and the four K8S_* args, MAC=/IP= on ADD, the
    // requested ips/mac in runtimeConfig because the NAD declares the capabilities.
    let multus = Netns::new("litp-");
    let args = "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=multus1;\
                K8S_POD_INFRA_CONTAINER_ID=5c3b1c9e0d7f4a2b;K8S_POD_UID=7d1a3f5e-2b4c-4d6e-8f90-1a2b3c4d5e6f";
    // First delegate 0, lanes as Multus' cluster network: the lanes conflist says
    // `"multus": true`, so lanesd wires eth0 only and leaves the pod's selection to Multus.
    let mut env0 = cni_env(&nodes[0], "ADD", "5c3b1c9e0d7f4a2b", &multus.path());
    env0.insert("CNI_PATH", "/opt/cni/bin".into());
    env0.insert("CNI_ARGS", args.into());
    let cluster_conf =
        r#"{"cniVersion":"1.0.0","multus":true,"name":"lanes","socket":"/run/lanes/lanes.sock","type":"lanes"}"#;
    let (code, out0) = nodes[0].shim(&env0, cluster_conf);
    assert_eq!(code, 0, "delegate 0 ADD: {out0}");
    let ifaces: Vec<&str> = out0["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["sandbox"].is_string())
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        ifaces,
        ["eth0"],
        "under Multus, lanes' eth0 ADD attaches nothing else: {out0}"
    );
    assert_eq!(
        multus.links().iter().filter(|l| *l != "lo").count(),
        1,
        "{:?}",
        multus.links()
    );
    // Then delegate 1, the NAD.
    let mut env = cni_env(&nodes[0], "ADD", "5c3b1c9e0d7f4a2b", &multus.path());
    env.insert("CNI_IFNAME", "net1".into());
    env.insert("CNI_PATH", "/opt/cni/bin".into());
    env.insert("CNI_ARGS", format!("{args};MAC=0a:58:0a:90:00:07;IP=10.144.0.7/16"));
    let nad = r#"{"capabilities":{"ips":true,"mac":true},"cniVersion":"1.1.0","excludeSubnets":"10.144.0.1/32","mtu":1400,"name":"yusur-ovn","netAttachDefName":"default/yusur-ovn","runtimeConfig":{"ips":["10.144.0.7/16"],"mac":"0a:58:0a:90:00:07"},"subnets":"10.144.0.0/16","topology":"layer2","type":"lanes"}"#;
    let (code, out) = nodes[0].shim(&env, nad);
    assert_eq!(code, 0, "delegate ADD: {out}");
    let net1 = eth1_ip(&out);
    assert_eq!(net1, "10.144.0.7", "runtimeConfig.ips honoured: {out}");
    assert!(
        out.to_string().contains("0a:58:0a:90:00:07"),
        "runtimeConfig.mac honoured: {out}"
    );
    assert!(multus.links().contains(&"net1".to_string()) && multus.links().contains(&"eth0".to_string()));
    wait_for(&format!("eth1 → delegated net1 ({net1})"), 15, || {
        pods[1].ping(&net1).then_some(())
    });
    // DEL as Multus sends it: no MAC=/IP=, runtimeConfig kept, prevResult = our ADD result.
    env.insert("CNI_COMMAND", "DEL".into());
    env.insert("CNI_ARGS", args.into());
    assert_eq!(nodes[0].shim(&env, &with_prev_result(nad, &out)).0, 0);
    assert!(
        !multus.links().contains(&"net1".to_string()),
        "delegate DEL removed net1"
    );
    // Multus with the interface the selection asks for (`@eth1`): the delegate gets
    // CNI_IFNAME=eth1. Then the sandbox goes before the runtime's DEL (a crashed pod): DEL
    // still removes the LSP, the OVS port and the host veth.
    let gone = Netns::new("litp-");
    let mut env1 = cni_env(&nodes[0], "ADD", "9a8b7c6d5e4f", &gone.path());
    env1.insert("CNI_IFNAME", "eth1".into());
    env1.insert(
        "CNI_ARGS",
        args.replace("multus1", "multus2")
            .replace("5c3b1c9e0d7f4a2b", "9a8b7c6d5e4f"),
    );
    let nad1 = nad.replace(
        r#""runtimeConfig":{"ips":["10.144.0.7/16"],"mac":"0a:58:0a:90:00:07"},"#,
        "",
    );
    let (code, out1) = nodes[0].shim(&env1, &nad1);
    assert_eq!(code, 0, "delegate ADD as eth1: {out1}");
    assert!(gone.links().contains(&"eth1".to_string()), "{:?}", gone.links());
    let lsp2 = "default.yusur.ovn_default_multus2";
    let lsps = central.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"]);
    assert!(lsps.contains(lsp2), "{lsps}");
    let gone_path = gone.path();
    drop(gone);
    env1.insert("CNI_COMMAND", "DEL".into());
    env1.insert("CNI_NETNS", gone_path);
    let (code, out) = nodes[0].shim(&env1, &nad1);
    assert_eq!(code, 0, "DEL with the netns gone: {out}");
    let lsps = central.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"]);
    assert!(!lsps.contains(lsp2), "LSP gone: {lsps}");
    let lov = out1["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .find(|n| n.starts_with("lov"))
        .expect("the host veth in the result")
        .to_string();
    let ports = ovn_nodes[0].vsctl(&["list-ports", "br-int"]);
    assert!(!ports.contains(&lov), "OVS port {lov} gone: {ports}");
    assert!(!nodes[0].netns.links().contains(&lov), "veth {lov} gone");
    // Delegate 0's DEL, last, with its cached result.
    env0.insert("CNI_COMMAND", "DEL".into());
    assert_eq!(nodes[0].shim(&env0, &with_prev_result(cluster_conf, &out0)).0, 0);
    assert!(
        !multus.links().contains(&"eth0".to_string()),
        "delegate 0 DEL removed eth0"
    );
    // DEL removes the LSP, the OVS port and the veth.
    let mut env = cni_env(&nodes[0], "DEL", "c1", &pods[0].path());
    env.insert("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=busybox1".into());
    let (code, out) = nodes[0].shim(&env, CONF);
    assert_eq!(code, 0, "{out}");
    let lsps = central.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"]);
    assert!(!lsps.contains("busybox1"), "LSP gone: {lsps}");
    let ports = ovn_nodes[0].vsctl(&["list-ports", "br-int"]);
    assert!(!ports.contains("lov"), "OVS port gone: {ports}");
    assert!(
        !nodes[0].netns.links().iter().any(|l| l.starts_with("lov")),
        "veth gone"
    );
}
