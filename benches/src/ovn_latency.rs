//! OVN secondary-lane benchmark (not a test), in one run, on real OVN with nodes as network
//! namespaces (the harness of `manager/tests/ovn_lanes.rs`, `support/ovn.rs`, reused as is):
//! OVN central in a netns, two nodes each with lanesd (BGP mesh on `ens2` for eth0) and its own
//! ovsdb-server + ovs-vswitchd (userspace `netdev` datapath) + ovn-controller (geneve on
//! `br-phy`).
//!
//! 1. ADD latency, client side (fork+exec of lanes-cni with the CNI env and stdin, as a runtime
//!    does, until it exits), for 50 pods with eth0 + eth1 (the seed's `yusur-ovn` NAD; the pod
//!    documents carry the annotation) alternating between the two nodes — this includes lanesd's
//!    wait for `ovn-installed` — then for 50 eth0-only pods as the reference. Also lanesd's own
//!    view from its metrics (mean in-daemon ADD time, mean ovn-installed wait), and the notes'
//!    hand recipe as a script (ovn-nbctl lsp-add, ip/ethtool, ovs-vsctl add-port, polling for
//!    ovn-installed) timed by step for 10 pods: its add-port -> ovn-installed step is what OVN
//!    itself takes.
//! 2. eth1 across nodes: ping RTT (`ping -c 50 -i 0.01`) and iperf3 (TCP, 1 stream, 4 s)
//!    between two lanes-made pods on different nodes and, in the same run, between two pods
//!    wired by hand on the same OVN exactly as `shared/notes/ovn-lab.md` does it (static LSP
//!    addresses, veth, add-port with iface-id, `ethtool -K eth0 tx off`), interleaved A/B/B/A
//!    over 6 rounds to spread the noise of a shared box evenly; ratios lanes/hand (of the
//!    medians, and per round, where both runs saw the same load).
//! 3. lanesd RSS per node: idle, with the 50 eth0+eth1 pods attached (25 per node), and with
//!    the 50 eth0-only pods on top.
//!
//! Then every pod is DELeted through the shim (timed) and leftovers (LSPs, OVS ports) counted.
//!
//! Usage (as root, in the root netns; it makes its own): ovn-latency <lanes-cni> <lanesd> <workdir>
//! Env: LANES_BENCH_TAG (netns name prefix), OVN_BENCH_PODS (50), OVN_BENCH_ROUNDS (6),
//! OVN_BENCH_IPERF_SECS (4), OVN_BENCH_LOGS=<dir> (keep every daemon's log there), and
//! lanesd's own LANES_LOG (e.g. `info,ovn_bridge=trace` to see each OVSDB transaction).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
#[allow(dead_code)]
mod support;

use common::{pct, rss_mb};
use support::ovn::{prime_tunnels, OvnCentral, OvnNode, OVN_TOOLS};
use support::{Netns, Switch};

const METRICS_ADDR: &str = "127.0.0.1:9464";
const HAND_PODS: usize = 10;
const HAND_SWITCH: &str = "bench-hand";
const POD_MTU: u32 = 1400;

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: ovn-latency <lanes-cni> <lanesd> <workdir>");
        std::process::exit(2);
    }
    let (shim, lanesd, work) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
    );
    let lanesctl = lanesd.with_file_name("lanesctl");
    for t in OVN_TOOLS.iter().chain(&["bird", "iperf3", "ss"]) {
        let found = if t.contains('/') {
            Path::new(t).exists()
        } else {
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .any(|d| Path::new(d).join(t).exists())
        };
        assert!(found, "ovn-latency needs `{t}`");
    }
    let pods_n = env_usize("OVN_BENCH_PODS", 50);
    let rounds = env_usize("OVN_BENCH_ROUNDS", 6);
    let iperf_secs = env_usize("OVN_BENCH_IPERF_SECS", 4);

    // ---- lab (drop order: pods, lanesd, OVN nodes, node netns, central, switches) --------
    let t_lab = Instant::now();
    let primary = Switch::new();
    let underlay = Switch::new();
    let central = OvnCentral::start(&underlay, "192.168.200.10/24");
    let store = work.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("resources.yaml"), resources(pods_n)).unwrap();
    let node_ns: Vec<Netns> = (0..2).map(|_| Netns::new("node")).collect();
    let mut ovn_nodes = Vec::new();
    for (i, ns) in node_ns.iter().enumerate() {
        primary.plug(ns, "ens2", &format!("192.168.100.1{}/24", i + 1));
        ovn_nodes.push(OvnNode::start(
            &ns.name,
            &format!("node{}", i + 1),
            &underlay,
            &format!("192.168.200.1{}/24", i + 1),
            &central,
            true,
        ));
    }
    let mut daemons: Vec<Lanesd> = Vec::new();
    for (ns, ovn) in node_ns.iter().zip(&ovn_nodes) {
        daemons.push(Lanesd::start(&lanesd, &work, &store, ns, ovn, &central));
    }
    for o in ovn_nodes.iter_mut() {
        o.start_controller();
    }
    let t_nodes = t_lab.elapsed().as_secs_f64();
    prime_tunnels(&ovn_nodes.iter().collect::<Vec<_>>());
    let t_prime = t_lab.elapsed().as_secs_f64();
    assert_eq!(central.chassis().len(), 2, "lanesd made both nodes chassis");
    let mesh = wait_until(40, || daemons.iter().all(|d| d.peers_up(&lanesctl) == 1));
    println!(
        "lab up in {:.1}s (central {:.1}s, + nodes/lanesd/ovn-controller {:.1}s, + tunnel priming {:.1}s, + BGP mesh {} {:.1}s)",
        t_lab.elapsed().as_secs_f64(),
        central.startup.as_secs_f64(),
        t_nodes - central.startup.as_secs_f64(),
        t_prime - t_nodes,
        if mesh { "up" } else { "NOT up after 40s" },
        t_lab.elapsed().as_secs_f64() - t_prime
    );
    let rss_idle: Vec<f64> = daemons.iter().map(|d| rss_mb(d.pid())).collect();

    // ---- 1. ADD latency --------------------------------------------------------------------
    let ovn_pods: Vec<Netns> = (0..pods_n).map(|_| Netns::new("opod")).collect();
    let plain_pods: Vec<Netns> = (0..pods_n).map(|_| Netns::new("ppod")).collect();
    let m0: Vec<Metrics> = node_ns.iter().map(|n| Metrics::scrape(&n.name)).collect();
    let mut ovn_add = Vec::new();
    let mut ovn_results = Vec::new();
    for (i, pod) in ovn_pods.iter().enumerate() {
        let d = &daemons[i % 2];
        let (ms, res) = pod_cni(&shim, d, "ADD", 'o', i, pod);
        assert!(eth1_ip(&res).is_some(), "obench-{i}: no eth1 address in {res}");
        ovn_add.push(ms);
        ovn_results.push(res);
    }
    let m1: Vec<Metrics> = node_ns.iter().map(|n| Metrics::scrape(&n.name)).collect();
    let rss_ovn: Vec<f64> = daemons.iter().map(|d| rss_mb(d.pid())).collect();
    let mut plain_add = Vec::new();
    for (i, pod) in plain_pods.iter().enumerate() {
        let d = &daemons[i % 2];
        let (ms, res) = pod_cni(&shim, d, "ADD", 'p', i, pod);
        assert!(eth1_ip(&res).is_none(), "pbench-{i} got an eth1: {res}");
        plain_add.push(ms);
    }
    let m2: Vec<Metrics> = node_ns.iter().map(|n| Metrics::scrape(&n.name)).collect();
    let rss_all: Vec<f64> = daemons.iter().map(|d| rss_mb(d.pid())).collect();

    // The OVN floor: the notes' recipe by hand, timed up to ovn-installed.
    central.nbctl(&["ls-add", HAND_SWITCH]);
    let hand_pods: Vec<Netns> = (0..HAND_PODS).map(|_| Netns::new("hpod")).collect();
    // (total, lsp-add, netns side + add-port, add-port -> ovn-installed), ms
    let (mut hand_total, mut hand_lsp, mut hand_plug, mut hand_wait) = (vec![], vec![], vec![], vec![]);
    for (i, pod) in hand_pods.iter().enumerate() {
        let node = &ovn_nodes[i % 2];
        let (lsp, host_if) = (format!("bench-hand{i}"), format!("hand{i}"));
        let (mac, ip) = hand_addr(i);
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        central.nbctl(&[
            "lsp-add",
            HAND_SWITCH,
            &lsp,
            "--",
            "lsp-set-addresses",
            &lsp,
            &format!("{mac} {ip}"),
        ]);
        let t_lsp = ms(t);
        node.plug_pod(pod, &host_if, &lsp, &mac, &format!("{ip}/24"), POD_MTU);
        let t_plug = ms(t);
        node.wait_installed(&host_if, 20);
        let t_all = ms(t);
        hand_total.push(t_all);
        hand_lsp.push(t_lsp);
        hand_plug.push(t_plug - t_lsp);
        hand_wait.push(t_all - t_plug);
    }

    println!();
    println!("== 1. ADD latency (client side: exec lanes-cni .. exit), {pods_n} pods over 2 nodes ==");
    let row = |name: &str, v: &[f64]| {
        println!(
            "{name:<34} p50 {:>7.1} ms  p99 {:>7.1} ms  min {:>6.1}  max {:>7.1}  first {:>7.1}",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.0),
            pct(v, 1.0),
            v[0]
        )
    };
    row("eth0 + eth1 (yusur-ovn)", &ovn_add);
    let slow: Vec<String> = ovn_add
        .iter()
        .enumerate()
        .filter(|(_, ms)| **ms > 3.0 * pct(&ovn_add, 0.5))
        .map(|(i, ms)| format!("#{i} on node{} {ms:.0} ms", i % 2 + 1))
        .collect();
    if !slow.is_empty() {
        println!("  eth0+eth1 ADDs over 3x p50: {}", slow.join(", "));
    }
    row("eth0 only (reference)", &plain_add);
    row(&format!("hand recipe as a script, {HAND_PODS} pods"), &hand_total);
    println!(
        "  hand recipe p50 by step: ovn-nbctl lsp-add {:.1} ms, ip/ethtool/ovs-vsctl add-port {:.1} ms, add-port -> ovn-installed {:.1} ms (polled every ~10 ms)",
        pct(&hand_lsp, 0.5),
        pct(&hand_plug, 0.5),
        pct(&hand_wait, 0.5)
    );
    let (ovn_d, plain_d) = (Metrics::delta(&m0, &m1), Metrics::delta(&m1, &m2));
    println!(
        "inside lanesd (metrics, mean): eth0+eth1 ADD {:.1} ms of which ovn-installed wait {:.1} ms (n={}); eth0-only ADD {:.1} ms",
        ovn_d.add_mean_ms(),
        ovn_d.install_mean_ms(),
        ovn_d.install_count,
        plain_d.add_mean_ms()
    );
    let p50 = pct(&ovn_add, 0.5);
    println!(
        "eth0+eth1 ADD p50 {p50:.1} ms vs floor 100 ms: {}; eth1 costs {:+.1} ms at p50 over eth0-only",
        if p50 <= 100.0 { "OK" } else { "OVER" },
        p50 - pct(&plain_add, 0.5)
    );

    // ---- 2. eth1 across nodes: lanes pair vs hand pair ---------------------------------------
    let lanes_pair = Pair {
        name: "lanes",
        client: &ovn_pods[0],
        server: &ovn_pods[1],
        ifname: "eth1",
        server_ip: eth1_ip(&ovn_results[1]).unwrap(),
        client_ip: eth1_ip(&ovn_results[0]).unwrap(),
    };
    let hand_pair = Pair {
        name: "hand",
        client: &hand_pods[0],
        server: &hand_pods[1],
        ifname: "eth0",
        server_ip: hand_addr(1).1,
        client_ip: hand_addr(0).1,
    };
    println!();
    println!(
        "== 2. eth1 node1 -> node2: lanes pods {} -> {} vs hand-wired {} -> {} ==",
        lanes_pair.client_ip, lanes_pair.server_ip, hand_pair.client_ip, hand_pair.server_ip
    );
    for p in [&lanes_pair, &hand_pair] {
        p.wait_reachable();
        println!("{:<5} {}", p.name, p.describe());
    }
    let mut res: HashMap<&str, Vec<(Ping, Iperf)>> = HashMap::new();
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [&lanes_pair, &hand_pair]
        } else {
            [&hand_pair, &lanes_pair]
        };
        for p in order {
            let ping = p.ping();
            let iperf = p.iperf(iperf_secs);
            println!(
                "round {r} {:<5} rtt min/avg/max {:.3}/{:.3}/{:.3} ms loss {}/{}  iperf3 {:.3} Gbit/s retr {}",
                p.name, ping.min, ping.avg, ping.max, ping.lost, ping.sent, iperf.gbps, iperf.retransmits
            );
            res.entry(p.name).or_default().push((ping, iperf));
        }
    }
    let summary = |name: &str| {
        let v = &res[name];
        let min = v.iter().map(|(p, _)| p.min).fold(f64::INFINITY, f64::min);
        let avg = median(&v.iter().map(|(p, _)| p.avg).collect::<Vec<_>>());
        let gbps = median(&v.iter().map(|(_, i)| i.gbps).collect::<Vec<_>>());
        (min, avg, gbps)
    };
    let (l, h) = (summary("lanes"), summary("hand"));
    for (name, s) in [("lanes", l), ("hand", h)] {
        println!(
            "{name:<5} (over {rounds} rounds) rtt min {:.3} ms, median avg {:.3} ms; iperf3 median {:.3} Gbit/s",
            s.0, s.1, s.2
        );
    }
    // Each round's lanes and hand runs are back to back, so their ratio sees the same load.
    let paired: Vec<f64> = res["lanes"]
        .iter()
        .zip(&res["hand"])
        .map(|((_, a), (_, b))| a.gbps / b.gbps)
        .collect();
    println!(
        "ratio lanes/hand: rtt min {:.2}x  rtt avg {:.2}x  throughput {:.2}x (target >= 0.95: {}); per-round throughput ratios {} (median {:.2}x)",
        l.0 / h.0,
        l.1 / h.1,
        l.2 / h.2,
        if l.2 / h.2 >= 0.95 { "OK" } else { "BELOW" },
        paired.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" "),
        median(&paired)
    );

    // ---- 3. RSS --------------------------------------------------------------------------
    println!();
    println!("== 3. lanesd RSS ==");
    for (i, d) in daemons.iter().enumerate() {
        println!(
            "{}: idle {:.1} MB, with {} eth0+eth1 pods {:.1} MB, +{} eth0-only pods {:.1} MB",
            d.name,
            rss_idle[i],
            (ovn_pods.len() + 1 - i) / 2,
            rss_ovn[i],
            (plain_pods.len() + 1 - i) / 2,
            rss_all[i]
        );
    }

    // ---- DEL everything (timed) and look for leftovers -----------------------------------
    let mut ovn_del = Vec::new();
    for (i, pod) in ovn_pods.iter().enumerate() {
        ovn_del.push(pod_cni(&shim, &daemons[i % 2], "DEL", 'o', i, pod).0);
    }
    let mut plain_del = Vec::new();
    for (i, pod) in plain_pods.iter().enumerate() {
        plain_del.push(pod_cni(&shim, &daemons[i % 2], "DEL", 'p', i, pod).0);
    }
    println!();
    println!(
        "DEL p50/p99: eth0+eth1 {:.1}/{:.1} ms, eth0-only {:.1}/{:.1} ms",
        pct(&ovn_del, 0.5),
        pct(&ovn_del, 0.99),
        pct(&plain_del, 0.5),
        pct(&plain_del, 0.99)
    );
    let lsps = central.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"]);
    let left_lsps = lsps.split_whitespace().filter(|n| n.contains("obench")).count();
    let left_ports: usize = ovn_nodes
        .iter()
        .map(|o| {
            o.vsctl(&["list-ports", "br-int"])
                .lines()
                .filter(|p| p.starts_with("lov"))
                .count()
        })
        .sum();
    println!("leftovers after DEL: {left_lsps} LSPs, {left_ports} OVS ports on br-int");
    for d in daemons.iter_mut() {
        d.stop();
    }
    // OVN_BENCH_LOGS=<dir>: keep every daemon's log for a look afterwards.
    if let Ok(keep) = std::env::var("OVN_BENCH_LOGS") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        let dirs = [
            ("central", central.dir.clone()),
            ("node1", ovn_nodes[0].dir.clone()),
            ("node2", ovn_nodes[1].dir.clone()),
            ("lanesd", work.clone()),
        ];
        for (who, dir) in dirs {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    let _ = std::fs::copy(e.path(), keep.join(format!("{who}-{name}")));
                }
            }
        }
        println!("logs kept in {}", keep.display());
    }
    // Everything else goes with the locals, in reverse order of declaration.
}

// ---------------------------------------------------------------------------------------------

fn resources(n: usize) -> String {
    let mut s = String::from(
        r#"apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  natOutgoing: true
  nodeSelector: all()
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: yusur-ovn, namespace: default}
spec:
  config: '{"cniVersion":"0.3.1","name":"yusur-ovn","type":"ovn-k8s-cni-overlay","topology":"layer2","subnets":"10.144.0.0/16","excludeSubnets":"10.144.0.1/32","mtu":1400,"netAttachDefName":"default/yusur-ovn"}'
"#,
    );
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: obench-{i}\n  namespace: default\n  annotations:\n    k8s.v1.cni.cncf.io/networks: 'yusur-ovn@eth1'\n"
        ));
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pbench-{i}\n  namespace: default\n"
        ));
    }
    s
}

/// The median (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn hand_addr(i: usize) -> (String, String) {
    (format!("0a:58:0a:91:00:{:02x}", 10 + i), format!("10.145.0.{}", 10 + i))
}

fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// One lanesd in a node netns, under `setpriv --pdeathsig KILL` (so a killed benchmark takes
/// it along); SIGTERM on drop, then its BIRD (which outlives lanesd by design) by PID.
struct Lanesd {
    name: String,
    dir: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    ns: String,
    child: Option<Child>,
}

impl Lanesd {
    fn start(bin: &Path, work: &Path, store: &Path, ns: &Netns, ovn: &OvnNode, central: &OvnCentral) -> Lanesd {
        let dir = work.join(format!("run-{}", ovn.name));
        let sock = dir.join("lanes.sock");
        let log = work.join(format!("lanesd-{}.log", ovn.name));
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "setpriv", "--pdeathsig", "KILL"])
            .arg(bin)
            .args(["--node-name", &ovn.name, "--log-level", "warn"])
            .arg("--datastore-path")
            .arg(store)
            .arg("--socket")
            .arg(&sock)
            .arg("--run-dir")
            .arg(&dir)
            .args(["--primary-interface", "ens2", "--metrics", METRICS_ADDR])
            .args(["--ovn-enabled", "true", "--ovn-ovsdb", &ovn.ovs_db])
            .args([
                "--ovn-northbound",
                &central.nb_tcp(),
                "--ovn-southbound",
                &central.sb_tcp(),
            ])
            .args(["--ovn-encap-interface", "br-phy"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn lanesd");
        let mut d = Lanesd {
            name: ovn.name.clone(),
            dir,
            sock,
            log,
            ns: ns.name.clone(),
            child: Some(child),
        };
        let ok = wait_until(20, || std::os::unix::net::UnixStream::connect(&d.sock).is_ok());
        if !ok {
            let log = std::fs::read_to_string(&d.log).unwrap_or_default();
            d.stop();
            panic!("lanesd {} did not open its socket in 20s:\n{log}", d.name);
        }
        d
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"lanes","type":"lanes","socket":"{}"}}"#,
            self.sock.display()
        )
    }

    fn peers_up(&self, lanesctl: &Path) -> usize {
        let Ok(out) = Command::new(lanesctl)
            .arg("--socket")
            .arg(&self.sock)
            .args(["-o", "json", "node", "status"])
            .output()
        else {
            return 0;
        };
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["bgp"]["peers"].as_array().cloned())
            .map(|a| a.iter().filter(|p| p["state"] == "up").count())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // BIRD: only the PID whose command line names this node's control socket.
        let Some(pid) = std::fs::read_to_string(self.dir.join("bird.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return;
        };
        let ctl = self.dir.join("bird.ctl");
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|b| *b == 0).any(|a| a == ctl.as_os_str().as_encoded_bytes()))
            .unwrap_or(false);
        if ours {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Lanesd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- lanesd {} ({}) log tail ---\n{}",
                self.name,
                self.ns,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.stop();
    }
}

/// [`cni`] for pod `<kind>bench-<i>` (container ID `<kind><i>`): `o` with eth1, `p` eth0 only.
fn pod_cni(shim: &Path, d: &Lanesd, verb: &str, kind: char, i: usize, pod: &Netns) -> (f64, Value) {
    cni(
        shim,
        d,
        verb,
        &format!("{kind}{i}"),
        &format!("{kind}bench-{i}"),
        &pod.path(),
    )
}

/// Exec the shim as a runtime does (its own env, the config on stdin); (ms, result JSON).
/// The shim only talks to lanesd's unix socket, so it runs in this (root) netns and pays
/// no `ip netns exec`. Panics on failure: a benchmark of errors means nothing.
fn cni(shim: &Path, d: &Lanesd, verb: &str, id: &str, pod: &str, netns: &str) -> (f64, Value) {
    let t = Instant::now();
    let mut child = Command::new(shim)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID=uid-{pod}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lanes-cni");
    child.stdin.take().unwrap().write_all(d.conf().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "{verb} {pod} on {}: {}{}",
        d.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (ms, serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// The eth1 (yusur-ovn, 10.144/16) address in an ADD result.
fn eth1_ip(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find(|a| a.starts_with("10.144."))
        .map(|a| a.split('/').next().unwrap().to_string())
}

/// The counters of lanesd's metrics this benchmark reads.
#[derive(Default, Clone, Copy)]
struct Metrics {
    add_sum: f64,
    add_count: f64,
    install_sum: f64,
    install_count: f64,
}

impl Metrics {
    /// GET /metrics from lanesd inside `ns` (a thread that joins the netns; safe with nix).
    fn scrape(ns: &str) -> Metrics {
        let path = format!("/run/netns/{ns}");
        let text = std::thread::spawn(move || -> std::io::Result<String> {
            let f = std::fs::File::open(&path)?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let mut s = std::net::TcpStream::connect(METRICS_ADDR)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: lanesd\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .join()
        .unwrap()
        .unwrap_or_default();
        let get = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        Metrics {
            add_sum: get("lanes_cni_request_seconds_sum{verb=\"ADD\"}"),
            add_count: get("lanes_cni_request_seconds_count{verb=\"ADD\"}"),
            install_sum: get("lanes_ovn_install_wait_seconds_sum"),
            install_count: get("lanes_ovn_install_wait_seconds_count"),
        }
    }

    /// Both nodes' `b - a`, summed.
    fn delta(a: &[Metrics], b: &[Metrics]) -> Metrics {
        let z = |v: f64| if v.is_nan() { 0.0 } else { v };
        let mut d = Metrics::default();
        for (a, b) in a.iter().zip(b) {
            d.add_sum += z(b.add_sum) - z(a.add_sum);
            d.add_count += z(b.add_count) - z(a.add_count);
            d.install_sum += z(b.install_sum) - z(a.install_sum);
            d.install_count += z(b.install_count) - z(a.install_count);
        }
        d
    }

    fn add_mean_ms(&self) -> f64 {
        self.add_sum / self.add_count * 1000.0
    }

    fn install_mean_ms(&self) -> f64 {
        self.install_sum / self.install_count * 1000.0
    }
}

struct Ping {
    sent: u32,
    lost: u32,
    min: f64,
    avg: f64,
    max: f64,
}

struct Iperf {
    gbps: f64,
    retransmits: i64,
}

/// Two pods on different nodes, on one OVN logical switch.
struct Pair<'a> {
    name: &'static str,
    client: &'a Netns,
    server: &'a Netns,
    ifname: &'static str,
    client_ip: String,
    server_ip: String,
}

impl Pair<'_> {
    fn wait_reachable(&self) {
        // The remote chassis binds a port a moment after ours says ovn-installed.
        let ok = wait_until(15, || {
            self.client.exec(&["ping", "-c1", "-W1", &self.server_ip]).0
                && self.server.exec(&["ping", "-c1", "-W1", &self.client_ip]).0
        });
        assert!(
            ok,
            "{}: {} <-> {} not reachable in 15s",
            self.name, self.client_ip, self.server_ip
        );
    }

    /// MTU and TX offload state of both ends (P1 of the notes).
    fn describe(&self) -> String {
        let one = |ns: &Netns| {
            let (_, k) = ns.exec(&["ethtool", "-k", self.ifname]);
            let feat = |f: &str| {
                k.lines()
                    .find(|l| l.starts_with(f))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.split_whitespace().next().unwrap_or("?").to_string())
                    .unwrap_or_else(|| "?".into())
            };
            let (_, link) = ns.exec(&["cat", &format!("/sys/class/net/{}/mtu", self.ifname)]);
            format!(
                "{} mtu {} tx-checksumming {} tso {}",
                self.ifname,
                link.trim(),
                feat("tx-checksumming"),
                feat("tcp-segmentation-offload")
            )
        };
        format!("client {} | server {}", one(self.client), one(self.server))
    }

    fn ping(&self) -> Ping {
        let _ = self.client.exec(&["ping", "-q", "-c5", "-i", "0.01", &self.server_ip]);
        let (_, out) = self
            .client
            .exec(&["ping", "-q", "-c50", "-i", "0.01", "-W1", &self.server_ip]);
        let num = |s: &str| s.split_whitespace().next().and_then(|v| v.parse::<u32>().ok());
        let mut p = Ping {
            sent: 0,
            lost: 0,
            min: f64::NAN,
            avg: f64::NAN,
            max: f64::NAN,
        };
        for l in out.lines() {
            if l.contains("packets transmitted") {
                let parts: Vec<&str> = l.split(',').collect();
                p.sent = num(parts[0]).unwrap_or(0);
                p.lost = p.sent - parts.get(1).and_then(|s| num(s)).unwrap_or(0);
            }
            if let Some(rest) = l.strip_prefix("rtt min/avg/max/mdev = ") {
                let v: Vec<f64> = rest
                    .trim_end_matches(" ms")
                    .split('/')
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if v.len() >= 3 {
                    (p.min, p.avg, p.max) = (v[0], v[1], v[2]);
                }
            }
        }
        p
    }

    fn iperf(&self, secs: usize) -> Iperf {
        let port = "5201";
        // `ip netns exec` execs, so the child's PID is iperf3's; killed on drop.
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server.name,
                "iperf3",
                "-s",
                "-1",
                "-p",
                port,
                "-B",
                &self.server_ip,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        let mut server = common::Proc(server);
        let listening = wait_until(10, || {
            let (_, out) = self.server.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
            !out.trim().is_empty()
        });
        assert!(listening, "{}: iperf3 server did not listen", self.name);
        let secs = secs.to_string();
        let (_, out) = self.client.exec(&[
            "iperf3",
            "-c",
            &self.server_ip,
            "-p",
            port,
            "-t",
            &secs,
            "-J",
            "--connect-timeout",
            "3000",
        ]);
        server.stop();
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let gbps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9;
        if gbps == 0.0 {
            eprintln!("{}: iperf3 failed: {}", self.name, v["error"].as_str().unwrap_or(&out));
        }
        Iperf {
            gbps,
            retransmits: v["end"]["sum_sent"]["retransmits"].as_i64().unwrap_or(-1),
        }
    }
}
