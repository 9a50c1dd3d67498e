//! A real `ovsdb-server` per test: a temp dir, a database made with `ovsdb-tool create` from
//! the installed schema, a unix socket and a TCP port on 127.0.0.1. The server runs in the
//! foreground as our child and is killed by PID on drop.
//!
//! Missing binaries or schemas skip the test with a printed reason, except under `CI=true`,
//! where they fail it. Root is not needed: `ovsdb-server` only touches the temp dir.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovn_bridge::{Client, ClientOptions};

pub const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
pub const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";

pub struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub sock: PathBuf,
    pub tcp_port: u16,
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Whether the OVS/OVN tools are here; prints why not, and panics under `CI=true`.
fn available(schema: &str) -> bool {
    let mut missing: Vec<String> = ["ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovn-nbctl"]
        .iter()
        .filter(|b| !on_path(b))
        .map(|b| b.to_string())
        .collect();
    if !Path::new(schema).exists() {
        missing.push(schema.to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "missing {} (apt-get install openvswitch-switch ovn-central)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {reason}");
    }
    // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must show.
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
    false
}

impl Server {
    /// A fresh `Open_vSwitch` database server, `None` (skip) when OVS is not installed.
    pub fn ovs() -> Option<Server> {
        Server::start(OVS_SCHEMA)
    }

    /// A fresh `OVN_Northbound` database server, `None` (skip) when OVN is not installed.
    pub fn nb() -> Option<Server> {
        Server::start(NB_SCHEMA)
    }

    fn start(schema: &str) -> Option<Server> {
        if !available(schema) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("test.db");
        run("ovsdb-tool", &["create", db.to_str().unwrap(), schema]);
        let sock = dir.path().join("db.sock");
        let mut s = Server {
            dir,
            child: None,
            sock,
            tcp_port: 0,
        };
        s.spawn();
        Some(s)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        let log = self.path("ovsdb.log");
        let _ = std::fs::rename(&log, self.path("ovsdb.log.old"));
        let child = Command::new("ovsdb-server")
            .arg(format!("--remote=punix:{}", self.sock.display()))
            .arg("--remote=ptcp:0:127.0.0.1")
            .arg(format!("--unixctl={}", self.path("ovsdb.ctl")))
            .arg(format!("--pidfile={}", self.path("ovsdb.pid")))
            .arg(format!("--log-file={log}"))
            .args(["--no-chdir", "-vconsole:off", "-vfile:info"])
            .arg(self.path("test.db"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ovsdb-server");
        self.child = Some(child);
        // Ready when the unix socket exists and the log names the TCP port it bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = text
                .lines()
                .find_map(|l| l.split("listening on port ").nth(1)?.trim().parse().ok());
            if let (Some(port), true) = (port, self.sock.exists()) {
                self.tcp_port = port;
                return;
            }
            assert!(Instant::now() < deadline, "ovsdb-server did not come up: {text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("ovsdb.log")).unwrap_or_default()
    }

    pub fn unix(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    pub fn tcp(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.tcp_port)
    }

    /// A client with short backoff so reconnect tests stay quick.
    pub fn client(&self) -> Client {
        Client::with_options(&self.unix(), fast_options()).expect("client")
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start again on the same database and socket path.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `ovs-vsctl --db=unix:.. --no-wait ARGS` (there is no ovs-vswitchd to wait for).
    pub fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db={}", self.unix());
        let mut all = vec![db.as_str(), "--no-wait", "--timeout=10"];
        all.extend_from_slice(args);
        run("ovs-vsctl", &all)
    }

    /// `ovn-nbctl --db=unix:.. ARGS`
    pub fn nbctl(&self, args: &[&str]) -> String {
        let db = format!("--db={}", self.unix());
        let mut all = vec![db.as_str(), "--timeout=10"];
        all.extend_from_slice(args);
        run("ovn-nbctl", &all)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn fast_options() -> ClientOptions {
    ClientOptions {
        call_timeout: Duration::from_secs(10),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

pub fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
