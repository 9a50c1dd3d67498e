//! The seed's top-of-rack topology end to end, and its relatives.
//!
//! A router netns runs its own BIRD 2 (the seed's ToR config: a route reflector for the
//! nodes, `next hop self`) with one leg on each of two subnets, 192.168.0.0/24 (rack-1) and
//! 192.168.2.0/24 (rack-2). Each node is a netns with `ens2` on its rack's segment, a default
//! route via its router address and its own lanesd (+ BIRD), peering with the ToR chosen by
//! `BGPPeer.nodeSelector` on the node's `rack` label. Pods are made through the shim.
//!
//! Also here: per-pod /32 export (`bgpExport: aggregate+pods`), a borrowed address advertised
//! as a /32, service cluster IPs as ECMP on the ToR, TCP MD5 with `secretKeyRef`, and a node
//! acting as route reflector (no ToR).
//!
//! Seed config, adapted to BIRD 2: the seed (BIRD 1.6 syntax) puts `next hop self` at protocol
//! level; BIRD 2 only accepts it inside the `ipv4 { }` channel (`bird -p`: "syntax error,
//! unexpected NEXT").
//!
//! Cleanup: [`Cluster`]'s Drop SIGKILLs every lanesd *and then its BIRD* (lanesd's BIRD is
//! reparented to init and survives a SIGKILLed lanesd), then the router's BIRD, then the
//! namespaces go.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use support::*;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;

/// The router's address on each segment (switch 0: rack-1, switch 1: rack-2).
const ROUTER_IPS: [&str; 2] = ["192.168.0.1", "192.168.2.1"];

#[derive(Clone, Copy)]
struct NodeSpec {
    name: &'static str,
    rack: &'static str,
    address: &'static str,
    /// Which switch (and so which router address) the node is on.
    switch: usize,
}

impl NodeSpec {
    fn gateway(&self) -> &'static str {
        ROUTER_IPS[self.switch]
    }
}

/// The seed's nodes: two in rack-1 on 192.168.0.0/24, one in rack-2 on 192.168.2.0/24.
const RACKS: [NodeSpec; 3] = [
    NodeSpec {
        name: "node1",
        rack: "rack-1",
        address: "192.168.0.11",
        switch: 0,
    },
    NodeSpec {
        name: "node2",
        rack: "rack-1",
        address: "192.168.0.12",
        switch: 0,
    },
    NodeSpec {
        name: "node3",
        rack: "rack-2",
        address: "192.168.2.13",
        switch: 1,
    },
];

/// The seed's IPPool, pasted unchanged.
const SEED_POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
";

/// The seed's ToR BGPPeers.
const TOR_PEERS: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.168.0.1
  asNumber: 63400
  nodeSelector: rack == 'rack-1'
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack2-tor
spec:
  peerIP: 192.168.2.1
  asNumber: 63400
  nodeSelector: rack == 'rack-2'
";

/// The seed's BGPConfiguration plus `extra` spec lines (indented two spaces).
fn bgp_configuration(extra: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 63400
{extra}"
    )
}

/// Calico Node documents with the `rack` label and no spec (addresses are autodetected).
fn node_documents(nodes: &[NodeSpec]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\n  labels:\n    rack: {}\n",
                n.name, n.rack
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Documents joined into one multi-document YAML file.
fn documents(docs: &[&str]) -> String {
    docs.iter()
        .map(|d| d.trim_end().to_string() + "\n")
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The seed's ToR: a BIRD route reflector for the nodes, `next hop self`, into its kernel with
/// `merge paths on`. `extra` adds lines to one node's `protocol bgp` (e.g. a password).
fn tor_config(nodes: &[NodeSpec], extra: impl Fn(&NodeSpec) -> String) -> String {
    let mut conf = String::from(
        "router id 192.168.0.1;
log stderr all;
protocol device {}
protocol direct { ipv4; }
protocol kernel { ipv4 { export all; }; merge paths on; }
template bgp nodes {
  local as 63400;
  rr client;
  rr cluster id 1.1.1.1;
  graceful restart on;
  ipv4 { import all; export all; next hop self; };
}
",
    );
    for n in nodes {
        conf.push_str(&format!(
            "protocol bgp {} from nodes {{ neighbor {} as 63400; {}}}\n",
            n.name,
            n.address,
            extra(n)
        ));
    }
    conf
}

/// Switches, an optional router with its BIRD, nodes (lanesd + BIRD each) and pods, all
/// removed on drop. Fields drop in declaration order: pods, nodes, router BIRD, router netns,
/// switches.
struct Cluster {
    pods: Vec<Netns>,
    nodes: Vec<Node>,
    specs: Vec<NodeSpec>,
    router: Option<Bird>,
    router_ns: Option<Netns>,
    switches: Vec<Switch>,
    dir: PathBuf,
    store: PathBuf,
}

impl Cluster {
    /// A store with `resources` and `switches` empty segments.
    fn new(resources: &str, switches: usize) -> Cluster {
        let (dir, store) = Node::store(resources);
        Cluster {
            pods: Vec::new(),
            nodes: Vec::new(),
            specs: Vec::new(),
            router: None,
            router_ns: None,
            switches: (0..switches).map(|_| Switch::new()).collect(),
            dir,
            store,
        }
    }

    /// The router netns on both segments (ip_forward on), running BIRD with `config`.
    fn start_router(&mut self, config: &str) {
        let ns = Netns::new("ltor-");
        for (i, ip) in ROUTER_IPS.iter().enumerate() {
            self.switches[i].plug(&ns, &format!("r{i}"), &format!("{ip}/24"));
        }
        let (ok, _) = ns.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        assert!(ok && ns.sysctl("net.ipv4.ip_forward") == "1");
        self.router_ns = Some(ns);
        let bird = Bird::start(self.router_ns.as_ref().unwrap(), &self.dir, "tor", config);
        self.router = Some(bird);
    }

    /// A node netns with `ens2` on its segment (and a default route via the router when
    /// there is one), and lanesd autodetecting its address from `ens2`.
    fn start_node(&mut self, spec: NodeSpec) {
        let ns = Netns::new("lit-");
        self.switches[spec.switch].plug(&ns, "ens2", &format!("{}/24", spec.address));
        if self.router.is_some() {
            run(
                "ip",
                &["-n", &ns.name, "route", "add", "default", "via", spec.gateway()],
            );
        }
        let node = Node::prepared(
            spec.name,
            &self.dir,
            &self.store,
            ns,
            &["--primary-interface", "ens2"],
            true,
        );
        self.nodes.push(node);
        self.specs.push(spec);
    }

    /// The seed's topology: router, then the nodes.
    fn tor(resources: &str, nodes: &[NodeSpec], router_extra: impl Fn(&NodeSpec) -> String) -> Cluster {
        let mut c = Cluster::new(resources, 2);
        c.start_router(&tor_config(nodes, router_extra));
        for n in nodes {
            c.start_node(*n);
        }
        c
    }

    fn router(&self) -> &Bird {
        self.router.as_ref().expect("a router")
    }

    fn router_ns(&self) -> &Netns {
        self.router_ns.as_ref().expect("a router")
    }

    /// One pod on node `i` via the shim; its address. The pod's netns is `self.pods.last()`.
    fn add_pod(&mut self, i: usize, id: &str) -> String {
        let pod = Netns::new("litp-");
        let n = &self.nodes[i];
        let (code, out) = n.shim(&cni_env(n, "ADD", id, &pod.path()), CONF);
        self.pods.push(pod);
        assert_eq!(code, 0, "ADD {id} on {}: {out}", n.name);
        let ip = result_ip(&out);
        assert!(!ip.is_empty(), "{out}");
        ip
    }

    /// DEL of pod `id` (whose netns is `self.pods[pod]`) on node `i` via the shim.
    fn del_pod(&self, i: usize, id: &str, pod: usize) {
        let n = &self.nodes[i];
        let (code, out) = n.shim(&cni_env(n, "DEL", id, &self.pods[pod].path()), CONF);
        assert_eq!(code, 0, "DEL {id} on {}: {out}", n.name);
    }

    fn pod(&self, index: usize) -> &Netns {
        &self.pods[index]
    }

    /// Wait until node `i` has exactly `count` BGP sessions, all up; returns its status.
    fn wait_sessions(&self, i: usize, count: usize, secs: u64) -> serde_json::Value {
        let n = &self.nodes[i];
        wait_for(
            &format!("{}: exactly {count} BGP session(s), all up", n.name),
            secs,
            || {
                let status = n.bgp_status();
                let peers = status["peers"].as_array()?;
                (peers.len() == count && peers.iter().all(|p| p["state"] == "up")).then_some(status)
            },
        )
    }

    /// Wait until node `i`'s kernel has a `proto bird` route for `prefix` via `via`.
    fn wait_kernel_route(&self, i: usize, prefix: &str, via: &str, secs: u64) {
        let n = &self.nodes[i];
        let want = format!("{prefix} via {via} dev ens2 proto bird");
        wait_for(&format!("{}: kernel route `{want}`", n.name), secs, || {
            n.netns.routes().lines().any(|l| l.starts_with(&want)).then_some(())
        });
    }

    /// Wait until the router's BIRD has a route for `prefix` whose text contains `contains`.
    fn wait_router_route(&self, prefix: IpNet, contains: &str, secs: u64) -> String {
        wait_for(&format!("router: {prefix} with `{contains}`"), secs, || {
            self.router()
                .routes(&[&prefix.to_string()])
                .into_iter()
                .find(|(p, text)| *p == prefix && text.contains(contains))
                .map(|(_, text)| text)
        })
    }

    /// The prefixes inside 10.244.0.0/16 in the router's BIRD table.
    fn router_pool_prefixes(&self) -> BTreeSet<IpNet> {
        let pool: IpNet = "10.244.0.0/16".parse().unwrap();
        self.router()
            .routes(&[])
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| pool.contains(p))
            .collect()
    }

    /// Write `<store>/<rel>`, creating directories.
    fn store_file(&self, rel: &str, content: &str) {
        write_file(&self.store.join(rel), content);
    }
}

fn write_file(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("--- {} bird.conf ---\n{}", n.name, n.bird_conf());
                eprintln!("--- {} routes ---\n{}", n.name, n.netns.routes());
            }
            if let Some(r) = &self.router {
                eprintln!("--- router: show protocols ---\n{}", r.birdc(&["show", "protocols"]).1);
                eprintln!("--- router: show route ---\n{}", r.birdc(&["show", "route"]).1);
            }
            if let Some(ns) = &self.router_ns {
                eprintln!("--- router kernel routes ---\n{}", ns.routes());
            }
        }
        // lanesd first (else it restarts its BIRD), then the BIRD it leaves behind.
        for n in &mut self.nodes {
            n.kill9();
            n.kill_bird();
        }
    }
}

fn block_of(ip: &str, len: u8) -> IpNet {
    IpNet::new(ip.parse().unwrap(), len).unwrap().trunc()
}

fn host(ip: &str) -> IpNet {
    IpNet::new(ip.parse().unwrap(), 32).unwrap()
}

fn elapsed(name: &str, start: Instant) {
    eprintln!("{name}: {:.1}s", start.elapsed().as_secs_f64());
}

/// Every node: exactly one session, node specific, up, to its rack's router address.
fn assert_one_tor_session_each(c: &Cluster) {
    for (i, spec) in c.specs.iter().enumerate() {
        let status = c.wait_sessions(i, 1, 40);
        let peer = &status["peers"][0];
        assert_eq!(peer["type"], "node specific", "{}: {status}", spec.name);
        assert_eq!(peer["address"], spec.gateway(), "{}: {status}", spec.name);
        assert_eq!(status["localAS"], 63400, "{}: {status}", spec.name);
        assert_eq!(status["routerID"], spec.address, "{}: {status}", spec.name);
    }
}

/// Every pod pings every other pod (pods[i] has ips[i]).
fn assert_pods_ping(c: &Cluster, ips: &[String]) {
    for (i, from) in ips.iter().enumerate() {
        for (j, to) in ips.iter().enumerate() {
            if i != j {
                assert!(c.pod(i).ping(to), "pod {from} → pod {to}");
            }
        }
    }
}

#[test]
fn tor_two_subnets_rr_client_by_rack() {
    let name = "tor_two_subnets_rr_client_by_rack";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let start = Instant::now();
    let resources = documents(&[SEED_POOL, &bgp_configuration(""), &node_documents(&RACKS), TOR_PEERS]);
    let mut c = Cluster::tor(&resources, &RACKS, |_| String::new());
    let ips: Vec<String> = (0..3).map(|i| c.add_pod(i, &format!("tor-{i}"))).collect();
    let blocks: Vec<IpNet> = ips.iter().map(|ip| block_of(ip, 26)).collect();
    assert_eq!(
        blocks.iter().collect::<BTreeSet<_>>().len(),
        3,
        "one block per node: {blocks:?}"
    );

    assert_one_tor_session_each(&c);
    // The router learns each block from its node, with the node's address as next hop.
    for (block, spec) in blocks.iter().zip(&RACKS) {
        c.wait_router_route(*block, &format!("via {}", spec.address), 20);
    }
    // Each node's kernel: the other nodes' blocks from BIRD, via its router (next hop self).
    for (i, spec) in RACKS.iter().enumerate() {
        for (j, block) in blocks.iter().enumerate() {
            if i != j {
                c.wait_kernel_route(i, &block.to_string(), spec.gateway(), 20);
            }
        }
    }
    assert_pods_ping(&c, &ips);
    // Block aggregates only: the router's table holds exactly the three /26s, no /32.
    let held = c.router_pool_prefixes();
    assert_eq!(held, blocks.iter().copied().collect::<BTreeSet<_>>(), "router table");
    assert!(held.iter().all(|p| p.prefix_len() == 26), "{held:?}");
    elapsed(name, start);
}

#[test]
fn tor_aggregate_plus_pods_exports_each_pod() {
    let name = "tor_aggregate_plus_pods_exports_each_pod";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let start = Instant::now();
    let pool = "apiVersion: lanes.dev/v1
kind: IPPool
metadata:
  name: pods
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  bgpExport: aggregate+pods
";
    // Calico's communities: a named large one and a literal standard one on the pool's routes.
    let communities = "  communities:
  - name: rack-local
    value: 63400:300:100
  prefixAdvertisements:
  - cidr: 10.244.0.0/16
    communities:
    - rack-local
    - 63400:120
";
    let resources = documents(&[
        pool,
        &bgp_configuration(communities),
        &node_documents(&RACKS),
        TOR_PEERS,
    ]);
    let mut c = Cluster::tor(&resources, &RACKS, |_| String::new());
    // Two pods on node1, one on each of the others.
    let owners = [0usize, 0, 1, 2];
    let ips: Vec<String> = owners
        .iter()
        .enumerate()
        .map(|(k, &i)| c.add_pod(i, &format!("pods-{k}")))
        .collect();
    assert_one_tor_session_each(&c);
    let mut want: BTreeSet<IpNet> = BTreeSet::new();
    for (ip, &i) in ips.iter().zip(&owners) {
        let via = format!("via {}", RACKS[i].address);
        c.wait_router_route(block_of(ip, 26), &via, 20);
        c.wait_router_route(host(ip), &via, 20);
        want.insert(block_of(ip, 26));
        want.insert(host(ip));
    }
    assert_eq!(
        c.router_pool_prefixes(),
        want,
        "router table: the blocks and each pod's /32"
    );
    // The communities arrive with the routes (blocks and /32s alike).
    for prefix in [block_of(&ips[0], 26), host(&ips[0])] {
        let (ok, all) = c.router().birdc(&["show", "route", "all", &prefix.to_string()]);
        assert!(
            ok && all.contains("BGP.community: (63400,120)") && all.contains("BGP.large_community: (63400, 300, 100)"),
            "router: {prefix} with both communities:\n{all}"
        );
    }
    // Across the racks, the /32 reaches the far node's kernel via its router.
    c.wait_kernel_route(2, &ips[0], ROUTER_IPS[1], 20);
    assert_pods_ping(&c, &ips);
    // A deleted pod's /32 is withdrawn; its block (still holding the other pod) stays.
    c.del_pod(0, "pods-1", 1);
    wait_for(&format!("router: {}/32 withdrawn", ips[1]), 15, || {
        (!c.router_pool_prefixes().contains(&host(&ips[1]))).then_some(())
    });
    let held = c.router_pool_prefixes();
    assert!(
        held.contains(&host(&ips[0])) && held.contains(&block_of(&ips[0], 26)),
        "{held:?}"
    );
    elapsed(name, start);
}

#[test]
fn tor_borrowed_address_is_advertised_as_32() {
    let name = "tor_borrowed_address_is_advertised_as_32";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let start = Instant::now();
    let pool = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: tiny-blocks
spec:
  cidr: 10.244.0.0/16
  blockSize: 30
  ipipMode: Never
";
    let ipam = "apiVersion: projectcalico.org/v3
kind: IPAMConfig
metadata:
  name: default
spec:
  maxBlocksPerHost: 1
";
    let resources = documents(&[pool, ipam, &bgp_configuration(""), &node_documents(&RACKS), TOR_PEERS]);
    let mut c = Cluster::tor(&resources, &RACKS, |_| String::new());
    // node2 claims a block first; node1 then fills its one /30 block (4 addresses) and must
    // borrow its 5th address from node2's block; node3 claims its own block last.
    let node2_ip = c.add_pod(1, "borrow-n2");
    let node1_ips: Vec<String> = (0..5).map(|k| c.add_pod(0, &format!("borrow-n1-{k}"))).collect();
    let node3_ip = c.add_pod(2, "borrow-n3");
    let (node1_block, node2_block, node3_block) = (
        block_of(&node1_ips[0], 30),
        block_of(&node2_ip, 30),
        block_of(&node3_ip, 30),
    );
    for ip in &node1_ips[..4] {
        assert_eq!(block_of(ip, 30), node1_block, "node1's first four pods: {node1_ips:?}");
    }
    let borrowed = &node1_ips[4];
    assert_eq!(
        block_of(borrowed, 30),
        node2_block,
        "node1's 5th address comes from node2's block: {node1_ips:?}, node2 {node2_ip}"
    );
    assert_one_tor_session_each(&c);
    // The router: node2's aggregate via node2, the borrowed /32 via node1.
    c.wait_router_route(node2_block, "via 192.168.0.12", 20);
    let text = c.wait_router_route(host(borrowed), "via 192.168.0.11", 20);
    eprintln!("router route for the borrowed address:\n{text}");
    c.wait_router_route(node1_block, "via 192.168.0.11", 20);
    c.wait_router_route(node3_block, "via 192.168.2.13", 20);
    let want: BTreeSet<IpNet> = [node1_block, node2_block, node3_block, host(borrowed)].into();
    assert_eq!(
        c.router_pool_prefixes(),
        want,
        "router table: three /30s and the borrowed /32"
    );
    // Pod netns order: [node2, node1 x5, node3].
    let (node2_pod, borrower_pod, node3_pod) = (c.pod(0), c.pod(5), c.pod(6));
    c.wait_kernel_route(2, borrowed, ROUTER_IPS[1], 20);
    assert!(node3_pod.ping(borrowed), "node3 pod → borrowed {borrowed} on node1");
    assert!(
        borrower_pod.ping(&node3_ip),
        "borrowed {borrowed} → node3 pod {node3_ip}"
    );
    // From inside the block's own node: the /32 via the router beats node2's blackhole.
    c.wait_kernel_route(1, borrowed, ROUTER_IPS[0], 20);
    assert!(
        node2_pod.ping(borrowed),
        "node2 pod → borrowed {borrowed} (node2's block)"
    );
    // Releasing the borrowed address withdraws its /32; node2's aggregate stays.
    c.del_pod(0, "borrow-n1-4", 5);
    wait_for(&format!("router: {borrowed}/32 withdrawn"), 15, || {
        (!c.router_pool_prefixes().contains(&host(borrowed))).then_some(())
    });
    assert!(c.router_pool_prefixes().contains(&node2_block));
    elapsed(name, start);
}

#[test]
fn service_cluster_ips_ecmp_on_tor() {
    let name = "service_cluster_ips_ecmp_on_tor";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let start = Instant::now();
    let config = bgp_configuration("  serviceClusterIPs:\n  - cidr: 10.96.0.0/12\n");
    let resources = documents(&[SEED_POOL, &config, &node_documents(&RACKS), TOR_PEERS]);
    // The router is the seed's, unchanged: no ADD-PATH needed. It has one session per node,
    // so BIRD holds one path per node for 10.96.0.0/12 (all iBGP, same attributes, so
    // "mergeable"), and the kernel protocol's `merge paths on` installs them as one ECMP route.
    let c = Cluster::tor(&resources, &RACKS, |_| String::new());
    assert_one_tor_session_each(&c);
    let svc: IpNet = "10.96.0.0/12".parse().unwrap();
    let text = wait_for("router: one BGP path per node for 10.96.0.0/12", 20, || {
        let routes = c.router().routes(&["10.96.0.0/12", "all"]);
        let text = routes.into_iter().find(|(p, _)| *p == svc)?.1;
        RACKS
            .iter()
            .all(|n| text.contains(&format!("via {}", n.address)))
            .then_some(text)
    });
    eprintln!("router BIRD:\n{text}");
    let kernel = wait_for("router kernel: an ECMP route with a nexthop per node", 20, || {
        let out = run("ip", &["-n", &c.router_ns().name, "route", "show", "10.96.0.0/12"]);
        let hops = out
            .lines()
            .filter(|l| l.trim_start().starts_with("nexthop via"))
            .count();
        let all = RACKS
            .iter()
            .all(|n| out.contains(&format!("nexthop via {} dev r{}", n.address, n.switch)));
        (hops == RACKS.len() && all).then_some(out)
    });
    eprintln!("router kernel:\n{kernel}");
    assert!(kernel.starts_with("10.96.0.0/12 proto bird"), "{kernel}");
    elapsed(name, start);
}

#[test]
fn md5_good_and_wrong_password() {
    let name = "md5_good_and_wrong_password";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let start = Instant::now();
    // One node per rack; each rack's BGPPeer takes its password from its own key.
    let nodes = [RACKS[0], RACKS[2]];
    let peers = TOR_PEERS.replace(
        "  nodeSelector: rack == 'rack-1'\n",
        "  nodeSelector: rack == 'rack-1'\n  password:\n    secretKeyRef:\n      name: bgp-secrets\n      key: rack1\n",
    );
    let peers = peers.replace(
        "  nodeSelector: rack == 'rack-2'\n",
        "  nodeSelector: rack == 'rack-2'\n  password:\n    secretKeyRef:\n      name: bgp-secrets\n      key: rack2\n",
    );
    let resources = documents(&[SEED_POOL, &bgp_configuration(""), &node_documents(&nodes), &peers]);
    let mut c = Cluster::new(&resources, 2);
    c.store_file("secrets/bgp-secrets/rack1", "s3cret\n");
    c.store_file("secrets/bgp-secrets/rack2", "wrong-one\n");
    c.start_router(&tor_config(&nodes, |_| "password \"s3cret\"; ".into()));
    for n in nodes {
        c.start_node(n);
    }
    // The right password: up, and the password is in node1's BIRD config.
    c.wait_sessions(0, 1, 30);
    assert!(c.nodes[0].bird_conf().contains("  password \"s3cret\";\n"));
    let conf = wait_for("node3: the wrong password in bird.conf", 10, || {
        let conf = c.nodes[1].bird_conf();
        conf.contains("  password \"wrong-one\";\n").then_some(conf)
    });
    assert!(conf.contains("protocol bgp Node_192_168_2_1 "), "{conf}");
    // The wrong one: one session, never up (watched for 8 s), with something said in INFO.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        last = c.nodes[1].bgp_status();
        let peers = last["peers"].as_array().cloned().unwrap_or_default();
        assert_eq!(peers.len(), 1, "node3 keeps its (failing) session configured: {last}");
        assert_ne!(
            peers[0]["state"], "up",
            "node3 came up with a wrong MD5 password: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let peer = &last["peers"][0];
    let info = peer["info"].as_str().unwrap_or_default();
    eprintln!(
        "wrong password: state {:?}, info {info:?} (status {last})",
        peer["state"].as_str().unwrap_or_default()
    );
    assert!(!info.is_empty() && !info.contains("Established"), "{last}");
    assert!(
        info.contains("TCP MD5 password set"),
        "status points at the password: {last}"
    );
    let (ok, table) = c.nodes[1].lanesctl(&["node", "status"]);
    assert!(ok && table.contains("192.168.2.1"), "{table}");
    eprintln!("lanesctl node status (node3):\n{table}");
    // Fixing the secret is picked up without a restart: the session comes up.
    c.store_file("secrets/bgp-secrets/rack2", "s3cret\n");
    c.wait_sessions(1, 1, 30);
    elapsed(name, start);
}

#[test]
fn node_as_route_reflector() {
    let name = "node_as_route_reflector";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let start = Instant::now();
    let nodes_and_peer = "apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
  labels:
    route-reflector: 'true'
spec:
  bgp:
    routeReflectorClusterID: 224.0.0.1
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
";
    let resources = documents(&[SEED_POOL, &bgp_configuration(""), nodes_and_peer]);
    let mut c = Cluster::new(&resources, 1);
    let specs: Vec<NodeSpec> = ["node1", "node2", "node3"]
        .iter()
        .enumerate()
        .map(|(i, name)| NodeSpec {
            name,
            rack: "",
            address: ["192.168.0.11", "192.168.0.12", "192.168.0.13"][i],
            switch: 0,
        })
        .collect();
    for s in &specs {
        c.start_node(*s);
    }
    let ips: Vec<String> = (0..3).map(|i| c.add_pod(i, &format!("rr-{i}"))).collect();
    let rr = c.wait_sessions(0, 2, 40);
    let clients: BTreeSet<&str> = rr["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["address"].as_str())
        .collect();
    assert_eq!(clients, ["192.168.0.12", "192.168.0.13"].into(), "{rr}");
    assert!(c.nodes[0]
        .bird_conf()
        .contains("  rr client;\n  rr cluster id 224.0.0.1;\n"));
    for i in [1, 2] {
        let status = c.wait_sessions(i, 1, 40);
        assert_eq!(status["peers"][0]["address"], "192.168.0.11", "{status}");
    }
    // Reflected routes keep the originating node as next hop (all on one subnet).
    let blocks: Vec<IpNet> = ips.iter().map(|ip| block_of(ip, 26)).collect();
    for i in 0..specs.len() {
        for (j, other) in specs.iter().enumerate() {
            if i != j {
                c.wait_kernel_route(i, &blocks[j].to_string(), other.address, 20);
            }
        }
    }
    assert_pods_ping(&c, &ips);
    elapsed(name, start);
}
