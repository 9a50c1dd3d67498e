//! CNI latency: lanes-cni (+ lanesd) against Debian's ptp + host-local, in one
//! run, on the same machine, each plugin exec'd exactly as a runtime execs it
//! (fork+exec with the CNI env and stdin). Run inside a network namespace
//! that stands for the node (scripts/bench-cni.sh does this): lanesd and
//! ptp's host side both wire into it, so neither pays for an extra `ip netns
//! exec`.
//!
//! Sequential calls alternate between the two plugins pod by pod, so a
//! change in load during the run hits both alike.
//!
//! Prints p50/p99 for 200 sequential ADDs and DELs and 100 concurrent ADDs
//! and DELs, the wall time of the concurrent batch, the ratios, lanesd's RSS
//! after 100 pods, and cnidriver's in-process averages for both.
//!
//! Usage: cni-latency <lanes-cni> <lanesd> <cnidriver> <workdir>

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;
use common::{pct, rss_mb, Proc};
use std::thread;
use std::time::{Duration, Instant};

const SEQ: usize = 200;
const CONC: usize = 100;
/// ADD+DEL cycles of cnidriver's own in-process loop (libcni, as a runtime links it).
const CNIDRIVER_CYCLES: usize = 100;

struct Plugin {
    name: &'static str,
    bin: PathBuf,
    conf: String,
    env: Vec<(String, String)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: cni-latency <lanes-cni> <lanesd> <cnidriver> <workdir>");
        std::process::exit(2);
    }
    let (shim, lanesd, cnidriver, work) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
        PathBuf::from(&args[4]),
    );
    let store = work.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("pool.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: bench\nspec:\n  cidr: 10.244.0.0/16\n  blockSize: 26\n",
    )
    .unwrap();
    let sock = work.join("run/lanes.sock");
    let mut daemon = Proc(
        Command::new(&lanesd)
            .args(["--node-name", "bench", "--bgp-enabled", "false", "--log-level", "warn"])
            .arg("--datastore-path")
            .arg(&store)
            .arg("--socket")
            .arg(&sock)
            .arg("--run-dir")
            .arg(work.join("run"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lanesd"),
    );
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        thread::sleep(Duration::from_millis(10));
    }
    let lanes = Plugin {
        name: "lanes-cni",
        bin: shim.clone(),
        conf: format!(
            r#"{{"cniVersion":"1.0.0","name":"lanes","type":"lanes","socket":"{}"}}"#,
            sock.display()
        ),
        env: vec![],
    };
    let ptp = Plugin {
        name: "ptp+host-local",
        bin: "/usr/lib/cni/ptp".into(),
        conf: format!(
            r#"{{"cniVersion":"1.0.0","name":"ptpbench","type":"ptp","ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.88.0.0/16","dataDir":"{}"}}}}"#,
            work.join("host-local").display()
        ),
        env: vec![("CNI_PATH".into(), "/usr/lib/cni".into())],
    };
    // Each plugin has its own pods (both name the interface eth0).
    let half = SEQ.max(CONC);
    let pods = Pods::new(2 * half);
    let offsets = [0, half];
    // Sequential ADDs and DELs alternate between the two plugins, pod by pod,
    // so a change in the machine's load hits both alike.
    let (mut add, mut del) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for i in 0..SEQ {
        for (k, p) in [&ptp, &lanes].into_iter().enumerate() {
            add[k].push(exec(p, "ADD", &format!("seq{i}"), &pods.path(offsets[k] + i)));
        }
    }
    for i in 0..SEQ {
        for (k, p) in [&ptp, &lanes].into_iter().enumerate() {
            del[k].push(exec(p, "DEL", &format!("seq{i}"), &pods.path(offsets[k] + i)));
        }
    }
    let mut rows = Vec::new();
    let mut rss = 0.0;
    for (k, p) in [&ptp, &lanes].into_iter().enumerate() {
        rows.push(measure(
            p,
            &pods,
            offsets[k],
            std::mem::take(&mut add[k]),
            std::mem::take(&mut del[k]),
        ));
        if p.name == "lanes-cni" {
            // RSS with 100 pods attached.
            for i in 0..CONC {
                exec(p, "ADD", &format!("rss{i}"), &pods.path(half + i));
            }
            rss = rss_mb(daemon.0.id());
            println!("lanesd RSS after {CONC} pods: {rss:.1} MB");
            for i in 0..CONC {
                exec(p, "DEL", &format!("rss{i}"), &pods.path(half + i));
            }
        }
    }
    println!();
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>11}",
        "plugin",
        "ADD p50",
        "ADD p99",
        "DEL p50",
        "DEL p99",
        "cADD p50",
        "cADD p99",
        "cDEL p50",
        "cDEL p99",
        "100 ADDs"
    );
    for r in &rows {
        println!(
            "{:<16} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>9.0}ms",
            r.name, r.add.0, r.add.1, r.del.0, r.del.1, r.cadd.0, r.cadd.1, r.cdel.0, r.cdel.1, r.cwall
        );
    }
    let (p, l) = (&rows[0], &rows[1]);
    println!();
    println!(
        "ratio lanes/ptp: ADD p50 {:.2}x  DEL p50 {:.2}x  concurrent ADD p50 {:.2}x  100 concurrent ADDs wall {:.2}x",
        l.add.0 / p.add.0,
        l.del.0 / p.del.0,
        l.cadd.0 / p.cadd.0,
        l.cwall / p.cwall
    );
    // VERSION, exec → exit: what every runtime pays before it trusts a plugin. The shim
    // answers it itself, without the daemon.
    let mut version = [Vec::new(), Vec::new()];
    for i in 0..SEQ {
        for (k, p) in [&ptp, &lanes].into_iter().enumerate() {
            version[k].push(exec(p, "VERSION", &format!("v{i}"), ""));
        }
    }
    let (vp, vl) = (
        pct2(std::mem::take(&mut version[0])),
        pct2(std::mem::take(&mut version[1])),
    );
    println!(
        "VERSION exec→exit: ptp p50 {:.2}ms p99 {:.2}ms, lanes-cni p50 {:.2}ms p99 {:.2}ms",
        vp.0, vp.1, vl.0, vl.1
    );
    let size = std::fs::metadata(&shim).map(|m| m.len()).unwrap_or(0);
    // The issue's floors, each judged on this run.
    println!();
    for (what, ok) in [
        (format!("shim size {size} bytes ≤ 1 MB (1048576)"), size <= 1 << 20),
        (format!("VERSION p50 {:.2}ms ≤ 3ms", vl.0), vl.0 <= 3.0),
        (format!("ADD p50 {:.2}ms ≤ 5ms", l.add.0), l.add.0 <= 5.0),
        (
            format!("ADD p50 {:.2}x ptp ≤ 0.3x", l.add.0 / p.add.0),
            l.add.0 / p.add.0 <= 0.3,
        ),
        (
            format!("DEL p50 {:.2}x ptp ≤ 0.8x", l.del.0 / p.del.0),
            l.del.0 / p.del.0 <= 0.8,
        ),
        (
            format!("{CONC} concurrent ADDs in {:.0}ms ≤ 2000ms", l.cwall),
            l.cwall <= 2000.0,
        ),
        (format!("lanesd RSS after {CONC} pods {rss:.1} MB ≤ 30 MB"), rss <= 30.0),
    ] {
        println!("floor: {} {what}", if ok { "OK  " } else { "OVER" });
    }
    println!();
    // libcni's own in-process loop, for the "under cnidriver" view.
    let mut avgs = Vec::new();
    for (name, conf) in [("ptp+host-local", &ptp.conf), ("lanes-cni", &lanes.conf)] {
        let conf_path = work.join(format!("{}.conf", name.replace('+', "-")));
        std::fs::write(&conf_path, conf).unwrap();
        let bin_dir = work.join("cni-bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let _ = std::fs::copy(&shim, bin_dir.join("lanes"));
        let out = Command::new(&cnidriver)
            .arg("-conf")
            .arg(&conf_path)
            .arg("-path")
            .arg(format!("{}:/usr/lib/cni", bin_dir.display()))
            .arg("-cache-dir")
            .arg(work.join("cache"))
            .args(["-netns", &pods.path(0), "-n", &CNIDRIVER_CYCLES.to_string(), "bench"])
            .output()
            .expect("cnidriver bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("cnidriver bench -n {CNIDRIVER_CYCLES} {name}: {}", stdout.trim());
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        avgs.push((report["add_avg_ms"].as_f64(), report["del_avg_ms"].as_f64()));
    }
    if let [(Some(pa), Some(pd)), (Some(la), Some(ld))] = avgs[..] {
        println!(
            "under cnidriver (libcni in process, ADD+DEL of one pod {CNIDRIVER_CYCLES} times, averages): \
             ADD {la:.2} vs {pa:.2} ms = {:.2}x, DEL {ld:.2} vs {pd:.2} ms = {:.2}x",
            la / pa,
            ld / pd
        );
    }
    daemon.stop();
}

struct Row {
    name: &'static str,
    add: (f64, f64),
    del: (f64, f64),
    cadd: (f64, f64),
    cdel: (f64, f64),
    cwall: f64,
}

/// The concurrent batches of one plugin, with its sequential samples.
fn measure(p: &Plugin, pods: &Pods, offset: usize, add: Vec<f64>, del: Vec<f64>) -> Row {
    let run_batch = |verb: &'static str| {
        let start = Instant::now();
        let threads: Vec<_> = (0..CONC)
            .map(|i| {
                let (bin, conf, env, path) = (p.bin.clone(), p.conf.clone(), p.env.clone(), pods.path(offset + i));
                let plugin = Plugin {
                    name: "",
                    bin,
                    conf,
                    env,
                };
                thread::spawn(move || exec(&plugin, verb, &format!("conc{i}"), &path))
            })
            .collect();
        let lat: Vec<f64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        (lat, start.elapsed().as_secs_f64() * 1000.0)
    };
    let (cadd, cwall) = run_batch("ADD");
    let (cdel, _) = run_batch("DEL");
    let row = Row {
        name: p.name,
        add: pct2(add),
        del: pct2(del),
        cadd: pct2(cadd),
        cdel: pct2(cdel),
        cwall,
    };
    eprintln!("measured {}", p.name);
    row
}

/// One plugin exec; panics on failure (a benchmark of errors is meaningless).
fn exec(p: &Plugin, verb: &str, id: &str, netns: &str) -> f64 {
    let start = Instant::now();
    let mut child = Command::new(&p.bin)
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child.stdin.take().unwrap().write_all(p.conf.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "{} {verb} {id}: {}",
        p.name,
        String::from_utf8_lossy(&out.stdout)
    );
    ms
}

fn pct2(v: Vec<f64>) -> (f64, f64) {
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// Pod namespaces for the run, removed on drop.
struct Pods(Vec<String>);

impl Pods {
    fn new(n: usize) -> Pods {
        let names: Vec<String> = (0..n)
            .map(|i| format!("lanes-bench-{}-{i}", std::process::id()))
            .collect();
        for n in &names {
            let ok = Command::new("ip")
                .args(["netns", "add", n])
                .status()
                .map(|s| s.success());
            assert!(matches!(ok, Ok(true)), "ip netns add {n}");
        }
        Pods(names)
    }
    fn path(&self, i: usize) -> String {
        format!("/run/netns/{}", self.0[i])
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}
