//! lanes-cni driven by a real CNI client (cnidriver on Debian's libcni)
//! against a real lanesd, in network namespaces this test makes.

mod support;

use serde_json::Value;
use support::*;

const TOOLS: &[&str] = &["ip", "ping", "go"];

fn has_route(routes: &str, needle: &str) -> bool {
    routes.lines().any(|l| l.contains(needle))
}

/// Everything ADD must leave in the kernel, for one pod.
fn assert_wired(node: &Node, pod: &Netns, result: &Value, ifname: &str) {
    let ip = result_ip(result);
    assert!(ip.starts_with("10.244."), "address from the pool: {result}");
    assert_eq!(
        pod.ipv4_of(ifname).as_deref(),
        Some(ip.as_str()),
        "pod {ifname} has the /32"
    );
    let routes = pod.routes();
    assert!(has_route(&routes, "default via 169.254.1.1"), "pod routes: {routes}");
    assert!(has_route(&routes, "169.254.1.1 dev"), "pod routes: {routes}");
    let host_if = result["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(
        host_if.starts_with("lan") && host_if.len() == 14,
        "host veth name {host_if}"
    );
    assert!(node.netns.links().contains(&host_if));
    assert_eq!(node.netns.sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp")), "1");
    let node_routes = node.netns.routes();
    assert!(
        has_route(&node_routes, &format!("{ip} dev {host_if} proto 76 scope link")),
        "node routes: {node_routes}"
    );
    assert!(
        has_route(&node_routes, "blackhole 10.244."),
        "node routes: {node_routes}"
    );
    assert_eq!(result["interfaces"][1]["sandbox"].as_str(), Some(pod.path().as_str()));
}

#[test]
fn lifecycle_for_every_version() {
    if !prerequisites("lifecycle_for_every_version", TOOLS) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    for version in ["1.1.0", "1.0.0", "0.4.0", "0.3.1"] {
        let pod = Netns::new("litp-");
        let conf = node.conflist(version, "");
        let id = format!("ctr-{}", version.replace('.', ""));
        let flags = ["-netns", &pod.path(), "-id", &id, "-ifname", "eth0"];
        let (ok, res) = node.cnidriver(&conf, "add", &flags);
        assert!(ok, "{version} ADD: {res}");
        assert_wired(&node, &pod, &res, "eth0");
        if version != "0.3.1" {
            let (ok, out) = node.cnidriver(&conf, "check", &flags);
            assert!(ok, "{version} CHECK: {out}");
        }
        let (ok, out) = node.cnidriver(&conf, "del", &flags);
        assert!(ok, "{version} DEL: {out}");
        let host_if = res["interfaces"][0]["name"].as_str().unwrap();
        assert!(
            !node.netns.links().contains(&host_if.to_string()),
            "veth gone after DEL"
        );
        assert!(
            !node.netns.routes().contains(&format!("{} dev", result_ip(&res))),
            "route gone after DEL"
        );
        let (ok, out) = node.cnidriver(&conf, "del", &flags);
        assert!(ok, "{version} second DEL is a no-op: {out}");
    }
    let (_, att) = node.lanesctl(&["-o", "json", "attachments"]);
    assert_eq!(serde_json::from_str::<Value>(&att).unwrap(), Value::Array(vec![]));
}

/// The raw bytes the plugin prints, per version (cnidriver re-renders
/// every result as 1.0.0, so this execs the shim as a runtime would).
#[test]
fn result_layout_per_version() {
    if !prerequisites("result_layout_per_version", &["ip"]) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let pod = Netns::new("litp-");
        let id = format!("raw-{}", version.replace('.', ""));
        let mut env: std::collections::HashMap<&str, String> = [
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", id.clone()),
            ("CNI_NETNS", pod.path()),
            ("CNI_IFNAME", "eth0".into()),
            ("LANES_SOCKET", node.socket().display().to_string()),
        ]
        .into_iter()
        .collect();
        let conf = format!(r#"{{"cniVersion":"{version}","name":"lanes","type":"lanes","mtu":1400}}"#);
        let (code, res) = node.shim(&env, &conf);
        assert_eq!(code, 0, "{version}: {res}");
        assert_eq!(res["cniVersion"], version);
        assert_wired(&node, &pod, &res, "eth0");
        assert_eq!(res["ips"][0]["interface"], 1);
        assert_eq!(res["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(res["routes"][0]["dst"], "0.0.0.0/0");
        let ipv = &res["ips"][0]["version"];
        if version.starts_with("0.") {
            assert_eq!(ipv, "4", "{version} has ips[].version: {res}");
        } else {
            assert!(ipv.is_null(), "{version} has no ips[].version: {res}");
        }
        let mtu = &res["interfaces"][1]["mtu"];
        if version == "1.1.0" {
            assert_eq!(mtu, 1400, "{res}");
        } else {
            assert!(mtu.is_null(), "{version} has no interfaces[].mtu: {res}");
        }
        let pod_mtu = pod.ip_json(&["link", "show", "eth0"])[0]["mtu"].clone();
        assert_eq!(pod_mtu, 1400, "mtu from the config");
        // CHECK against this version's own result: before 1.1.0 it carries no MTU, so the
        // config's must be the one checked.
        if version != "0.3.0" && version != "0.3.1" {
            env.insert("CNI_COMMAND", "CHECK".into());
            let with_prev =
                format!(r#"{{"cniVersion":"{version}","name":"lanes","type":"lanes","mtu":1400,"prevResult":{res}}}"#);
            let (code, out) = node.shim(&env, &with_prev);
            assert_eq!(code, 0, "{version}: CHECK of its own result: {out}");
        }
        env.insert("CNI_COMMAND", "DEL".into());
        assert_eq!(node.shim(&env, &conf).0, 0);
    }
}

#[test]
fn pods_ping_each_other_and_the_node() {
    if !prerequisites("pods_ping_each_other_and_the_node", TOOLS) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    // The node's own address (what ens2 would carry).
    run(
        "ip",
        &["-n", &node.netns.name, "addr", "add", "192.168.100.11/32", "dev", "lo"],
    );
    let conf = node.conflist("1.0.0", "");
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("litp-")).collect();
    let mut ips = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let id = format!("ping{i}");
        let (ok, res) = node.cnidriver(&conf, "add", &["-netns", &p.path(), "-id", &id]);
        assert!(ok, "ADD: {res}");
        ips.push(result_ip(&res));
    }
    for (i, p) in pods.iter().enumerate() {
        for (j, ip) in ips.iter().enumerate() {
            if i != j {
                assert!(p.ping(ip), "pod {i} → pod {j} ({ip})");
            }
        }
        assert!(p.ping("192.168.100.11"), "pod {i} → node");
    }
    assert!(node.netns.ping(&ips[0]), "node → pod");
}

#[test]
fn chained_with_bandwidth() {
    if !prerequisites("chained_with_bandwidth", &["ip", "go", "tc"]) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    let conf = node.conflist(
        "1.0.0",
        r#",{"type":"bandwidth","ingressRate":8000000,"ingressBurst":80000}"#,
    );
    let pod = Netns::new("litp-");
    let flags = ["-netns", &pod.path(), "-id", "chainbw"];
    let (ok, res) = node.cnidriver(&conf, "add", &flags);
    assert!(ok, "chained ADD: {res}");
    assert_wired(&node, &pod, &res, "eth0");
    let host_if = res["interfaces"][0]["name"].as_str().unwrap();
    let (_, tc) = node.netns.exec(&["tc", "qdisc", "show", "dev", host_if]);
    assert!(tc.contains("tbf"), "bandwidth shaped the host veth: {tc}");
    let (ok, out) = node.cnidriver(&conf, "check", &flags);
    assert!(ok, "chained CHECK: {out}");
    let (ok, out) = node.cnidriver(&conf, "del", &flags);
    assert!(ok, "chained DEL: {out}");
}

/// portmap after lanes: ADD and DEL. (Debian's portmap 1.1.1 fails CHECK on
/// an IPv4-only pod — it always checks its IPv6 chain — so no CHECK here.)
#[test]
fn chained_with_portmap() {
    if !prerequisites("chained_with_portmap", &["ip", "go", "iptables"]) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    let conf = node.conflist(
        "1.0.0",
        r#",{"type":"portmap","capabilities":{"portMappings":true},"snat":true}"#,
    );
    let pod = Netns::new("litp-");
    let caps = r#"{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}"#;
    let flags = ["-netns", &pod.path(), "-id", "chainpm", "-cap-args", caps];
    let (ok, res) = node.cnidriver(&conf, "add", &flags);
    assert!(ok, "chained ADD: {res}");
    assert_wired(&node, &pod, &res, "eth0");
    let (_, nat) = node.netns.exec(&["iptables", "-t", "nat", "-S"]);
    assert!(
        nat.contains("18080") && nat.contains(&result_ip(&res)),
        "portmap DNAT rule: {nat}"
    );
    let (ok, out) = node.cnidriver(&conf, "del", &flags);
    assert!(ok, "chained DEL: {out}");
    let (_, nat) = node.netns.exec(&["iptables", "-t", "nat", "-S"]);
    assert!(!nat.contains("18080"), "portmap cleaned up: {nat}");
}

#[test]
fn status_gc_and_version() {
    if !prerequisites("status_gc_and_version", TOOLS) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    let conf = node.conflist("1.1.0", "");
    let (ok, out) = node.cnidriver(&conf, "status", &[]);
    assert!(ok, "STATUS: {out}");
    let (ok, v) = node.cnidriver(&conf, "version", &["-plugin", "lanes"]);
    assert!(ok);
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5, "{v}");
    let keep = Netns::new("litp-");
    let stale = Netns::new("litp-");
    let (ok, kept) = node.cnidriver(&conf, "add", &["-netns", &keep.path(), "-id", "keep"]);
    assert!(ok, "{kept}");
    let (ok, gone) = node.cnidriver(&conf, "add", &["-netns", &stale.path(), "-id", "stale"]);
    assert!(ok, "{gone}");
    let valid = r#"[{"containerID":"keep","ifname":"eth0"}]"#;
    let (ok, out) = node.cnidriver(&conf, "gc", &["-valid-attachments", valid]);
    assert!(ok, "GC: {out}");
    let links = node.netns.links();
    assert!(links.contains(&kept["interfaces"][0]["name"].as_str().unwrap().to_string()));
    assert!(!links.contains(&gone["interfaces"][0]["name"].as_str().unwrap().to_string()));
    let (_, show) = node.lanesctl(&["-o", "json", "ipam", "show", "--allocations"]);
    assert!(!show.contains("stale.eth0") && show.contains("keep.eth0"), "{show}");
    // STATUS says 50 with a reason when no pool serves the node.
    std::fs::write(node.store.join("resources.yaml"), "").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (ok, out) = node.cnidriver(&conf, "status", &[]);
    assert!(!ok && out["code"] == 50, "STATUS without pools: {out}");
}

#[test]
fn sigterm_leaves_pods_working() {
    if !prerequisites("sigterm_leaves_pods_working", TOOLS) {
        return;
    }
    let mut node = Node::new("node1", SEED_POOL);
    let conf = node.conflist("1.0.0", "");
    let (a, b) = (Netns::new("litp-"), Netns::new("litp-"));
    let (_, ra) = node.cnidriver(&conf, "add", &["-netns", &a.path(), "-id", "ta"]);
    let (_, rb) = node.cnidriver(&conf, "add", &["-netns", &b.path(), "-id", "tb"]);
    assert!(node.stop(), "lanesd exits 0 on SIGTERM");
    assert!(!node.socket().exists(), "socket removed on shutdown");
    assert!(a.ping(&result_ip(&rb)), "pods still talk with lanesd stopped");
    node.start();
    let (ok, out) = node.cnidriver(&conf, "check", &["-netns", &a.path(), "-id", "ta"]);
    assert!(ok, "CHECK after restart: {out} (ADD was {ra})");
}
