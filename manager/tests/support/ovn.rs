//! Real OVN on one machine, nodes as network namespaces (the recipe and pitfalls P1–P10 of
//! `shared/notes/ovn-lab.md`).
//!
//! * [`OvnCentral`]: NB and SB ovsdb-servers plus ovn-northd in a netns of their own, plugged
//!   into an underlay [`Switch`]. NB/SB listen on TCP (6641/6642 on the central IP) and on
//!   unix sockets, which also work from any netns (they are paths).
//! * [`OvnNode`]: in an existing node netns (the caller's), ovsdb-server + ovs-vswitchd with
//!   the userspace `netdev` datapath (there is no openvswitch kernel module here), `br-phy`
//!   holding the underlay IP (P2) with `ens3` in it, `br-int`, and ovn-controller.
//! * [`prime_tunnels`] fills the userspace tunnel-neighbour caches (P4).
//! * [`OvnNode::plug_pod`] attaches a hand-made pod netns to `br-int` for a logical port.
//!
//! Every daemon runs in the foreground as a child of the test (`ip netns exec` execs, so the
//! child's PID is the daemon's), under `setpriv --pdeathsig KILL`, so even a SIGKILLed test
//! leaves none behind. Drop ends each one by PID (SIGTERM, then SIGKILL after 2 s) and reaps
//! it, then removes the instance dir. Nothing uses `--detach`, so a daemon that never becomes
//! ready (P8) is a readiness timeout and a panic with its log, not a hung test.
//!
//! Drop order: an [`OvnNode`] ends ovn-controller, ovs-vswitchd, then ovsdb-server. Declare
//! the [`Switch`], then the [`OvnCentral`], then the node [`Netns`]es, then the [`OvnNode`]s
//! (then pods), so that locals drop nodes first, node netns after their daemons are gone (a
//! netns with a live process in it outlives `ip netns del`), and central last.
//!
//! On a panic each daemon's log tail is printed as it is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{run, Netns, Switch};

pub const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
pub const SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
pub const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// The tools an OVN test needs besides `ip` (for [`super::prerequisites`]).
pub const OVN_TOOLS: &[&str] = &[
    "ip",
    "ping",
    "ethtool",
    "setpriv",
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-appctl",
    "ovn-northd",
    "ovn-controller",
    "ovn-nbctl",
    "ovn-sbctl",
    "/dev/net/tun",
];

/// The underlay interface name in the central and node netns.
pub const UNDERLAY_IF: &str = "ens3";

/// Up to how long a daemon may take to answer.
const READY_SECS: u64 = 20;

// ---------------------------------------------------------------------------------------------
// Daemons and tools

/// One OVS/OVN daemon, a child of this process, ended by PID on drop.
pub struct Daemon {
    pub name: String,
    pub log: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
}

/// The `OVS_*`/`OVN_*` dirs of an instance (P7): rundir, logdir and dbdir all in `dir`.
fn instance_env(cmd: &mut Command, dir: &Path) {
    for k in [
        "OVS_RUNDIR",
        "OVS_LOGDIR",
        "OVS_DBDIR",
        "OVS_SYSCONFDIR",
        "OVN_RUNDIR",
        "OVN_LOGDIR",
        "OVN_DBDIR",
        "OVN_SYSCONFDIR",
    ] {
        cmd.env(k, dir);
    }
    cmd.env_remove("OVN_NB_DAEMON").env_remove("OVN_SB_DAEMON");
}

impl Daemon {
    /// Run `prog args` in `ns` with `dir` as its rundir/logdir/dbdir, logging to
    /// `<dir>/<name>.log` (`--log-file`, `--pidfile` are added here).
    pub fn spawn(ns: &str, dir: &Path, name: &str, prog: &str, args: &[String]) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let stderr = dir.join(format!("{name}.stderr"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "setpriv", "--pdeathsig", "KILL", prog])
            .arg("-vconsole:off")
            .arg(format!("--log-file={}", log.display()))
            .arg(format!("--pidfile={}", dir.join(format!("{name}.pid")).display()))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("daemon stderr file"));
        instance_env(&mut cmd, dir);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
        Daemon {
            name: name.into(),
            log,
            stderr,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `n` lines of its log and whatever it wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if !err.trim().is_empty() {
            out.push_str("\n[stderr] ");
            out.push_str(err.trim());
        }
        out
    }

    /// Poll `ready` every 20 ms; panic with the log when the daemon exits or `secs` pass.
    pub fn wait_ready(&mut self, what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if ready() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited ({st}) before {what}:\n{}", self.name, self.log_tail(30));
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: timed out after {secs}s waiting for {what}:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, up to 2 s for it to exit, then SIGKILL; reaped either way. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if std::thread::panicking() {
            eprintln!("--- {} log (tail) ---\n{}", self.name, self.log_tail(25));
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run an OVS/OVN tool (in the root netns) with `dir`'s env: (success, stdout, stderr).
fn tool(dir: &Path, prog: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(prog);
    cmd.args(args).stdin(Stdio::null());
    instance_env(&mut cmd, dir);
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("{prog}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`tool`], panicking on failure; stdout.
fn tool_ok(dir: &Path, prog: &str, args: &[&str]) -> String {
    let (ok, out, err) = tool(dir, prog, args);
    assert!(ok, "{prog} {args:?}: {err}");
    out
}

fn ns_exec(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    run("ip", &a)
}

/// A veth from `underlay`'s bridge to `ifname` in `ns` (no address), up, with TX checksum
/// offload off (P1).
fn plug_underlay(underlay: &Switch, ns: &str, ifname: &str) {
    let port = format!("p{}", underlay.ports.fetch_add(1, Ordering::SeqCst));
    let sw = underlay.netns.name.as_str();
    run(
        "ip",
        &[
            "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", ns,
        ],
    );
    run("ip", &["-n", sw, "link", "set", &port, "master", "br0", "up"]);
    run("ip", &["-n", ns, "link", "set", ifname, "up"]);
    ns_exec(ns, &["ethtool", "-K", ifname, "tx", "off"]);
}

fn addr_of(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or(cidr).to_string()
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("tempdir")
}

// ---------------------------------------------------------------------------------------------
// Central

/// NB + SB ovsdb-servers and ovn-northd in their own netns on the underlay.
pub struct OvnCentral {
    pub netns: Netns,
    /// The central's underlay address (no prefix length).
    pub ip: String,
    pub dir: PathBuf,
    /// How long [`OvnCentral::start`] took.
    pub startup: Duration,
    northd: Daemon,
    sb: Daemon,
    nb: Daemon,
    tmp: Option<tempfile::TempDir>,
}

impl OvnCentral {
    /// Start central at `ip_cidr` (e.g. `192.168.200.10/24`) on `underlay`; returns when
    /// northd has answered a `--wait=sb sync`.
    pub fn start(underlay: &Switch, ip_cidr: &str) -> OvnCentral {
        let t0 = Instant::now();
        let tmp = tempdir("lanes-ovnc-");
        let dir = tmp.path().to_path_buf();
        let netns = Netns::new("ovnc-");
        let ns = netns.name.clone();
        plug_underlay(underlay, &ns, UNDERLAY_IF);
        run("ip", &["-n", &ns, "addr", "add", ip_cidr, "dev", UNDERLAY_IF]);
        let ip = addr_of(ip_cidr);

        let d = |f: &str| dir.join(f).display().to_string();
        tool_ok(&dir, "ovsdb-tool", &["create", &d("nb.db"), NB_SCHEMA]);
        tool_ok(&dir, "ovsdb-tool", &["create", &d("sb.db"), SB_SCHEMA]);
        let server = |name: &str, port: u16| {
            Daemon::spawn(
                &ns,
                &dir,
                name,
                "ovsdb-server",
                &[
                    format!("--remote=punix:{}", d(&format!("{name}.sock"))),
                    format!("--remote=ptcp:{port}:{ip}"),
                    format!("--unixctl={}", d(&format!("{name}.ctl"))),
                    d(&format!("{name}.db")),
                ],
            )
        };
        let mut nb = server("nb", 6641);
        let mut sb = server("sb", 6642);
        let nb_db = format!("--db=unix:{}", d("nb.sock"));
        let sb_db = format!("--db=unix:{}", d("sb.sock"));
        nb.wait_ready("NB to answer", READY_SECS, || {
            tool(&dir, "ovn-nbctl", &[&nb_db, "--timeout=2", "show"]).0
        });
        sb.wait_ready("SB to answer", READY_SECS, || {
            tool(&dir, "ovn-sbctl", &[&sb_db, "--timeout=2", "show"]).0
        });
        let mut northd = Daemon::spawn(
            &ns,
            &dir,
            "northd",
            "ovn-northd",
            &[
                format!("--unixctl={}", d("northd.ctl")),
                format!("--ovnnb-db=unix:{}", d("nb.sock")),
                format!("--ovnsb-db=unix:{}", d("sb.sock")),
            ],
        );
        northd.wait_ready("a --wait=sb sync", READY_SECS, || {
            tool(&dir, "ovn-nbctl", &[&nb_db, "--timeout=3", "--wait=sb", "sync"]).0
        });
        OvnCentral {
            netns,
            ip,
            dir,
            startup: t0.elapsed(),
            northd,
            sb,
            nb,
            tmp: Some(tmp),
        }
    }

    pub fn nb_unix(&self) -> String {
        format!("unix:{}", self.dir.join("nb.sock").display())
    }

    pub fn sb_unix(&self) -> String {
        format!("unix:{}", self.dir.join("sb.sock").display())
    }

    pub fn nb_tcp(&self) -> String {
        format!("tcp:{}:6641", self.ip)
    }

    pub fn sb_tcp(&self) -> String {
        format!("tcp:{}:6642", self.ip)
    }

    /// `ovn-nbctl --db=unix:... --timeout=10 <args>`: (success, stdout, stderr).
    pub fn nbctl_try(&self, args: &[&str]) -> (bool, String, String) {
        let db = format!("--db={}", self.nb_unix());
        let mut a = vec![db.as_str(), "--timeout=10"];
        a.extend_from_slice(args);
        tool(&self.dir, "ovn-nbctl", &a)
    }

    /// `ovn-nbctl` on the NB unix socket; stdout; panics on failure.
    pub fn nbctl(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.nbctl_try(args);
        assert!(ok, "ovn-nbctl {args:?}: {err}");
        out
    }

    /// `ovn-sbctl --db=unix:... --timeout=10 <args>`: (success, stdout, stderr).
    pub fn sbctl_try(&self, args: &[&str]) -> (bool, String, String) {
        let db = format!("--db={}", self.sb_unix());
        let mut a = vec![db.as_str(), "--timeout=10"];
        a.extend_from_slice(args);
        tool(&self.dir, "ovn-sbctl", &a)
    }

    /// `ovn-sbctl` on the SB unix socket; stdout; panics on failure.
    pub fn sbctl(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.sbctl_try(args);
        assert!(ok, "ovn-sbctl {args:?}: {err}");
        out
    }

    /// Names of the chassis registered in SB.
    pub fn chassis(&self) -> Vec<String> {
        let (_, out, _) = self.sbctl_try(&["--bare", "--columns=name", "list", "Chassis"]);
        out.split_whitespace().map(String::from).collect()
    }

    pub fn northd_pid(&self) -> Option<u32> {
        self.northd.pid()
    }
}

impl Drop for OvnCentral {
    fn drop(&mut self) {
        self.northd.stop();
        self.sb.stop();
        self.nb.stop();
        if let Some(t) = self.tmp.take() {
            let _ = t.close();
        }
        // `netns` (a field) is deleted after this.
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// OVS + ovn-controller inside a node netns the caller owns (it must outlive this).
pub struct OvnNode {
    /// The node's netns (borrowed by name).
    pub ns: String,
    /// Chassis name / system-id / hostname.
    pub name: String,
    /// Underlay address on br-phy (no prefix length) — the encap IP.
    pub ip: String,
    /// `unix:<dir>/db.sock`, the node's Open_vSwitch database.
    pub ovs_db: String,
    pub dir: PathBuf,
    /// Central's SB as this node's ovn-controller reaches it (TCP over br-phy).
    pub ovn_remote: String,
    /// How long [`OvnNode::start`] took (with ovn-controller when it started it).
    pub startup: Duration,
    sb_unix: String,
    controller: Option<Daemon>,
    vswitchd: Daemon,
    ovsdb: Daemon,
    tmp: Option<tempfile::TempDir>,
}

impl OvnNode {
    /// In existing netns `ns`: plug `ens3` into `underlay`, start ovsdb-server and ovs-vswitchd
    /// (netdev datapath), create `br-phy` (ens3 + the underlay IP `ip_cidr`, P2) and `br-int`,
    /// set arp_ignore/disable_ipv6 (P3) — and unless `lanes_manages_chassis`, set the OVN
    /// external_ids ([`OvnNode::chassis_external_ids`]) and start ovn-controller, returning
    /// once its Chassis is in SB. When Lanes manages the chassis, lanesd sets those itself;
    /// call [`OvnNode::start_controller`] after that.
    pub fn start(
        ns: &str,
        name: &str,
        underlay: &Switch,
        ip_cidr: &str,
        central: &OvnCentral,
        lanes_manages_chassis: bool,
    ) -> OvnNode {
        let t0 = Instant::now();
        let tmp = tempdir(&format!("lanes-ovn-{name}-"));
        let dir = tmp.path().to_path_buf();
        let ip = addr_of(ip_cidr);
        let d = |f: &str| dir.join(f).display().to_string();

        ns_exec(
            ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        plug_underlay(underlay, ns, UNDERLAY_IF);

        tool_ok(&dir, "ovsdb-tool", &["create", &d("conf.db"), VSWITCH_SCHEMA]);
        let ovs_db = format!("unix:{}", d("db.sock"));
        let mut ovsdb = Daemon::spawn(
            ns,
            &dir,
            "ovsdb",
            "ovsdb-server",
            &[
                format!("--remote=punix:{}", d("db.sock")),
                format!("--unixctl={}", d("ovsdb.ctl")),
                d("conf.db"),
            ],
        );
        let db_arg = format!("--db={ovs_db}");
        ovsdb.wait_ready("ovs-vsctl --no-wait init", READY_SECS, || {
            tool(&dir, "ovs-vsctl", &[&db_arg, "--no-wait", "--timeout=2", "init"]).0
        });
        let mut vswitchd = Daemon::spawn(
            ns,
            &dir,
            "vswitchd",
            "ovs-vswitchd",
            &[format!("--unixctl={}", d("vswitchd.ctl")), ovs_db.clone()],
        );
        let ctl = d("vswitchd.ctl");
        vswitchd.wait_ready("ovs-appctl version", READY_SECS, || {
            tool(&dir, "ovs-appctl", &["-t", &ctl, "--timeout=2", "version"]).0
        });

        let mut node = OvnNode {
            ns: ns.into(),
            name: name.into(),
            ip: ip.clone(),
            ovs_db,
            dir: dir.clone(),
            ovn_remote: central.sb_tcp(),
            startup: Duration::ZERO,
            sb_unix: central.sb_unix(),
            controller: None,
            vswitchd,
            ovsdb,
            tmp: Some(tmp),
        };
        let o = ip.split('.').map(|b| b.parse::<u8>().unwrap_or(0)).collect::<Vec<_>>();
        let hwaddr = format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
        node.vsctl(&[
            "--",
            "add-br",
            "br-phy",
            "--",
            "set",
            "bridge",
            "br-phy",
            "datapath_type=netdev",
            "fail-mode=standalone",
            &format!("other-config:hwaddr={hwaddr}"),
            "--",
            "add-port",
            "br-phy",
            UNDERLAY_IF,
            "--",
            "set",
            "interface",
            UNDERLAY_IF,
            "mtu_request=1500",
            "--",
            "set",
            "interface",
            "br-phy",
            "mtu_request=1500",
        ]);
        run("ip", &["-n", ns, "link", "set", "br-phy", "up"]);
        run("ip", &["-n", ns, "addr", "add", ip_cidr, "dev", "br-phy"]);
        node.vsctl(&[
            "--",
            "add-br",
            "br-int",
            "--",
            "set",
            "bridge",
            "br-int",
            "datapath_type=netdev",
            "fail-mode=secure",
            "other-config:disable-in-band=true",
        ]);
        if !lanes_manages_chassis {
            let ids: Vec<String> = node
                .chassis_external_ids()
                .into_iter()
                .map(|(k, v)| format!("external_ids:{k}={v}"))
                .collect();
            let mut args = vec!["set", "open", "."];
            args.extend(ids.iter().map(String::as_str));
            node.vsctl(&args);
            node.start_controller();
        }
        node.startup = t0.elapsed();
        node
    }

    /// The Open_vSwitch external_ids this harness sets for ovn-controller (and a Lanes test
    /// can hand to lanesd): system-id, hostname, ovn-remote, ovn-encap-type=geneve,
    /// ovn-encap-ip, ovn-bridge-datapath-type=netdev.
    pub fn chassis_external_ids(&self) -> Vec<(&'static str, String)> {
        vec![
            ("system-id", self.name.clone()),
            ("hostname", self.name.clone()),
            ("ovn-remote", self.ovn_remote.clone()),
            ("ovn-encap-type", "geneve".into()),
            ("ovn-encap-ip", self.ip.clone()),
            ("ovn-bridge-datapath-type", "netdev".into()),
        ]
    }

    /// Start ovn-controller (once the chassis external_ids are set) and wait until the
    /// Chassis named by `external_ids:system-id` is in SB.
    pub fn start_controller(&mut self) {
        assert!(
            self.controller.is_none(),
            "{}: ovn-controller already running",
            self.name
        );
        let (_, sysid, _) = self.vsctl_try(&["--if-exists", "get", "open", ".", "external_ids:system-id"]);
        let sysid = sysid.trim().trim_matches('"').to_string();
        assert!(
            !sysid.is_empty(),
            "{}: start_controller before external_ids:system-id is set",
            self.name
        );
        let mut c = Daemon::spawn(
            &self.ns,
            &self.dir,
            "ovn-controller",
            "ovn-controller",
            std::slice::from_ref(&self.ovs_db),
        );
        let (dir, sb) = (self.dir.clone(), format!("--db={}", self.sb_unix));
        c.wait_ready(&format!("Chassis {sysid} in SB"), 30, || {
            let (ok, out, _) = tool(
                &dir,
                "ovn-sbctl",
                &[
                    &sb,
                    "--timeout=2",
                    "--bare",
                    "--columns=name",
                    "find",
                    "Chassis",
                    &format!("name={sysid}"),
                ],
            );
            ok && out.trim() == sysid
        });
        self.controller = Some(c);
    }

    /// End ovn-controller (by PID, SIGTERM: its Chassis stays in SB, as after a crash).
    pub fn stop_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            c.stop();
        }
    }

    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().and_then(Daemon::pid)
    }

    pub fn vswitchd_pid(&self) -> Option<u32> {
        self.vswitchd.pid()
    }

    /// `ovs-vsctl --db=... --timeout=10 <args>`: (success, stdout, stderr).
    pub fn vsctl_try(&self, args: &[&str]) -> (bool, String, String) {
        let db = format!("--db={}", self.ovs_db);
        let mut a = vec![db.as_str(), "--timeout=10"];
        a.extend_from_slice(args);
        tool(&self.dir, "ovs-vsctl", &a)
    }

    /// `ovs-vsctl` on this node's database; stdout; panics on failure.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.vsctl_try(args);
        assert!(ok, "{}: ovs-vsctl {args:?}: {err}", self.name);
        out
    }

    /// `ovs-appctl -t <dir>/vswitchd.ctl <args>`; stdout; panics on failure.
    pub fn appctl_vswitchd(&self, args: &[&str]) -> String {
        let ctl = self.dir.join("vswitchd.ctl").display().to_string();
        let mut a = vec!["-t", ctl.as_str(), "--timeout=10"];
        a.extend_from_slice(args);
        tool_ok(&self.dir, "ovs-appctl", &a)
    }

    /// `ovs-appctl` to ovn-controller (its socket is `<dir>/ovn-controller.<pid>.ctl`, P7).
    pub fn appctl_controller(&self, args: &[&str]) -> String {
        let pid = self.controller_pid().expect("ovn-controller is not running");
        let ctl = self.dir.join(format!("ovn-controller.{pid}.ctl")).display().to_string();
        let mut a = vec!["-t", ctl.as_str(), "--timeout=10"];
        a.extend_from_slice(args);
        tool_ok(&self.dir, "ovs-appctl", &a)
    }

    /// Run a command inside the node netns; stdout; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        ns_exec(&self.ns, args)
    }

    /// Attach `pod` (a netns) to br-int as logical port `iface_id`: a veth `host_if` (in the
    /// node netns, ≤ 15 chars) ↔ `eth0` (in the pod) with `mac`, `ip_cidr`, `mtu` and TX
    /// offload off (P1). Returns at once; see [`OvnNode::wait_installed`].
    pub fn plug_pod(&self, pod: &Netns, host_if: &str, iface_id: &str, mac: &str, ip_cidr: &str, mtu: u32) {
        let (p, mtu) = (pod.name.as_str(), mtu.to_string());
        run(
            "ip",
            &[
                "link", "add", host_if, "netns", &self.ns, "mtu", &mtu, "type", "veth", "peer", "name", "eth0",
                "netns", p, "mtu", &mtu,
            ],
        );
        run("ip", &["-n", p, "link", "set", "eth0", "address", mac, "up"]);
        run("ip", &["-n", p, "addr", "add", ip_cidr, "dev", "eth0"]);
        ns_exec(p, &["ethtool", "-K", "eth0", "tx", "off"]);
        run("ip", &["-n", &self.ns, "link", "set", host_if, "up"]);
        self.vsctl(&[
            "add-port",
            "br-int",
            host_if,
            "--",
            "set",
            "interface",
            host_if,
            &format!("external_ids:iface-id={iface_id}"),
        ]);
    }

    /// Whether ovn-controller has marked interface `ifname` `ovn-installed=true`.
    pub fn installed(&self, ifname: &str) -> bool {
        let (ok, out, _) = self.vsctl_try(&["--if-exists", "get", "interface", ifname, "external_ids:ovn-installed"]);
        ok && out.trim().trim_matches('"') == "true"
    }

    /// Wait up to `secs` for [`OvnNode::installed`].
    pub fn wait_installed(&self, ifname: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.installed(ifname) {
            if Instant::now() > deadline {
                panic!(
                    "{}: {ifname} not ovn-installed after {secs}s\n{}",
                    self.name,
                    self.controller.as_ref().map(|c| c.log_tail(30)).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OvnNode {
    fn drop(&mut self) {
        self.stop_controller();
        self.vswitchd.stop();
        self.ovsdb.stop();
        if let Some(t) = self.tmp.take() {
            let _ = t.close();
        }
    }
}

/// Fill every node's userspace tunnel-neighbour cache with every other node (P4): OVS learns
/// a VTEP's MAC only by snooping an ARP *reply* on an upcall, so for each node: purge its
/// datapath flows (a reply hitting a cached flow is not snooped), flush br-phy's kernel
/// neighbours (a kernel that already knows the peer — e.g. from the peer's own ARP request —
/// sends no request, so no reply ever comes), ping the missing peers, until `tnl/neigh/show`
/// lists every other node.
pub fn prime_tunnels(nodes: &[&OvnNode]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for a in nodes {
        loop {
            let neigh = a.appctl_vswitchd(&["tnl/neigh/show"]);
            let missing: Vec<&str> = nodes
                .iter()
                .filter(|b| b.ip != a.ip && !neigh.split_whitespace().any(|w| w == b.ip))
                .map(|b| b.ip.as_str())
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: tunnel neighbours {missing:?} not learned:\n{neigh}",
                a.name
            );
            a.appctl_vswitchd(&["revalidator/purge"]);
            let _ = Command::new("ip")
                .args(["-n", &a.ns, "neigh", "flush", "dev", "br-phy"])
                .status();
            for ip in &missing {
                let _ = Command::new("ip")
                    .args(["netns", "exec", &a.ns, "ping", "-c1", "-W1", ip])
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}
