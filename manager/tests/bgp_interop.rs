//! BGP interop and resilience end to end, each node a netns with its own lanesd + BIRD:
//! - a GoBGP ToR peering eBGP with 4-octet AS numbers on both sides;
//! - graceful restart: lanesd and BIRD killed and restarted, routes and pod traffic kept;
//! - VXLAN pools (Always, then CrossSubnet) across two subnets joined by a router;
//! - bad BGP resources are rejected by field and never touch the running BIRD.
//!
//! The tests run one at a time (they measure gaps in routes and pings on a 2-core machine).

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The /26 block holding `ip`.
fn block_of(ip: &str) -> String {
    ipnet::IpNet::new(ip.parse().unwrap(), 26).unwrap().trunc().to_string()
}

/// `ip route show <prefix>` in `ns` (exact prefix, main table): one entry per element
/// (ECMP `nexthop` continuation lines are folded into their route).
fn route_lines(ns: &Netns, prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "route", "show", prefix])
        .output()
        .unwrap();
    let mut routes: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        match routes.last_mut() {
            Some(last) if l.starts_with("nexthop") => {
                last.push(' ');
                last.push_str(l);
            }
            _ => routes.push(l.to_string()),
        }
    }
    routes
}

/// A netns with `ens2` (`cidr`) on `switch`, optionally a default route, and a started lanesd.
fn node_on(
    switch: &Switch,
    name: &str,
    cidr: &str,
    gateway: Option<&str>,
    dir: &Path,
    store: &Path,
    extra: &[&str],
) -> Node {
    let ns = Netns::new("lbi-");
    switch.plug(&ns, "ens2", cidr);
    if let Some(gw) = gateway {
        run("ip", &["-n", &ns.name, "route", "add", "default", "via", gw]);
    }
    let mut args = vec!["--primary-interface", "ens2"];
    args.extend_from_slice(extra);
    Node::prepared(name, dir, store, ns, &args, true)
}

/// Poll `f` every 200 ms for up to `secs`; whether it became true.
fn poll(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn add_pod(node: &Node, id: &str, pod: &Netns) -> String {
    let (code, out) = node.shim(&cni_env(node, "ADD", id, &pod.path()), CONF);
    assert_eq!(code, 0, "ADD {id} on {}: {out}", node.name);
    let ip = result_ip(&out);
    assert!(!ip.is_empty(), "ADD {id}: no address in {out}");
    ip
}

fn full_status(node: &Node) -> Value {
    let (_, out) = node.lanesctl(&["-o", "json", "node", "status"]);
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

/// Prints a file (a peer daemon's log) to stderr if the test panics.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("--- {} ---\n{text}", self.0.display());
        }
    }
}

fn mesh_resources(asn: u32, extra: &str) -> String {
    format!(
        "{SEED_POOL}---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: {asn}
  nodeToNodeMeshEnabled: true
{extra}"
    )
}

// ---------------------------------------------------------------------------------------------
// 1. GoBGP ToR, eBGP, 4-octet AS on both sides.
// ---------------------------------------------------------------------------------------------

const TOR_RESOURCES: &str = "---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 1111111
  nodeToNodeMeshEnabled: false
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.168.0.1
  asNumber: 4200000001
";

const GOBGPD_TOML: &str = r#"[global.config]
  as = 4200000001
  router-id = "192.168.0.1"
  port = 179
  local-address-list = ["192.168.0.1"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.168.0.11"
    peer-as = 1111111
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.168.0.12"
    peer-as = 1111111
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#;

#[test]
fn gobgp_tor_4_octet_as() {
    let name = "gobgp_tor_4_octet_as";
    if !prerequisites(name, &["ip", "bird", "gobgpd", "gobgp"]) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let (dir, store) = Node::store(&format!("{SEED_POOL}{TOR_RESOURCES}"));
    let switch = Switch::new();
    let tor = Netns::new("lbt-");
    switch.plug(&tor, "ens2", "192.168.0.1/24");

    let conf = dir.join("gobgpd.toml");
    std::fs::write(&conf, GOBGPD_TOML).unwrap();
    let log_path = dir.join("gobgpd.log");
    let log = File::create(&log_path).unwrap();
    let _gobgpd = ChildGuard::new(
        Command::new("ip")
            .args(["netns", "exec", &tor.name, "gobgpd", "-t", "toml", "-p"])
            .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn gobgpd"),
    );
    let _gobgpd_log = LogOnPanic(log_path);
    let gobgp = |args: &[&str]| {
        let mut all = vec!["gobgp", "-u", "127.0.0.1", "-p", "50051"];
        all.extend_from_slice(args);
        tor.exec(&all)
    };
    wait_for("the gobgpd API", 15, || gobgp(&["global"]).0.then_some(()));

    let mut nodes = NodeGroup(Vec::new());
    for i in 1..=2 {
        nodes.push(node_on(
            &switch,
            &format!("node{i}"),
            &format!("192.168.0.1{i}/24"),
            None,
            &dir,
            &store,
            &[],
        ));
    }
    let pods: Vec<Netns> = (0..2).map(|_| Netns::new("lbp-")).collect();
    let ips: Vec<String> = nodes
        .iter()
        .zip(&pods)
        .enumerate()
        .map(|(i, (n, p))| add_pod(n, &format!("tor{i}"), p))
        .collect();

    // Both sessions established, seen from the ToR and from lanesd.
    wait_for("gobgp: both neighbors Established", 40, || {
        let (ok, out) = gobgp(&["neighbor"]);
        let est = |ip: &str| out.lines().any(|l| l.contains(ip) && l.contains("Establ"));
        (ok && est("192.168.0.11") && est("192.168.0.12")).then_some(())
    });
    for n in nodes.iter() {
        wait_for(&format!("{}: the ToR session up", n.name), 20, || {
            (n.peers_up() == 1).then_some(())
        });
        let st = n.bgp_status();
        assert_eq!(st["localAS"], 1111111, "{st}");
        let peers = st["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1, "{st}");
        assert_eq!(peers[0]["address"], "192.168.0.1", "{st}");
        assert_eq!(peers[0]["type"], "global", "{st}");
        let (ok, table) = n.lanesctl(&["node", "status"]);
        assert!(
            ok && table.contains("192.168.0.1") && table.contains("global"),
            "{table}"
        );
    }

    // The ToR's RIB has both nodes' blocks, next hop the node, AS path the real 4-octet AS.
    for (i, ip) in ips.iter().enumerate() {
        let block = block_of(ip);
        let node_ip = format!("192.168.0.1{}", i + 1);
        wait_for(&format!("gobgp RIB: {block} via {node_ip}"), 20, || {
            let (_, rib) = gobgp(&["global", "rib", "-a", "ipv4"]);
            rib.lines()
                .find(|l| l.contains(&format!(" {block} ")) && l.contains(&node_ip))
                .map(String::from)
        });
    }
    let (_, rib) = gobgp(&["global", "rib", "-a", "ipv4"]);
    assert!(
        rib.contains("1111111") && !rib.contains("23456"),
        "4-octet AS path expected:\n{rib}"
    );
    for node_ip in ["192.168.0.11", "192.168.0.12"] {
        let (_, detail) = gobgp(&["neighbor", node_ip]);
        assert!(
            detail
                .lines()
                .any(|l| l.contains("4-octet-as") && l.contains("advertised and received")),
            "the 4-octet AS capability both ways with {node_ip}:\n{detail}"
        );
    }

    // A route the ToR originates reaches both kernels through BIRD.
    let (ok, out) = gobgp(&["global", "rib", "-a", "ipv4", "add", "203.0.113.0/24"]);
    assert!(ok, "gobgp global rib add: {out}");
    for n in nodes.iter() {
        wait_for(
            &format!("{}: 203.0.113.0/24 via the ToR, proto bird", n.name),
            20,
            || {
                route_lines(&n.netns, "203.0.113.0/24")
                    .iter()
                    .any(|l| l.starts_with("203.0.113.0/24 via 192.168.0.1 dev ens2 proto bird"))
                    .then_some(())
            },
        );
        let st = n.bgp_status();
        let p = &st["peers"][0];
        assert!(
            p["routesImported"].as_u64() >= Some(1) && p["routesExported"].as_u64() >= Some(1),
            "{st}"
        );
    }
    // And its withdrawal leaves both kernels.
    let (ok, out) = gobgp(&["global", "rib", "-a", "ipv4", "del", "203.0.113.0/24"]);
    assert!(ok, "gobgp global rib del: {out}");
    for n in nodes.iter() {
        wait_for(&format!("{}: 203.0.113.0/24 withdrawn", n.name), 20, || {
            route_lines(&n.netns, "203.0.113.0/24").is_empty().then_some(())
        });
    }
    eprintln!("{name}: passed in {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 2. Graceful restart: lanesd and its BIRD go away and come back; nothing is lost.
// ---------------------------------------------------------------------------------------------

/// A sampler thread: it returns (samples taken, misses).
type Sampled = thread::JoinHandle<(usize, Vec<String>)>;

/// Samples, every 200 ms until stopped, whether `ns` has a route to `prefix` via `via`.
/// Returns (samples, misses as "ms since start: what the kernel had").
fn route_sampler(ns: String, prefix: String, via: String, stop: Arc<AtomicBool>) -> Sampled {
    thread::spawn(move || {
        let t0 = Instant::now();
        let (mut samples, mut misses) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let out = Command::new("ip")
                .args(["-n", &ns, "route", "show", &prefix])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            samples += 1;
            if !text.contains(&format!("via {via} ")) {
                misses.push(format!("{}ms: {:?}", t0.elapsed().as_millis(), text.trim()));
            }
            thread::sleep(Duration::from_millis(200));
        }
        (samples, misses)
    })
}

/// `(transmitted, received)` from ping's summary.
fn ping_summary(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let nums: Vec<u64> = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}

/// `birdc show protocols all <protocol>` on a node's own BIRD.
fn birdc_protocol(node: &Node, protocol: &str) -> String {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(node.run_dir.join("bird.ctl"))
        .args(["show", "protocols", "all", protocol])
        .output()
        .expect("birdc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A continuous pod ping plus route samplers on both nodes, for the length of one episode.
struct Watch {
    stop: Arc<AtomicBool>,
    samplers: Vec<(String, String, Sampled)>,
    ping: ChildGuard,
}

impl Watch {
    fn start(from: &Netns, to_ip: &str, routes: &[(&Node, &str, &str)]) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let samplers = routes
            .iter()
            .map(|(n, block, via)| {
                let h = route_sampler(n.netns.name.clone(), block.to_string(), via.to_string(), stop.clone());
                (n.name.clone(), block.to_string(), h)
            })
            .collect();
        let ping = ChildGuard::new(
            Command::new("ip")
                .args(["netns", "exec", &from.name, "ping", "-n", "-i", "0.2", "-W", "1", to_ip])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ping"),
        );
        Watch { stop, samplers, ping }
    }

    /// Stop; assert no route sample missed and at most one ping was lost. Returns a summary.
    fn finish(mut self, episode: &str) -> String {
        self.stop.store(true, Ordering::SeqCst);
        let mut summary = Vec::new();
        for (node, block, h) in self.samplers.drain(..) {
            let (samples, misses) = h.join().unwrap();
            assert!(
                misses.is_empty(),
                "{episode}: {node} lost the route to {block} in {} of {samples} samples: {misses:?}",
                misses.len()
            );
            summary.push(format!("{node} {samples} route samples"));
        }
        let out = self
            .ping
            .signal_and_wait(nix::sys::signal::Signal::SIGINT)
            .expect("ping output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (sent, received) = ping_summary(&text).unwrap_or_else(|| panic!("{episode}: no ping summary in:\n{text}"));
        assert!(sent >= 20, "{episode}: ping ran too briefly: {text}");
        assert!(
            sent - received == 0,
            "{episode}: {} pod pings lost:\n{text}",
            sent - received
        );
        summary.push(format!("ping {received}/{sent}"));
        summary.join(", ")
    }
}

#[test]
fn graceful_restart_keeps_routes() {
    let name = "graceful_restart_keeps_routes";
    if !prerequisites(name, &["ip", "bird", "birdc", "ping"]) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let (dir, store) = Node::store(&mesh_resources(64512, ""));
    let switch = Switch::new();
    let mut nodes = NodeGroup(Vec::new());
    for i in 1..=2 {
        nodes.push(node_on(
            &switch,
            &format!("node{i}"),
            &format!("192.168.0.1{i}/24"),
            None,
            &dir,
            &store,
            &[],
        ));
    }
    let pods: Vec<Netns> = (0..2).map(|_| Netns::new("lbp-")).collect();
    let ip_a = add_pod(&nodes[0], "gr-a", &pods[0]);
    let ip_b = add_pod(&nodes[1], "gr-b", &pods[1]);
    let (block_a, block_b) = (block_of(&ip_a), block_of(&ip_b));
    for n in nodes.iter() {
        wait_for(&format!("{}: mesh session up", n.name), 40, || {
            (n.peers_up() == 1).then_some(())
        });
    }
    for (n, block, via) in [
        (&nodes[1], &block_a, "192.168.0.11"),
        (&nodes[0], &block_b, "192.168.0.12"),
    ] {
        let want = format!("{block} via {via} dev ens2 proto bird");
        wait_for(&format!("{}: {want}", n.name), 20, || {
            route_lines(&n.netns, block)
                .iter()
                .any(|l| l.starts_with(&want))
                .then_some(())
        });
    }
    wait_for("pod A reaches pod B", 10, || pods[0].ping(&ip_b).then_some(()));
    // node2's BIRD must have node1's End-of-RIB before a restart (RFC 4724: a restart before it
    // drops the stale routes); BIRD 2.0.12 sends it up to ~4 s after Established.
    thread::sleep(Duration::from_secs(4));

    let mut report = Vec::new();
    const KILL_BOTH: &str = "kill -9 of lanesd and BIRD";
    const GRACEFUL_STOP: &str = "SIGTERM of lanesd (graceful stop)";
    const BIRD_CRASH: &str = "kill -9 of BIRD alone (lanesd's supervisor restarts it)";
    for episode in [KILL_BOTH, GRACEFUL_STOP, BIRD_CRASH] {
        let watch = Watch::start(
            &pods[0],
            &ip_b,
            &[
                (&nodes[1], &block_a, "192.168.0.11"),
                (&nodes[0], &block_b, "192.168.0.12"),
            ],
        );
        thread::sleep(Duration::from_secs(1));
        let old_bird = nodes[0].bird_pid().expect("node1's BIRD pid");
        let down = Instant::now();
        match episode {
            KILL_BOTH => {
                nodes[0].kill9();
                nodes[0].kill_bird();
            }
            GRACEFUL_STOP => assert!(
                nodes[0].stop(),
                "{episode}: lanesd did not exit cleanly: {}",
                nodes[0].log()
            ),
            _ => {
                nodes[0].kill_bird();
            }
        }
        // Gone or a zombie (reparented to init, reaped whenever init gets to it).
        assert_ne!(
            nodes[0].bird_pid(),
            Some(old_bird),
            "{episode}: node1's BIRD (pid {old_bird}) still runs"
        );
        // node2 notices, and helps: the session is down, the stale routes stay.
        wait_for(&format!("{episode}: node2 in graceful-restart helper mode"), 5, || {
            let st = nodes[1].bgp_status();
            let down = st["peers"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["state"] != "up"));
            (down && birdc_protocol(&nodes[1], "Mesh_192_168_0_11").contains("Neighbor graceful restart active"))
                .then_some(())
        });
        if episode != BIRD_CRASH {
            thread::sleep(Duration::from_secs(3).saturating_sub(down.elapsed()));
            // The restart: lanesd starts BIRD with -R (the kernel still holds BIRD's routes).
            nodes[0].start();
        }
        let new_bird = wait_for(&format!("{episode}: node1 runs a new BIRD"), 15, || {
            nodes[0].bird_pid().filter(|p| *p != old_bird)
        });
        let cmdline = std::fs::read(format!("/proc/{new_bird}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            args.iter().any(|a| a == "-R"),
            "{episode}: BIRD restarted without -R: {args:?}"
        );
        for n in nodes.iter() {
            wait_for(&format!("{episode}: {} mesh session back up", n.name), 30, || {
                (n.peers_up() == 1).then_some(())
            });
        }
        let back_up = down.elapsed();
        // The restarting side announced itself as such, and node2 finishes the restart (node1's
        // End-of-RIB) while the ping and the samplers still run.
        let proto = birdc_protocol(&nodes[1], "Mesh_192_168_0_11");
        assert!(proto.contains("Restart recovery"), "{episode}: node1's R bit:\n{proto}");
        wait_for(
            &format!("{episode}: node2 ends graceful-restart helper mode"),
            15,
            || {
                (!birdc_protocol(&nodes[1], "Mesh_192_168_0_11").contains("Neighbor graceful restart active"))
                    .then_some(())
            },
        );
        let done = down.elapsed();
        thread::sleep(Duration::from_secs(1));
        let summary = watch.finish(episode);
        report.push(format!(
            "{episode}: sessions up {:.1}s and restart done {:.1}s after the stop; {summary}",
            back_up.as_secs_f64(),
            done.as_secs_f64()
        ));

        // No duplicates: one route per remote block on each kernel.
        for (n, block, via) in [
            (&nodes[1], &block_a, "192.168.0.11"),
            (&nodes[0], &block_b, "192.168.0.12"),
        ] {
            let lines = route_lines(&n.netns, block);
            assert_eq!(lines.len(), 1, "{episode}: {}: routes for {block}: {lines:?}", n.name);
            assert!(
                lines[0].starts_with(&format!("{block} via {via} dev ens2 proto bird")),
                "{episode}: {}: {lines:?}",
                n.name
            );
        }
        let (ok, table) = nodes[0].lanesctl(&["node", "status"]);
        assert!(
            ok && table.contains("192.168.0.12") && table.contains("node-to-node mesh"),
            "{episode}: {table}"
        );
        let st = nodes[0].bgp_status();
        assert_eq!(st["birdState"], "running", "{episode}: {st}");
        if episode == BIRD_CRASH {
            assert_eq!(st["birdRestarts"], 1, "{episode}: {st}");
        }
        assert!(
            pods[0].ping(&ip_b) && pods[1].ping(&ip_a),
            "{episode}: pods after the restart"
        );
    }
    for line in &report {
        eprintln!("{name}: {line}");
    }
    eprintln!("{name}: passed in {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 3. VXLAN: Always, then CrossSubnet, across two subnets.
// ---------------------------------------------------------------------------------------------

fn vxlan_resources(mode: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: {mode}
  natOutgoing: true
  nodeSelector: all()
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: true
"
    )
}

fn vxlan_tx(node: &Node) -> u64 {
    let v = node.netns.ip_json(&["-s", "link", "show", "dev", "vxlan.lanes"]);
    v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
}

#[test]
fn vxlan_always_and_cross_subnet() {
    let name = "vxlan_always_and_cross_subnet";
    if !prerequisites(name, &["ip", "bird", "ping", "nft"]) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let (dir, store) = Node::store(&vxlan_resources("Always"));
    let (lan0, lan2) = (Switch::new(), Switch::new());
    let router = Netns::new("lbr-");
    lan0.plug(&router, "eth0", "192.168.0.1/24");
    lan2.plug(&router, "eth2", "192.168.2.1/24");
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    let mut nodes = NodeGroup(Vec::new());
    for (name, lan, cidr, gw) in [
        ("node1", &lan0, "192.168.0.11/24", "192.168.0.1"),
        ("node2", &lan0, "192.168.0.12/24", "192.168.0.1"),
        ("node3", &lan2, "192.168.2.13/24", "192.168.2.1"),
    ] {
        nodes.push(node_on(lan, name, cidr, Some(gw), &dir, &store, &[]));
    }
    assert!(
        nodes[0].netns.ping("192.168.2.13"),
        "underlay: node1 → node3 through the router"
    );
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("lbp-")).collect();
    let ips: Vec<String> = nodes
        .iter()
        .zip(&pods)
        .enumerate()
        .map(|(i, (n, p))| add_pod(n, &format!("vx{i}"), p))
        .collect();
    let blocks: Vec<String> = ips.iter().map(|ip| block_of(ip)).collect();
    let vteps: Vec<String> = nodes
        .iter()
        .map(|n| {
            wait_for(&format!("{}: vxlan.lanes with an address", n.name), 15, || {
                n.netns.ipv4_of("vxlan.lanes")
            })
        })
        .collect();
    let tunnel_route = |j: usize| format!("{} via {} dev vxlan.lanes proto 76 onlink", blocks[j], vteps[j]);
    let native_route = |j: usize, via: &str| format!("{} via {via} dev ens2 proto 76", blocks[j]);
    // Exactly one route to `blocks[j]` on node i, and it is `want`.
    let has_only = |i: usize, j: usize, want: &str| {
        let lines = route_lines(&nodes[i].netns, &blocks[j]);
        (lines.len() == 1 && lines[0] == want).then_some(())
    };
    let check_all = |want: &dyn Fn(usize, usize) -> String, secs: u64| {
        for i in 0..3 {
            for j in (0..3).filter(|j| *j != i) {
                let w = want(i, j);
                let what = format!("node{}: only `{w}`", i + 1);
                let got = poll(secs, || has_only(i, j, &w).is_some());
                if !got {
                    panic!(
                        "{what}; routes for {}: {:?}\n{}",
                        blocks[j],
                        route_lines(&nodes[i].netns, &blocks[j]),
                        nodes[i].netns.routes()
                    );
                }
            }
        }
    };
    let ping_all = |when: &str| {
        for (i, p) in pods.iter().enumerate() {
            for (j, ip) in ips.iter().enumerate() {
                if i != j {
                    assert!(p.ping(ip), "{when}: pod on node{} → pod on node{} ({ip})", i + 1, j + 1);
                }
            }
        }
    };

    // Always: every remote block through the tunnel.
    check_all(&|_, j| tunnel_route(j), 20);
    let before: Vec<u64> = nodes.iter().map(vxlan_tx).collect();
    ping_all("vxlanMode Always");
    let after: Vec<u64> = nodes.iter().map(vxlan_tx).collect();
    for i in 0..3 {
        assert!(
            after[i] >= before[i] + 4,
            "node{}: vxlan.lanes TX {} → {}",
            i + 1,
            before[i],
            after[i]
        );
    }
    let t_always = t0.elapsed();

    // CrossSubnet: node1 ↔ node2 native on the shared subnet, node3 still tunnelled.
    write_atomic(&store.join("resources.yaml"), &vxlan_resources("CrossSubnet"));
    let switched = Instant::now();
    check_all(
        &|i, j| match (i, j) {
            (0, 1) => native_route(1, "192.168.0.12"),
            (1, 0) => native_route(0, "192.168.0.11"),
            _ => tunnel_route(j),
        },
        10,
    );
    let took = switched.elapsed();
    ping_all("vxlanMode CrossSubnet");
    let tx1 = vxlan_tx(&nodes[0]);
    for _ in 0..3 {
        assert!(pods[0].ping(&ips[1]), "CrossSubnet: node1 → node2 pod");
    }
    assert_eq!(vxlan_tx(&nodes[0]), tx1, "node1 → node2 should not use vxlan.lanes");
    let tx1 = vxlan_tx(&nodes[0]);
    assert!(pods[0].ping(&ips[2]), "CrossSubnet: node1 → node3 pod");
    assert!(vxlan_tx(&nodes[0]) > tx1, "node1 → node3 should use vxlan.lanes");
    let t_cross = t0.elapsed();

    // BGP runs too (a full mesh, node3's sessions through the router). Once BIRD has exchanged
    // the blocks, each kernel still has exactly lanesd's route per block (one owner per pool).
    for n in nodes.iter() {
        wait_for(&format!("{}: 2 mesh sessions up", n.name), 30, || {
            (n.peers_up() == 2).then_some(())
        });
    }
    for n in nodes.iter() {
        wait_for(&format!("{}: BIRD learned the 2 remote blocks", n.name), 15, || {
            let st = n.bgp_status();
            let imported: u64 = st["peers"]
                .as_array()?
                .iter()
                .filter_map(|p| p["routesImported"].as_u64())
                .sum();
            (imported >= 2).then_some(())
        });
    }
    thread::sleep(Duration::from_secs(1));
    check_all(
        &|i, j| match (i, j) {
            (0, 1) => native_route(1, "192.168.0.12"),
            (1, 0) => native_route(0, "192.168.0.11"),
            _ => tunnel_route(j),
        },
        0,
    );
    for n in nodes.iter() {
        let (_, bird_routes) = n.netns.exec(&["ip", "route", "show", "proto", "bird"]);
        assert!(
            bird_routes.trim().is_empty(),
            "{}: BIRD programmed routes inside a VXLAN pool:\n{bird_routes}",
            n.name
        );
    }
    ping_all("vxlanMode CrossSubnet, BGP up");

    // natOutgoing (on in this pool): lanesd's nftables table is there, is put back when
    // someone deletes it, and goes when the pool stops asking for it.
    let nat_table = |n: &Node| n.netns.exec(&["nft", "list", "table", "ip", "lanes"]);
    let (ok, table) = nat_table(&nodes[0]);
    assert!(ok && table.contains("masquerade"), "node1: table ip lanes: {table}");
    let (ok, out) = nodes[0].netns.exec(&["nft", "delete", "table", "ip", "lanes"]);
    assert!(ok, "delete the NAT table by hand: {out}");
    wait_for("node1: NAT table restored after a hand delete", 20, || {
        nat_table(&nodes[0]).0.then_some(())
    });
    write_atomic(
        &store.join("resources.yaml"),
        &vxlan_resources("CrossSubnet").replace("natOutgoing: true", "natOutgoing: false"),
    );
    for n in nodes.iter() {
        wait_for(&format!("{}: NAT table gone with natOutgoing off", n.name), 10, || {
            (!nat_table(n).0).then_some(())
        });
    }

    eprintln!(
        "{name}: passed in {:.1}s (Always verified at {:.1}s, CrossSubnet routes {:.1}s after the change, \
         CrossSubnet verified at {:.1}s)",
        t0.elapsed().as_secs_f64(),
        t_always.as_secs_f64(),
        took.as_secs_f64(),
        t_cross.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Bad BGP resources: rejected by field, the running BIRD untouched.
// ---------------------------------------------------------------------------------------------

const EXISTING_PEER: &str = "---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.168.0.1
  asNumber: 64513
";

const BAD_PEERS: &str = "---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: bad-selector
spec:
  peerIP: 192.168.0.2
  asNumber: 64513
  nodeSelector: \"rack ==\"
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: zero-as
spec:
  peerIP: 192.168.0.3
  asNumber: 0
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: not-ip
spec:
  peerIP: not-an-ip
  asNumber: 64513
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor-again
spec:
  peerIP: 192.168.0.1
  asNumber: 64513
";

#[test]
fn bad_bgp_resources_leave_running_config() {
    let name = "bad_bgp_resources_leave_running_config";
    if !prerequisites(name, &["ip", "bird"]) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let good = mesh_resources(64512, EXISTING_PEER);
    let (dir, store) = Node::store(&good);
    let switch = Switch::new();
    let mut nodes = NodeGroup(Vec::new());
    for i in 1..=2 {
        nodes.push(node_on(
            &switch,
            &format!("node{i}"),
            &format!("192.168.0.1{i}/24"),
            None,
            &dir,
            &store,
            &[],
        ));
    }
    let pod = Netns::new("lbp-");
    let ip = add_pod(&nodes[0], "bad0", &pod);
    let block = block_of(&ip);
    let mesh_up = |n: &Node| {
        let st = n.bgp_status();
        st["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["type"] == "node-to-node mesh" && p["state"] == "up"))
    };
    for n in nodes.iter() {
        wait_for(&format!("{}: mesh session up", n.name), 40, || mesh_up(n).then_some(()));
    }
    let want = format!("{block} via 192.168.0.11 dev ens2 proto bird");
    wait_for(&format!("node2: {want}"), 20, || {
        route_lines(&nodes[1].netns, &block)
            .iter()
            .any(|l| l.starts_with(&want))
            .then_some(())
    });
    let conf_path = nodes[0].run_dir.join("bird.conf");
    // bird.conf settled: unchanged for longer than one resync.
    let conf_before = {
        let mut last = std::fs::read_to_string(&conf_path).unwrap();
        let mut since = Instant::now();
        wait_for("node1: bird.conf stable for 2.5s", 20, || {
            let now = std::fs::read_to_string(&conf_path).unwrap();
            if now != last {
                (last, since) = (now, Instant::now());
            }
            (since.elapsed() > Duration::from_millis(2500)).then(|| last.clone())
        })
    };
    assert!(
        conf_before.contains("neighbor 192.168.0.1 port 179 as 64513"),
        "the existing peer in bird.conf:\n{conf_before}"
    );
    let pid_before = nodes[0].bird_pid().expect("node1's BIRD");
    let st_before = nodes[0].bgp_status();

    write_atomic(&store.join("resources.yaml"), &format!("{good}{BAD_PEERS}"));
    let rejected = wait_for("node1: 4 rejected resources", 10, || {
        let v = full_status(&nodes[0])["rejectedResources"].clone();
        let list: Vec<String> = v
            .as_array()?
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect();
        (list.len() >= 4).then_some(list)
    });
    let find = |peer: &str, field: &str| {
        rejected
            .iter()
            .any(|r| r.contains(&format!("BGPPeer {peer})")) && r.contains(field))
    };
    assert!(find("bad-selector", "spec.nodeSelector"), "{rejected:#?}");
    assert!(find("zero-as", "spec.asNumber"), "{rejected:#?}");
    assert!(find("not-ip", "spec.peerIP"), "{rejected:#?}");
    assert!(find("tor-again", "duplicate"), "{rejected:#?}");
    assert_eq!(rejected.len(), 4, "{rejected:#?}");
    // node2 reads the same store on its own schedule.
    let text = wait_for("node2: the rejections in `lanesctl node status`", 10, || {
        let (ok, text) = nodes[1].lanesctl(&["node", "status"]);
        (ok && text.contains("Rejected resources")).then_some(text)
    });
    for field in ["spec.nodeSelector", "spec.asNumber", "spec.peerIP", "duplicate"] {
        assert!(text.contains(field), "node2's status should name {field}:\n{text}");
    }

    // Longer than a resync plus debounce: nothing reaches BIRD.
    thread::sleep(Duration::from_secs(3));
    let conf_after = std::fs::read_to_string(&conf_path).unwrap();
    assert_eq!(conf_after, conf_before, "bird.conf changed");
    assert_eq!(nodes[0].bird_pid(), Some(pid_before), "BIRD was restarted");
    let st = nodes[0].bgp_status();
    assert_eq!(st["configApplies"], st_before["configApplies"], "{st_before}\n{st}");
    assert_eq!(st["configFailures"], st_before["configFailures"], "{st_before}\n{st}");
    assert_eq!(st["birdRestarts"], 0, "{st}");
    assert_eq!(st["lastError"], "", "{st}");
    for n in nodes.iter() {
        assert!(mesh_up(n), "{}: mesh session dropped: {}", n.name, n.bgp_status());
    }
    assert!(
        !nodes[0].run_dir.join("bird.conf.rejected").exists(),
        "a bad config reached bird -p"
    );

    // Not wedged: fixing the file clears the rejections, and a good change is applied with
    // `birdc configure` (same BIRD) without touching the mesh session.
    let fixed = good.replace("asNumber: 64513", "asNumber: 64514");
    write_atomic(&store.join("resources.yaml"), &fixed);
    wait_for("node1: the rejections cleared", 10, || {
        full_status(&nodes[0])["rejectedResources"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    });
    let conf = wait_for("node1: bird.conf with the changed peer AS", 10, || {
        let c = std::fs::read_to_string(&conf_path).unwrap();
        c.contains("neighbor 192.168.0.1 port 179 as 64514").then_some(c)
    });
    assert!(!conf.contains("as 64513"), "{conf}");
    assert_eq!(
        nodes[0].bird_pid(),
        Some(pid_before),
        "BIRD was restarted, not reconfigured"
    );
    wait_for("node1: the change applied", 10, || {
        let st = nodes[0].bgp_status();
        (st["configApplies"].as_u64() > st_before["configApplies"].as_u64()).then_some(())
    });
    for n in nodes.iter() {
        assert!(mesh_up(n), "{}: mesh session dropped: {}", n.name, n.bgp_status());
    }
    assert_eq!(nodes[0].bgp_status()["lastError"], "", "{}", nodes[0].bgp_status());
    eprintln!("{name}: passed in {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 5. A VXLAN pool turned unencapsulated: its cross-node routes change owner, lanesd → BIRD.
// ---------------------------------------------------------------------------------------------

#[test]
fn vxlan_to_never_hands_routes_to_bird() {
    let name = "vxlan_to_never_hands_routes_to_bird";
    if !prerequisites(name, &["ip", "bird", "ping"]) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    // CrossSubnet on one segment: lanesd's own routes are native (`via <node> dev ens2 proto 76`).
    let (dir, store) = Node::store(&vxlan_resources("CrossSubnet"));
    let switch = Switch::new();
    let mut nodes = NodeGroup(Vec::new());
    for i in 1..=2 {
        nodes.push(node_on(
            &switch,
            &format!("node{i}"),
            &format!("192.168.0.1{i}/24"),
            None,
            &dir,
            &store,
            &[],
        ));
    }
    let pods: Vec<Netns> = (0..2).map(|_| Netns::new("lbp-")).collect();
    let ips: Vec<String> = nodes
        .iter()
        .zip(&pods)
        .enumerate()
        .map(|(i, (n, p))| add_pod(n, &format!("nv{i}"), p))
        .collect();
    let blocks: Vec<String> = ips.iter().map(|ip| block_of(ip)).collect();
    let pairs = [(0, 1, "192.168.0.12"), (1, 0, "192.168.0.11")];
    let only = |i: usize, j: usize, want: &str| {
        let lines = route_lines(&nodes[i].netns, &blocks[j]);
        lines.len() == 1 && lines[0].starts_with(want)
    };
    for (i, j, via) in pairs {
        let want = format!("{} via {via} dev ens2 proto 76", blocks[j]);
        wait_for(&format!("node{}: only `{want}`", i + 1), 20, || {
            only(i, j, &want).then_some(())
        });
    }
    for n in nodes.iter() {
        wait_for(&format!("{}: mesh session up", n.name), 40, || {
            (n.peers_up() == 1).then_some(())
        });
    }
    assert!(pods[0].ping(&ips[1]), "CrossSubnet: node1 → node2 pod");

    write_atomic(&store.join("resources.yaml"), &vxlan_resources("Never"));
    let switched = Instant::now();
    for (i, j, via) in pairs {
        let want = format!("{} via {via} dev ens2 proto bird", blocks[j]);
        let ok = poll(15, || only(i, j, &want));
        assert!(
            ok,
            "vxlanMode Never: node{} should have only `{want}` {:.1}s after the change; has {:?}\n\
             links: {:?}\n{}",
            i + 1,
            switched.elapsed().as_secs_f64(),
            route_lines(&nodes[i].netns, &blocks[j]),
            nodes[i].netns.links(),
            nodes[i].netns.routes()
        );
    }
    let took = switched.elapsed();
    let with_tunnel: Vec<&str> = nodes
        .iter()
        .filter(|n| n.netns.links().iter().any(|l| l == "vxlan.lanes"))
        .map(|n| n.name.as_str())
        .collect();
    assert!(
        with_tunnel.is_empty(),
        "vxlanMode Never: vxlan.lanes left on {with_tunnel:?}"
    );
    assert!(
        pods[0].ping(&ips[1]) && pods[1].ping(&ips[0]),
        "vxlanMode Never: node1 ↔ node2 pods"
    );
    eprintln!(
        "{name}: passed in {:.1}s (BIRD's routes alone {:.1}s after the change)",
        t0.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
}
