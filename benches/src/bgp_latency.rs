//! BGP benchmark (not a test), in one run:
//!
//! 1. ADD → route on the ToR: a node (lanesd + its BIRD) peers with a BIRD
//!    ToR; the pool has /32 blocks, so every ADD claims a fresh block. For 20
//!    ADDs, the time from exec'ing the shim to the block being in the ToR's
//!    table (polled over the ToR's control socket every 2 ms). Reference in
//!    the same run: BIRD alone — a static route added to the node's BIRD with
//!    `configure`, to the ToR — which is the floor under lanesd's part.
//! 2. build + render + `bird -p` + apply for 1,000 peers and 5,000 blocks.
//! 3. lanesd and bird RSS with 1,000 routes learned from the ToR.
//!
//! Usage (inside no netns; it makes its own): bgp-latency <lanes-cni> <lanesd> <workdir>

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{pct, rss_mb, Proc};
use std::time::{Duration, Instant};

use lanes_manager::bgp::birdctl::BirdCtl;
use lanes_manager::bgp::supervisor::{BirdConfig, Supervisor};

const ROUNDS: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: bgp-latency <lanes-cni> <lanesd> <workdir>");
        std::process::exit(2);
    }
    let (shim, lanesd, work) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = Lab::new(&work);
    let tor_ctl = work.join("tor.ctl");
    let _tor = lab.bird_in(&lab.tor, &work.join("tor.conf"), &tor_ctl, &tor_conf());

    // lanesd on the node, peering with the ToR.
    let store = work.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("r.yaml"), RESOURCES).unwrap();
    let sock = work.join("run/lanes.sock");
    let mut daemon = Proc(
        Command::new("ip")
            .args(["netns", "exec", &lab.node])
            .arg(&lanesd)
            .args([
                "--node-name",
                "bench1",
                "--primary-interface",
                "ens2",
                "--log-level",
                "warn",
            ])
            .arg("--datastore-path")
            .arg(&store)
            .arg("--socket")
            .arg(&sock)
            .arg("--run-dir")
            .arg(work.join("run"))
            .spawn()
            .expect("lanesd"),
    );
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut tor = connect(&tor_ctl).await;
            if tor
                .command("show protocols")
                .await
                .map(|r| text(&r).contains("Established"))
                .unwrap_or(false)
            {
                break;
            }
            assert!(Instant::now() < deadline, "node session never came up on the ToR");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut lanes = Vec::new();
        for i in 0..ROUNDS {
            let pod = Netns::new(&format!("lbb-pod{i}"));
            let t0 = Instant::now();
            let out = add(&shim, &sock, &format!("bgp{i}"), &pod.path());
            let ip = out["ips"][0]["address"].as_str().expect("ADD result").to_string();
            let mut tor = connect(&tor_ctl).await;
            loop {
                if let Ok(r) = tor.command(&format!("show route {ip}")).await {
                    if text(&r).contains(ip.split('/').next().unwrap()) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                assert!(t0.elapsed() < Duration::from_secs(20), "{ip} never reached the ToR");
            }
            lanes.push(t0.elapsed().as_secs_f64() * 1000.0);
            std::mem::forget(pod); // removed with the lab
        }
        // BIRD alone: a static route added to the node's BIRD config and applied with configure.
        let node_conf = work.join("run/bird.conf");
        let base = std::fs::read_to_string(&node_conf).unwrap();
        let mut node_ctl = connect(&work.join("run/bird.ctl")).await;
        let mut bird_only = Vec::new();
        for i in 0..ROUNDS {
            let prefix = format!("10.99.{i}.0/24");
            let conf = base.replace(
                "protocol static lanes_originate {\n  ipv4;",
                &format!("protocol static lanes_originate {{\n  ipv4;\n  route {prefix} blackhole;"),
            );
            let path = work.join(format!("bird-only-{i}.conf"));
            std::fs::write(&path, conf).unwrap();
            let t0 = Instant::now();
            node_ctl.configure(&path).await.expect("configure");
            let mut tor = connect(&tor_ctl).await;
            loop {
                if let Ok(r) = tor.command(&format!("show route {prefix}")).await {
                    if text(&r).contains(&prefix) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                assert!(t0.elapsed() < Duration::from_secs(20), "{prefix} never reached the ToR");
            }
            bird_only.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        node_ctl.configure(&node_conf).await.ok();
        report("ADD -> block route on the BIRD ToR (lanes-cni, lanesd, bird)", &lanes);
        report("BIRD only: configure -> route on the ToR", &bird_only);
        let (l, b) = (pct(&lanes, 0.5), pct(&bird_only, 0.5));
        println!(
            "  ratio p50 lanes/BIRD-only: {:.2}x (lanesd's own share ≈ {:.0} ms)",
            l / b,
            l - b
        );

        // 1,000 routes learned from the ToR: RSS of lanesd and the node's bird.
        connect(&tor_ctl).await.command("enable bulk").await.ok();
        wait_until("1000 routes learned", 60, || async {
            let out = Command::new("ip")
                .args(["netns", "exec", &lab.node, "ip", "route", "show", "proto", "bird"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("172."))
                .count()
                >= 1000
        })
        .await;
        let bird_pid: u32 = std::fs::read_to_string(work.join("run/bird.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        println!(
            "RSS with 1000 learned routes: lanesd {:.1} MB, bird {:.1} MB",
            rss_mb(daemon.0.id()),
            rss_mb(bird_pid)
        );
    });
    daemon.stop();

    // Render + check + apply at scale, on a BIRD of its own in the node netns.
    rt.block_on(scale(&lab, &work));
}

async fn scale(lab: &Lab, work: &Path) {
    use lanes_manager::bgp::{build, render, Input};
    use lanes_manager::resources::{parse_documents, Resources};
    let mut yaml = String::from(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 64512, nodeToNodeMeshEnabled: false}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: big}\nspec: {cidr: 10.0.0.0/8, blockSize: 26}\n",
    );
    for i in 0..1000 {
        yaml.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: p{i}}}\nspec: {{peerIP: 100.{}.{}.1, asNumber: {}}}\n",
            i / 250,
            i % 250,
            65000 + (i % 100)
        ));
    }
    let (docs, rejected) = parse_documents("scale.yaml", &yaml);
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut res = Resources::default();
    for d in docs {
        res.insert(d);
    }
    let t0 = Instant::now();
    let mut input = Input::new(&res, "scale");
    input.node_address = Some("192.168.50.2".parse().unwrap());
    input.blocks = (0..5000u32)
        .map(|i| ipnet::IpNet::new(IpAddr::V4((0x0a00_0000 + i * 64).into()), 26).unwrap())
        .collect();
    let desired = build(&input).expect("build");
    let text = render(&desired);
    let rendered = t0.elapsed();
    let run_dir = work.join("scale-run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let sup = Supervisor::new(BirdConfig {
        bird_path: "bird".into(),
        run_dir: run_dir.clone(),
        netns: Some(PathBuf::from(format!("/run/netns/{}", lab.node))),
    });
    let t1 = Instant::now();
    sup.apply(&text).await.expect("first apply (check + start)");
    let started = t1.elapsed();
    let changed = text.replace(
        "route 10.0.0.0/26 blackhole;",
        "route 10.0.0.0/26 blackhole;\n  route 10.255.255.0/26 blackhole;",
    );
    let t2 = Instant::now();
    sup.apply(&changed).await.expect("reconfigure");
    let reconf = t2.elapsed();
    println!(
        "1000 peers + 5000 blocks: build+render {:.0} ms ({} KB), check+start {:.0} ms, check+configure {:.0} ms",
        rendered.as_secs_f64() * 1000.0,
        text.len() / 1024,
        started.as_secs_f64() * 1000.0,
        reconf.as_secs_f64() * 1000.0
    );
    sup.stop().await;
}

const RESOURCES: &str = "apiVersion: lanes.dev/v1
kind: IPPool
metadata: {name: bench}
spec: {cidr: 10.50.0.0/24, blockSize: 32}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 63400, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.168.50.1, asNumber: 63400}
";

fn tor_conf() -> String {
    let mut bulk = String::new();
    for i in 0..1000 {
        bulk.push_str(&format!("  route 172.{}.{}.0/24 blackhole;\n", 16 + i / 250, i % 250));
    }
    format!(
        "router id 192.168.50.1;\nprotocol device {{}}\n\
         protocol static bulk {{ disabled; ipv4; \n{bulk}}}\n\
         protocol bgp node {{ local as 63400; neighbor 192.168.50.2 as 63400; rr client; passive on;\n  ipv4 {{ import all; export all; }};\n}}\n"
    )
}

struct Lab {
    tor: String,
    node: String,
}

impl Lab {
    fn new(_work: &Path) -> Lab {
        let id = std::process::id();
        let (tor, node) = (format!("lbb-tor-{id}"), format!("lbb-node-{id}"));
        for ns in [&tor, &node] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "-n", &tor, "link", "add", "eth0", "type", "veth", "peer", "name", "ens2", "netns", &node,
        ]);
        sh(&["ip", "-n", &tor, "addr", "add", "192.168.50.1/24", "dev", "eth0"]);
        sh(&["ip", "-n", &node, "addr", "add", "192.168.50.2/24", "dev", "ens2"]);
        sh(&["ip", "-n", &tor, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &node, "link", "set", "ens2", "up"]);
        Lab { tor, node }
    }

    fn bird_in(&self, ns: &str, conf: &Path, ctl: &Path, text: &str) -> Proc {
        std::fs::write(conf, text).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(conf)
            .arg("-s")
            .arg(ctl)
            .stderr(Stdio::null())
            .spawn()
            .expect("bird");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctl.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Proc(child)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with("lbb-") && name.ends_with(&std::process::id().to_string())
                || name.starts_with("lbb-pod")
            {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.tor]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.node]).status();
    }
}

struct Netns(String);

impl Netns {
    fn new(name: &str) -> Netns {
        sh(&["ip", "netns", "add", name]);
        Netns(name.into())
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0]).args(&args[1..]).status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "{args:?}");
}

fn add(shim: &Path, sock: &Path, id: &str, netns: &str) -> serde_json::Value {
    let env: HashMap<&str, String> = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", id.into()),
        ("CNI_NETNS", netns.into()),
        ("CNI_IFNAME", "eth0".into()),
        ("LANES_SOCKET", sock.display().to_string()),
    ]
    .into_iter()
    .collect();
    let mut child = Command::new(shim)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

async fn connect(path: &Path) -> BirdCtl {
    BirdCtl::connect(path, Duration::from_secs(5))
        .await
        .expect("bird control socket")
}

fn text(reply: &lanes_manager::bgp::birdctl::Reply) -> String {
    lanes_manager::bgp::birdctl::reply_text(reply)
}

async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(what: &str, v: &[f64]) {
    println!(
        "{what}: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms (n={})",
        pct(v, 0.5),
        pct(v, 0.9),
        pct(v, 1.0),
        v.len()
    );
}
