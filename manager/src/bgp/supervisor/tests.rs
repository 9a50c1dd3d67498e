//! Supervisor tests. The ones with a real BIRD need root and `bird`; they run BIRD in network
//! namespaces they create (unique names, deleted by [`Lab`]'s Drop) and skip with a printed
//! reason when root or `bird` is missing, unless `CI=true`, where they fail instead.

use std::process::Command;

use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::*;

#[test]
fn backoff_doubles_caps_and_resets() {
    let mut b = Backoff::default();
    let quick = Duration::from_secs(1);
    let delays: Vec<u128> = (0..9).map(|_| b.next_delay(quick).as_millis()).collect();
    assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert_eq!(b.next_delay(Duration::from_secs(60)), Duration::from_millis(500));
    assert_eq!(b.next_delay(Duration::from_secs(59)), Duration::from_secs(1));
}

/// Whether `bird` can run here; a printed skip, or a failure under `CI=true`.
fn bird_available(test: &str, need_root: bool) -> bool {
    let why = if need_root && !nix::unistd::Uid::effective().is_root() {
        Some("needs root".to_string())
    } else {
        Command::new("bird")
            .arg("--version")
            .output()
            .err()
            .map(|e| format!("bird is not installed ({e})"))
    };
    match why {
        None => true,
        Some(w) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true but {test} cannot run: {w}"),
        Some(w) => {
            eprintln!("skipping {test}: {w}");
            false
        }
    }
}

fn cfg(run_dir: &Path, netns: Option<PathBuf>) -> BirdConfig {
    BirdConfig {
        bird_path: "bird".into(),
        run_dir: run_dir.to_path_buf(),
        netns,
    }
}

#[tokio::test]
async fn a_rejected_config_never_replaces_the_good_one() {
    if !bird_available("a_rejected_config_never_replaces_the_good_one", false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(cfg(dir.path(), None));
    fs::write(dir.path().join("bird.conf"), "router id 1.1.1.1;\n").unwrap();
    let err = sup
        .apply("router id 1.2.3.4;\nprotocol nonsense {}\n")
        .await
        .unwrap_err();
    let BirdError::Rejected(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("bird.conf.rejected:2:"), "{msg}");
    assert_eq!(
        fs::read_to_string(dir.path().join("bird.conf")).unwrap(),
        "router id 1.1.1.1;\n"
    );
    assert!(dir.path().join("bird.conf.rejected").exists());
    let m = sup.metrics();
    assert_eq!((m.applies_ok, m.applies_failed, m.pid), (0, 1, None));
    assert!(m.last_error.unwrap().contains("syntax error"));

    let missing = Supervisor::new(BirdConfig {
        bird_path: "/nonexistent/bird".into(),
        ..cfg(dir.path(), None)
    });
    let err = missing.apply("router id 1.1.1.1;\n").await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/bird"), "{err}");
}

/// Two network namespaces joined by a veth (A 10.233.0.1, B 10.233.0.2), and maybe a BIRD in B
/// that originates 10.250.1.0/26. Drop kills every process left in them and deletes them.
struct Lab {
    a: String,
    b: String,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PEER_B: &str = "router id 10.233.0.2;
protocol device {}
protocol static blocks { ipv4; route 10.250.1.0/26 blackhole; }
protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; learn; persist; graceful restart; }
protocol bgp Mesh_10_233_0_1 { local 10.233.0.2 as 64512; neighbor 10.233.0.1 as 64512; direct; passive on;
  graceful restart; ipv4 { import all; export where source = RTS_STATIC; }; }
";

/// Node A's config, with `extra` appended.
fn conf_a(extra: &str) -> String {
    format!(
        "log stderr all;
router id 10.233.0.1;
protocol device {{}}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; learn; persist; scan time 2;
  graceful restart; merge paths on; }}
protocol static blocks {{ ipv4; route 10.250.0.0/26 blackhole; }}
protocol bgp Mesh_10_233_0_2 {{ local 10.233.0.1 as 64512; neighbor 10.233.0.2 as 64512; direct;
  graceful restart; connect delay time 1; connect retry time 2; error wait time 1,5;
  ipv4 {{ import all; export where source = RTS_STATIC; }}; }}
{extra}"
    )
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = format!("lsv{}{tag}", std::process::id());
        let lab = Lab {
            a: format!("{id}a"),
            b: format!("{id}b"),
            dir: tempfile::tempdir().unwrap(),
        };
        ip(&["netns", "add", &lab.a]);
        ip(&["netns", "add", &lab.b]);
        ip(&[
            "-n", &lab.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", &lab.b,
        ]);
        for (ns, addr) in [(&lab.a, "10.233.0.1/24"), (&lab.b, "10.233.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", "veth0"]);
            ip(&["-n", ns, "link", "set", "veth0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("a")
    }

    fn cfg(&self) -> BirdConfig {
        cfg(&self.run_dir(), Some(format!("/run/netns/{}", self.a).into()))
    }

    fn start_peer(&self) {
        let d = self.dir.path();
        fs::write(d.join("b.conf"), PEER_B).unwrap();
        let b = |f: &str| d.join(f).to_string_lossy().into_owned();
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.b,
                "bird",
                "-c",
                &b("b.conf"),
                "-s",
                &b("b.ctl"),
                "-P",
                &b("b.pid"),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "peer bird did not start");
    }

    fn routes(&self, ns: &str) -> String {
        ip(&["-n", ns, "route", "show", "proto", "bird"])
    }

    async fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..300 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "timed out waiting for {what}; A: {} B: {}",
            self.routes(&self.a),
            self.routes(&self.b)
        );
    }
}

impl Lab {
    async fn text(ctl: &Path, command: &str) -> String {
        match BirdCtl::connect(ctl, Duration::from_secs(2)).await {
            Ok(mut c) => c
                .command(command)
                .await
                .map(|r| super::super::birdctl::reply_text(&r))
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn wait_for_graceful_restart_done(&self, sup: &Supervisor) {
        let b_ctl = self.dir.path().join("b.ctl");
        for _ in 0..150 {
            let a = Self::text(&sup.config().ctl_path(), "show status").await;
            let b = Self::text(&b_ctl, "show protocols all Mesh_10_233_0_1").await;
            if a.contains("up and running")
                && !a.contains("recovery")
                && b.contains("Established")
                && !b.contains("graceful restart active")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("graceful restart did not finish");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let pids = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            for pid in String::from_utf8_lossy(&pids)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test]
async fn apply_starts_reconfigures_rejects_and_debounces() {
    if !bird_available("apply_starts_reconfigures_rejects_and_debounces", true) {
        return;
    }
    let lab = Lab::new("x");
    let sup = Supervisor::new(lab.cfg());
    let base = conf_a("");
    assert_eq!(sup.apply(&base).await, Ok(Applied::Started));
    let pid = sup.metrics().pid.expect("a pid");
    assert!(
        !cmdline(pid).contains(" -R"),
        "fresh start without -R: {}",
        cmdline(pid)
    );
    assert_eq!(sup.apply(&base).await, Ok(Applied::Unchanged));

    let extra = conf_a("protocol static extra { ipv4; route 10.251.0.0/24 blackhole; }\n");
    assert_eq!(sup.apply(&extra).await, Ok(Applied::Reconfigured));
    assert_eq!(sup.metrics().pid, Some(pid));
    let mut ctl = sup.ctl().await.unwrap();
    let names: Vec<String> = ctl
        .show_protocols_all()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        names.contains(&"extra".to_string()) && names.contains(&"Mesh_10_233_0_2".to_string()),
        "{names:?}"
    );
    let filter = super::super::birdctl::RouteFilter {
        protocol: Some("extra".into()),
        ..Default::default()
    };
    let routes = ctl.show_route(&filter).await.unwrap();
    assert_eq!(
        (routes[0].prefix.as_str(), routes[0].kind.as_str()),
        ("10.251.0.0/24", "blackhole")
    );

    let err = sup
        .apply(&format!(
            "{extra}protocol static {{ ipv4; route 10.0.0.0/33 blackhole; }}\n"
        ))
        .await;
    let Err(BirdError::Rejected(msg)) = err else {
        panic!("{err:?}")
    };
    let line = extra.lines().count() + 1;
    assert!(
        msg.contains(&format!("bird.conf.rejected:{line}:")),
        "line {line} in {msg}"
    );
    assert_eq!(fs::read_to_string(lab.run_dir().join("bird.conf")).unwrap(), extra);
    assert_eq!(sup.metrics().pid, Some(pid));
    assert!(ctl
        .show_protocols_all()
        .await
        .unwrap()
        .iter()
        .any(|p| p.name == "extra"));

    // Five applies at once: one `bird -p` and one `configure`, with the last text.
    let before = sup.metrics().applies_ok;
    let texts: Vec<String> = (1..=5)
        .map(|i| conf_a(&format!("protocol static s{i} {{ ipv4; }}\n")))
        .collect();
    let (r1, r2, r3, r4, r5) = tokio::join!(
        sup.apply(&texts[0]),
        sup.apply(&texts[1]),
        sup.apply(&texts[2]),
        sup.apply(&texts[3]),
        sup.apply(&texts[4])
    );
    for r in [r1, r2, r3, r4, r5] {
        assert_eq!(r, Ok(Applied::Reconfigured));
    }
    assert_eq!(sup.metrics().applies_ok, before + 1);
    assert_eq!(fs::read_to_string(lab.run_dir().join("bird.conf")).unwrap(), texts[4]);
    assert_eq!(sup.metrics().pid, Some(pid));

    sup.stop_with(StopMode::Withdraw).await;
    assert!(!alive(pid));
    assert_eq!(sup.apply(&base).await, Err(BirdError::Stopped));
}

#[tokio::test]
async fn crash_restart_recovery_stop_and_stale_bird() {
    if !bird_available("crash_restart_recovery_stop_and_stale_bird", true) {
        return;
    }
    let lab = Lab::new("y");
    lab.start_peer();
    let conf = conf_a("");
    let sup = Arc::new(Supervisor::new(lab.cfg()));
    assert_eq!(sup.apply(&conf).await, Ok(Applied::Started));
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner = tokio::spawn(sup.clone().run(stop_rx));
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.wait_for("A to learn B's block", || lab.routes(&a).contains("10.250.1.0/26"))
        .await;
    lab.wait_for("B to learn A's block", || lab.routes(&b).contains("10.250.0.0/26"))
        .await;

    // kill -9: the supervisor restarts BIRD with -R; the learned route never leaves the kernel.
    let pid1 = sup.metrics().pid.unwrap();
    kill(Pid::from_raw(pid1 as i32), Signal::SIGKILL).unwrap();
    let t0 = Instant::now();
    let mut pid2 = None;
    while t0.elapsed() < Duration::from_secs(10) {
        assert!(
            lab.routes(&a).contains("10.250.1.0/26"),
            "route lost {:?} after the kill",
            t0.elapsed()
        );
        pid2 = sup.metrics().pid.filter(|p| *p != pid1);
        if pid2.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid2 = pid2.expect("bird restarted");
    assert!(t0.elapsed() < Duration::from_secs(3), "restart took {:?}", t0.elapsed());
    assert!(cmdline(pid2).contains(" -R"), "{}", cmdline(pid2));
    assert_eq!(sup.metrics().restarts, 1);
    let established = || async {
        let ps = sup.ctl().await.ok()?.show_protocols_all().await.ok()?;
        ps.iter()
            .find(|p| p.name == "Mesh_10_233_0_2")
            .map(|p| p.info == "Established")
    };
    for _ in 0..300 {
        if established().await == Some(true) {
            break;
        }
        assert!(lab.routes(&a).contains("10.250.1.0/26"), "route lost during recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(established().await, Some(true));
    // A second restart while B still waits for the first one's End-of-RIB (up to ~4 s, the BIRD
    // 2.0.12 tail) makes B drop the stale routes (RFC 4724): wait until both sides are done.
    lab.wait_for_graceful_restart_done(&sup).await;

    // lanesd stops: BIRD ends by `graceful restart`; A keeps the kernel route, B keeps A's.
    sup.stop().await;
    // The runner may already have returned after stop(), dropping the receiver.
    let _ = stop_tx.send(true);
    runner.await.unwrap();
    assert!(!alive(pid2));
    assert_eq!(sup.metrics().restarts, 1);
    assert!(lab.routes(&a).contains("10.250.1.0/26"), "persist: {}", lab.routes(&a));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        lab.routes(&b).contains("10.250.0.0/26"),
        "peer kept our route: {}",
        lab.routes(&b)
    );

    // lanesd starts again and finds `proto bird` routes: -R.
    let sup2 = Supervisor::new(lab.cfg());
    assert_eq!(sup2.apply(&conf).await, Ok(Applied::Started));
    let pid3 = sup2.metrics().pid.unwrap();
    assert!(cmdline(pid3).contains(" -R"), "{}", cmdline(pid3));

    // lanesd dies without stopping BIRD; the next one replaces that BIRD (only that PID).
    drop(sup2);
    let sup3 = Supervisor::new(lab.cfg());
    assert_eq!(sup3.apply(&conf).await, Ok(Applied::Started));
    let pid4 = sup3.metrics().pid.unwrap();
    assert!(pid4 != pid3 && !alive(pid3) && cmdline(pid4).contains(" -R"));
    assert!(lab.routes(&a).contains("10.250.1.0/26"));

    // Withdraw: A's kernel routes stay (persist), B drops A's block at once.
    // (Once the sessions are back: a BIRD still recovering has no session to send the Cease on.)
    lab.wait_for_graceful_restart_done(&sup3).await;
    sup3.stop_with(StopMode::Withdraw).await;
    assert!(!alive(pid4));
    lab.wait_for("B to withdraw A's block", || !lab.routes(&b).contains("10.250.0.0/26"))
        .await;
    assert!(
        lab.routes(&a).contains("10.250.1.0/26"),
        "persist after SIGTERM: {}",
        lab.routes(&a)
    );
}

#[tokio::test]
async fn routes_bird_left_in_the_kernel_are_found_over_netlink() {
    if !bird_available("routes_bird_left_in_the_kernel_are_found_over_netlink", true) {
        return;
    }
    let lab = Lab::new("rt");
    let in_a = |args: &str| {
        let mut full = vec!["-n", lab.a.as_str()];
        full.extend(args.split_whitespace());
        ip(&full);
    };
    let cfg = lab.cfg();
    let found = || process::kernel_has_bird_routes(&cfg);
    assert!(!found().await, "a fresh netns has none");
    in_a("route add 10.77.0.0/24 dev veth0 proto static");
    assert!(!found().await, "only proto bird counts");
    in_a("route add 10.78.0.0/24 dev veth0 proto bird");
    assert!(found().await);
    in_a("route del 10.78.0.0/24 dev veth0 proto bird");
    in_a("-6 route add fd77::/64 dev veth0 proto bird");
    assert!(found().await, "IPv6 too");
}
