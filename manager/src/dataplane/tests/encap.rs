//! Privileged end-to-end tests of VXLAN (and, where the kernel has it, IPIP) encapsulation.
//!
//! The lab, all in throwaway netns: a router with forwarding on, a bridge `br0` holding
//! 192.168.0.1/24 and a link holding 192.168.2.1/24; node1 (192.168.0.11) and node3
//! (192.168.0.13) on the bridge, node2 (192.168.2.12) behind the router. Each node has one pod
//! (10.244.N.5/32, wired by `setup_pod`), a blackhole for its block 10.244.N.0/26 and a tunnel
//! address 10.244.N.0. The root netns is never touched.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use crate::dataplane::encap::{plan, vtep_mac, EncapKind, EncapMode, EncapPlan, RemoteBlock, VXLAN_DEVICE};
use crate::dataplane::encap_sync::EncapSyncStats;
use crate::dataplane::ipip::{is_unsupported_link_kind, IpipDevice};
use crate::dataplane::tests::pod_spec;
use crate::dataplane::tests::support::{in_netns, privileged, TestNetns};
use crate::dataplane::vxlan::VxlanDevice;
use crate::dataplane::{netns, Dataplane};

struct Node {
    n: u8,
    ns: TestNetns,
    pod: TestNetns,
    addr: Ipv4Net,
}

impl Node {
    fn name(&self) -> String {
        format!("node{}", self.n)
    }
    fn tunnel_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.n, 0)
    }
    fn pod_ip(&self) -> String {
        format!("10.244.{}.5", self.n)
    }
    fn block(&self) -> IpNet {
        format!("10.244.{}.0/26", self.n).parse().unwrap()
    }
    fn remote(&self, mode: EncapMode, kind: EncapKind) -> RemoteBlock {
        RemoteBlock {
            block: self.block(),
            node: self.name(),
            node_ip: self.addr.addr(),
            vtep_mac: Some(vtep_mac(&self.name())),
            vtep_ip: Some(self.tunnel_ip()),
            mode,
            kind,
        }
    }
    /// `ip -n <node> <args>`, the arguments split at spaces.
    fn ip(&self, args: &str) {
        self.ns.ip(&args.split(' ').collect::<Vec<_>>());
    }
    /// `ip -s link show <dev>`: packets sent.
    fn tx_packets(&self, dev: &str) -> u64 {
        let link = &self.ns.ip_json(&["-s", "link", "show", "dev", dev])[0];
        link["stats64"]["tx"]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("{link}"))
    }
    /// Up to three tries: the first packet of a flow may wait on ARP towards the router.
    fn pings(&self, dst: &Node) -> bool {
        (0..3).any(|_| self.pod.ping(&dst.pod_ip()))
    }
}

struct Lab {
    nodes: Vec<Node>,
    _router: TestNetns,
}

impl Lab {
    fn new() -> Lab {
        let router = TestNetns::new();
        let sh = |ns: &TestNetns, args: &str| ns.ip(&args.split(' ').collect::<Vec<_>>());
        sh(&router, "link set lo up");
        sh(&router, "link add br0 type bridge");
        sh(&router, "addr add 192.168.0.1/24 dev br0");
        sh(&router, "link set br0 up");
        netns::run_in(&router.path, || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
            .unwrap()
            .unwrap();
        let nodes = [(1, "192.168.0.11/24"), (2, "192.168.2.12/24"), (3, "192.168.0.13/24")]
            .into_iter()
            .map(|(n, addr)| {
                let node = Node {
                    n,
                    ns: TestNetns::new(),
                    pod: TestNetns::new(),
                    addr: addr.parse().unwrap(),
                };
                sh(
                    &router,
                    &format!("link add r-n{n} type veth peer name up0 netns {}", node.ns.name),
                );
                match n {
                    2 => sh(&router, "addr add 192.168.2.1/24 dev r-n2"),
                    _ => sh(&router, &format!("link set r-n{n} master br0")),
                };
                sh(&router, &format!("link set r-n{n} up"));
                let gateway = if n == 2 { "192.168.2.1" } else { "192.168.0.1" };
                node.ip("link set lo up");
                node.ip(&format!("addr add {addr} dev up0"));
                node.ip("link set up0 up");
                node.ip(&format!("route add default via {gateway}"));
                node
            })
            .collect();
        Lab { nodes, _router: router }
    }

    fn node(&self, n: u8) -> &Node {
        &self.nodes[usize::from(n - 1)]
    }

    /// The plan of node `n` when every node's block is in one pool of `mode` and `kind`.
    fn plan_for(&self, n: u8, mode: EncapMode, kind: EncapKind) -> EncapPlan {
        let remotes: Vec<RemoteBlock> = self.nodes.iter().map(|o| o.remote(mode, kind)).collect();
        plan(self.node(n).addr, &remotes)
    }
}

/// Runs `f` with a [`Dataplane`] inside `node`.
fn with_dp<T: Send, F>(node: &Node, f: impl FnOnce(Dataplane) -> F + Send) -> T
where
    F: std::future::Future<Output = T>,
{
    in_netns(&node.ns, || async { f(Dataplane::new().await.unwrap()).await })
}

/// Wires the node's pod and block, and its tunnel device.
fn prepare(node: &Node, vxlan: bool) -> Result<(), crate::dataplane::Error> {
    let spec = pod_spec(&node.pod, &format!("ctr-{}", node.n), &format!("{}/32", node.pod_ip()));
    with_dp(node, |dp| async move {
        dp.ensure_ip_forwarding().await?;
        dp.setup_pod(&spec).await?;
        dp.ensure_blackhole(node.block()).await?;
        if vxlan {
            let dev = VxlanDevice::new(&node.name(), node.addr.addr(), node.tunnel_ip(), 1450);
            assert!(dp.ensure_vxlan(&dev).await?, "created");
            assert!(!dp.ensure_vxlan(&dev).await?, "ensure_vxlan is idempotent");
        } else {
            let dev = IpipDevice::new(node.addr.addr(), Some(node.tunnel_ip()), 1480);
            dp.ensure_ipip(&dev).await?;
            assert!(!dp.ensure_ipip(&dev).await?, "ensure_ipip is idempotent");
        }
        Ok::<(), crate::dataplane::Error>(())
    })
}

/// `sync_encap` twice: returns the first run's counts, and checks the second changed nothing.
fn sync(node: &Node, plan: &EncapPlan) -> EncapSyncStats {
    with_dp(node, |dp| async move {
        let stats = dp.sync_encap(plan).await.unwrap();
        let again = dp.sync_encap(plan).await.unwrap();
        assert_eq!(again, EncapSyncStats::default(), "node{}: not idempotent", node.n);
        stats
    })
}

/// `bridge -j fdb show dev vxlan.lanes` in the node.
fn bridge_fdb(node: &Node) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("bridge")
        .args(["-n", &node.ns.name, "-j", "fdb", "show", "dev", VXLAN_DEVICE])
        .output()
        .expect("bridge");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn route<'a>(routes: &'a [serde_json::Value], dst: &str) -> &'a serde_json::Value {
    routes
        .iter()
        .find(|r| r["dst"] == dst)
        .unwrap_or_else(|| panic!("no route {dst}: {routes:?}"))
}

#[test]
fn vxlan_always_and_cross_subnet_carry_pod_traffic_and_stale_state_goes() {
    if !privileged(
        "vxlan_always_and_cross_subnet_carry_pod_traffic_and_stale_state_goes",
        true,
    ) {
        return;
    }
    let lab = Lab::new();
    let (n1, n2, n3) = (lab.node(1), lab.node(2), lab.node(3));
    use EncapKind::Vxlan;
    use EncapMode::{Always, CrossSubnet};

    // A plan naming a device that does not exist yet fails before changing anything.
    let always1 = lab.plan_for(1, Always, Vxlan);
    let early = with_dp(n1, |dp| async move { dp.sync_encap(&always1).await });
    assert_eq!(early.unwrap_err().errno(), Some(19), "ENODEV");
    for node in &lab.nodes {
        prepare(node, true).unwrap();
    }
    let link = &n1.ns.ip_json(&["-d", "link", "show", "dev", VXLAN_DEVICE])[0];
    let info = &link["linkinfo"]["info_data"];
    assert_eq!(
        (&info["id"], &info["port"], &info["local"]),
        (&4096.into(), &4789.into(), &"192.168.0.11".into())
    );
    assert_eq!(
        (&info["learning"], &link["mtu"], &link["address"]),
        (&false.into(), &1450.into(), &"82:ef:aa:45:b9:ba".into())
    );

    // Always: every remote block through the tunnel.
    for node in &lab.nodes {
        let stats = sync(node, &lab.plan_for(node.n, Always, Vxlan));
        let want = EncapSyncStats {
            routes_added: 2,
            fdb_set: 2,
            neighbors_set: 2,
            ..Default::default()
        };
        assert_eq!(stats, want, "node{}", node.n);
    }
    let routes = n1.ns.lanes_routes();
    let r2 = route(&routes, "10.244.2.0/26");
    assert_eq!(
        (&r2["gateway"], &r2["dev"]),
        (&"10.244.2.0".into(), &VXLAN_DEVICE.into())
    );
    assert!(r2["flags"].as_array().unwrap().contains(&"onlink".into()), "{r2}");
    let neighbors = n1.ns.ip_json(&["neigh", "show", "dev", VXLAN_DEVICE]);
    assert_eq!(neighbors.len(), 2, "{neighbors:?}");
    let fdb = bridge_fdb(n1);
    assert_eq!(fdb.len(), 2, "{fdb:?}");
    let to_node2 = fdb
        .iter()
        .find(|e| e["mac"] == crate::dataplane::link::format_mac(&vtep_mac("node2")).as_str());
    let to_node2 = to_node2.unwrap_or_else(|| panic!("{fdb:?}"));
    assert_eq!(to_node2["dst"], "192.168.2.12");
    assert!(
        to_node2["flags"].as_array().unwrap().contains(&"self".into()),
        "{to_node2}"
    );
    assert_eq!(to_node2["state"], "permanent");
    for (src, dst) in [(n1, n2), (n2, n1), (n1, n3), (n3, n2)] {
        let before = src.tx_packets(VXLAN_DEVICE);
        assert!(
            src.pings(dst),
            "node{} pod cannot ping node{} pod over VXLAN",
            src.n,
            dst.n
        );
        assert!(
            src.tx_packets(VXLAN_DEVICE) > before,
            "node{} -> node{} bypassed VXLAN",
            src.n,
            dst.n
        );
    }

    // CrossSubnet: node1 <-> node3 share 192.168.0.0/24 and go native; node2 stays on VXLAN.
    for (node, replaced) in [(n1, 1), (n2, 0), (n3, 1)] {
        let stats = sync(node, &lab.plan_for(node.n, CrossSubnet, Vxlan));
        let want = EncapSyncStats {
            routes_replaced: replaced,
            ..Default::default()
        };
        assert_eq!(stats, want, "node{}", node.n);
    }
    let routes = n1.ns.lanes_routes();
    let r3 = route(&routes, "10.244.3.0/26");
    assert_eq!((&r3["gateway"], &r3["dev"]), (&"192.168.0.13".into(), &"up0".into()));
    assert!(r3.get("flags").is_none_or(|f| f.as_array().unwrap().is_empty()), "{r3}");
    let (tx1, tx3) = (n1.tx_packets(VXLAN_DEVICE), n3.tx_packets(VXLAN_DEVICE));
    assert!(n1.pings(n3) && n3.pings(n1), "native same-subnet path");
    assert_eq!(
        (n1.tx_packets(VXLAN_DEVICE), n3.tx_packets(VXLAN_DEVICE)),
        (tx1, tx3),
        "same subnet went through VXLAN"
    );
    assert!(
        n1.pings(n2) && n1.tx_packets(VXLAN_DEVICE) > tx1,
        "cross-subnet must use VXLAN"
    );

    // Stale state: leftovers of an earlier run go, other owners' routes stay; node2 is gone.
    n1.ip("route add 10.244.9.0/26 via 10.244.9.0 dev vxlan.lanes onlink proto 76");
    n1.ip("route add 10.250.0.0/24 via 192.168.0.1");
    n1.ip("neigh add 10.244.9.0 lladdr 02:00:00:00:00:99 dev vxlan.lanes nud permanent");
    let added = std::process::Command::new("bridge")
        .args(["-n", &n1.ns.name])
        .args("fdb add 02:00:00:00:00:99 dev vxlan.lanes dst 192.168.2.99 self permanent".split(' '))
        .status()
        .expect("bridge");
    assert!(added.success());
    let without_node2 = {
        let remotes = [n3.remote(CrossSubnet, Vxlan)];
        plan(n1.addr, &remotes)
    };
    let stats = sync(n1, &without_node2);
    let want = EncapSyncStats {
        routes_deleted: 2,
        fdb_deleted: 2,
        neighbors_deleted: 2,
        ..Default::default()
    };
    assert_eq!(stats, want);
    let routes = n1.ns.ip_json(&["route", "show"]);
    let mut dsts: Vec<&str> = routes.iter().map(|r| r["dst"].as_str().unwrap()).collect();
    dsts.sort();
    let kept = [
        "10.244.1.0/26",
        "10.244.1.5",
        "10.244.3.0/26",
        "10.250.0.0/24",
        "192.168.0.0/24",
        "default",
    ];
    assert_eq!(
        dsts, kept,
        "blackhole, pod route, node3, a foreign route, kernel routes"
    );
    assert!(!n1.pings(n2), "node2's route should be gone");
    assert!(n1.pings(n3), "node3 still reachable");
    let neighbors = n1
        .ns
        .ip_json(&["neigh", "show", "dev", VXLAN_DEVICE, "nud", "permanent"]);
    assert_eq!(neighbors.len(), 1, "{neighbors:?}");
    assert_eq!(bridge_fdb(n1).len(), 1);

    // No VXLAN pool left: the device goes, and with it its routes and entries.
    let removed = with_dp(n1, |dp| async move {
        let gone = dp.remove_tunnel(VXLAN_DEVICE).await.unwrap();
        (gone, dp.remove_tunnel(VXLAN_DEVICE).await.unwrap())
    });
    assert_eq!(removed, (true, false));
}

#[test]
fn ipip_carries_pod_traffic_across_subnets() {
    if !privileged("ipip_carries_pod_traffic_across_subnets", true) {
        return;
    }
    let lab = Lab::new();
    let (n1, n2) = (lab.node(1), lab.node(2));
    if let Err(err) = prepare(n1, false) {
        assert!(is_unsupported_link_kind(&err), "{err}");
        // Allowed under CI=true too: the kernel decides, not the machine's setup.
        eprintln!(
            "skipped ipip_carries_pod_traffic_across_subnets: kernel has no ipip module \
             (CONFIG_NET_IPIP not set), IPIP tested at the netlink-message level only"
        );
        return;
    }
    prepare(n2, false).unwrap();
    for node in [n1, n2] {
        let remotes = [
            n1.remote(EncapMode::Always, EncapKind::Ipip),
            n2.remote(EncapMode::Always, EncapKind::Ipip),
        ];
        let stats = sync(node, &plan(node.addr, &remotes));
        assert_eq!(
            stats,
            EncapSyncStats {
                routes_added: 1,
                ..Default::default()
            }
        );
    }
    let routes = n1.ns.lanes_routes();
    let r2 = route(&routes, "10.244.2.0/26");
    assert_eq!(
        (&r2["gateway"], &r2["dev"]),
        (&"192.168.2.12".into(), &"ipip.lanes".into())
    );
    let before = n1.tx_packets("ipip.lanes");
    assert!(n1.pings(n2) && n2.pings(n1), "pods cannot reach each other over IPIP");
    assert!(n1.tx_packets("ipip.lanes") > before);
}
