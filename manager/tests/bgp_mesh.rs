//! The routed primary network across nodes: three nodes (netns, each its own
//! lanesd + BIRD) on one segment in a full node-to-node mesh. Pods on every
//! node reach pods on every other node; each kernel has the others' blocks
//! via the right next hop.

mod support;

use support::*;

const BGP_CONFIG: &str = "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: true
  logSeverityScreen: Info
";

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;

#[test]
fn three_node_mesh_pods_reach_each_other() {
    if !prerequisites("three_node_mesh_pods_reach_each_other", &["ip", "bird"]) {
        return;
    }
    let (dir, store) = Node::store(&format!("{SEED_POOL}---\n{BGP_CONFIG}"));
    let switch = Switch::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let ns = Netns::new("lit-");
        switch.plug(&ns, "ens2", &format!("192.168.100.1{i}/24"));
        nodes.push(Node::prepared(
            &format!("node{i}"),
            &dir,
            &store,
            ns,
            &["--primary-interface", "ens2"],
            true,
        ));
    }
    // One pod per node.
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("litp-")).collect();
    let mut ips = Vec::new();
    for (i, (n, p)) in nodes.iter().zip(&pods).enumerate() {
        let (code, out) = n.shim(&cni_env(n, "ADD", &format!("mesh{i}"), &p.path()), CONF);
        assert_eq!(code, 0, "{out}");
        ips.push(result_ip(&out));
    }
    for n in &nodes {
        wait_for(&format!("{}: 2 mesh sessions up", n.name), 40, || {
            (n.peers_up() == 2).then_some(())
        });
    }
    let status = nodes[0].bgp_status();
    assert_eq!(status["localAS"], 64512, "{status}");
    assert!(
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["type"] == "node-to-node mesh"),
        "{status}"
    );
    // Every node learns the other nodes' blocks via their ens2 address, into the kernel.
    for (i, n) in nodes.iter().enumerate() {
        for (j, ip) in ips.iter().enumerate() {
            if i == j {
                continue;
            }
            let block = ipnet::IpNet::new(ip.parse().unwrap(), 26).unwrap().trunc().to_string();
            let want = format!("{block} via 192.168.100.1{} dev ens2 proto bird", j + 1);
            wait_for(&format!("{}: {want}", n.name), 20, || {
                n.netns.routes().lines().any(|l| l.starts_with(&want)).then_some(())
            });
        }
    }
    for (i, p) in pods.iter().enumerate() {
        for (j, ip) in ips.iter().enumerate() {
            if i != j {
                assert!(p.ping(ip), "pod on node{} → pod on node{} ({ip})", i + 1, j + 1);
            }
        }
    }
    let (ok, table) = nodes[1].lanesctl(&["node", "status"]);
    assert!(
        ok && table.contains("PEER ADDRESS") && table.contains("192.168.100.11"),
        "{table}"
    );
    let (ok, routes) = nodes[1].lanesctl(&["routes"]);
    assert!(
        ok && routes.contains("bird") && routes.contains("blackhole"),
        "routes: {routes}"
    );
}
