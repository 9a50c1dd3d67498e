//! Shared pieces of the root integration tests: network namespaces and
//! lanesd processes that clean up after themselves (Drop), the CNI client
//! (`cnidriver`, Debian's libcni) and the shim exec'd directly.
//!
//! A test that lacks root or a tool prints why and returns — unless
//! `CI=true`, where CI installed everything, so a skip is a failure.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Nodes using each test dir; the last one to go removes it.
static DIR_USERS: std::sync::Mutex<Vec<(PathBuf, usize)>> = std::sync::Mutex::new(Vec::new());

fn dir_acquire(dir: &Path) {
    let mut users = DIR_USERS.lock().unwrap_or_else(|p| p.into_inner());
    match users.iter_mut().find(|(d, _)| d == dir) {
        Some((_, n)) => *n += 1,
        None => users.push((dir.to_path_buf(), 1)),
    }
}

fn dir_release(dir: &Path) {
    let mut users = DIR_USERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = users.iter().position(|(d, _)| d == dir) {
        users[i].1 -= 1;
        if users[i].1 == 0 {
            users.remove(i);
            // Kept on failure: the logs in it are what one reads next.
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Skip (or fail under CI) unless we are root and `tools` are on PATH.
pub fn prerequisites(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_string());
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(format!("`{t}`"));
        }
    }
    if shim_path().is_none() {
        missing.push("a built lanes-cni (run `cargo build --workspace` first)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: skipped: needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true: CI installs everything, so a skip is a failure)");
    }
    eprintln!("{msg}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).exists().then(|| tool.into());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

/// target/<profile>/ of this test binary (tests live in target/<profile>/deps).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

pub fn lanesd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanesd"))
}

pub fn lanesctl_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanesctl"))
}

/// The shim: `LANES_CNI` if set, else the one built beside these tests.
pub fn shim_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LANES_CNI") {
        return Some(p.into());
    }
    let p = target_dir().join("lanes-cni");
    p.exists().then_some(p)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// cnidriver, built once from ../shared/tools/cnidriver (Debian's libcni).
pub fn cnidriver() -> PathBuf {
    if let Ok(p) = std::env::var("CNIDRIVER") {
        return p.into();
    }
    let out = repo_root().join("target/cnidriver");
    let lock = std::fs::File::create(repo_root().join("target/.cnidriver.lock")).unwrap();
    let _l = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if !out.exists() {
        let script = repo_root().join("../shared/tools/cnidriver/build.sh");
        let st = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .status()
            .expect("run cnidriver build.sh");
        assert!(st.success(), "building cnidriver with {} failed", script.display());
    }
    out
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id() % 100000,
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Run a command inside; returns (success, stdout).
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j"])
            .args(args)
            .output()
            .expect("ip -j");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
    }

    pub fn ping(&self, ip: &str) -> bool {
        self.exec(&["ping", "-c1", "-W2", ip]).0
    }

    pub fn ipv4_of(&self, ifname: &str) -> Option<String> {
        let v = self.ip_json(&["addr", "show", "dev", ifname]);
        v.get(0)?["addr_info"]
            .as_array()?
            .iter()
            .find(|a| a["family"] == "inet")
            .and_then(|a| a["local"].as_str())
            .map(String::from)
    }

    pub fn links(&self) -> Vec<String> {
        self.ip_json(&["link"])
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["ifname"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn routes(&self) -> String {
        let out = Command::new("ip").args(["-n", &self.name, "route"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sysctl(&self, key: &str) -> String {
        self.exec(&["cat", &format!("/proc/sys/{}", key.replace('.', "/"))])
            .1
            .trim()
            .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node: a netns, a store dir, a run dir, and a lanesd inside the netns.
pub struct Node {
    pub name: String,
    pub netns: Netns,
    pub dir: PathBuf,
    pub store: PathBuf,
    pub run_dir: PathBuf,
    pub child: Option<Child>,
    /// Extra lanesd flags (e.g. `--primary-interface ens2`).
    pub args: Vec<String>,
}

pub const SEED_POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  natOutgoing: true
  nodeSelector: all()
";

impl Node {
    /// A fresh node with its own store holding `resources`.
    pub fn new(name: &str, resources: &str) -> Node {
        let (dir, store) = Self::store(resources);
        Self::with_store(name, &dir, &store)
    }

    /// A temp dir with a store holding `resources`: (dir, store).
    pub fn store(resources: &str) -> (PathBuf, PathBuf) {
        let dir = tempfile::Builder::new().prefix("lanes-it-").tempdir().unwrap().keep();
        let store = dir.join("store");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("resources.yaml"), resources).unwrap();
        (dir, store)
    }

    /// A node sharing another node's store (two lanesd on one store).
    pub fn with_store(name: &str, dir: &Path, store: &Path) -> Node {
        Self::prepared(name, dir, store, Netns::new("lit-"), &[], true)
    }

    /// A node in a netns the caller wired (e.g. with `ens2`), with extra flags;
    /// `start` false leaves lanesd to the caller.
    pub fn prepared(name: &str, dir: &Path, store: &Path, netns: Netns, args: &[&str], start: bool) -> Node {
        let run_dir = dir.join(format!("run-{name}"));
        dir_acquire(dir);
        let mut n = Node {
            name: name.into(),
            netns,
            dir: dir.into(),
            store: store.into(),
            run_dir,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        if start {
            n.start();
        }
        n
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("lanes.sock")
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("lanesd-{}.log", self.name)))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns.name])
            .arg(lanesd_path())
            .args(["--node-name", &self.name])
            .arg("--datastore-path")
            .arg(&self.store)
            .arg("--socket")
            .arg(self.socket())
            .arg("--run-dir")
            .arg(&self.run_dir)
            .args(["--log-level", "info"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lanesd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "lanesd {} did not open {} in 20s: {}",
            self.name,
            self.socket().display(),
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("lanesd-{}.log", self.name))).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(st)) = c.try_wait() {
                    return st.success();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        false
    }

    /// A conflist for this node, written to the node's dir.
    pub fn conflist(&self, version: &str, extra_plugins: &str) -> PathBuf {
        let p = self.dir.join(format!("{}-{}.conflist", self.name, version));
        let plugins = format!(
            r#"{{"type":"lanes","socket":"{}"}}{}"#,
            self.socket().display(),
            extra_plugins
        );
        let text = format!(r#"{{"cniVersion":"{version}","name":"lanes","plugins":[{plugins}]}}"#);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The CNI bin dir for cnidriver: the shim as `lanes` plus Debian's plugins.
    pub fn cni_path(&self) -> String {
        let bin = self.dir.join("cni-bin");
        if !bin.exists() {
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::copy(shim_path().unwrap(), bin.join("lanes")).unwrap();
        }
        format!("{}:/usr/lib/cni", bin.display())
    }

    /// Run cnidriver inside the node netns; (exit ok, parsed stdout or Null).
    pub fn cnidriver(&self, conflist: &Path, verb: &str, flags: &[&str]) -> (bool, Value) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns.name])
            .arg(cnidriver())
            .arg("-conf")
            .arg(conflist)
            .args(["-path", &self.cni_path()])
            .arg("-cache-dir")
            .arg(self.dir.join(format!("cache-{}", self.name)))
            .args(flags)
            .arg(verb)
            .output()
            .expect("cnidriver");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), v)
    }

    /// Exec the shim directly, as a runtime would; (exit code, stdout JSON).
    pub fn shim(&self, env: &HashMap<&str, String>, stdin: &str) -> (i32, Value) {
        shim_exec(Some(&self.netns.name), env, stdin)
    }

    pub fn lanesctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(lanesctl_path())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        // lanesd leaves BIRD running when it dies (graceful restart); a test ends it too.
        self.kill_bird();
        // Pod veths live in this node's netns and go with it; blackholes too.
        if std::thread::panicking() {
            eprintln!("--- lanesd {} log ---\n{}", self.name, self.log());
        }
        dir_release(&self.dir);
    }
}

/// Exec lanes-cni with exactly `env` (plus PATH) and `stdin`.
pub fn shim_exec(netns: Option<&str>, env: &HashMap<&str, String>, stdin: &str) -> (i32, Value) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(shim_path().unwrap());
            c
        }
        None => Command::new(shim_path().unwrap()),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn lanes-cni");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

/// The CNI env a runtime sets for one call to `node`'s daemon (the shim finds
/// the socket through LANES_SOCKET).
pub fn cni_env(node: &Node, cmd: &str, id: &str, netns: &str) -> HashMap<&'static str, String> {
    [
        ("CNI_COMMAND", cmd.to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", netns.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
        ("LANES_SOCKET", node.socket().display().to_string()),
    ]
    .into_iter()
    .collect()
}

/// The address of the pod interface in an ADD result.
pub fn result_ip(v: &Value) -> String {
    v["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A layer-2 segment: a bridge in its own netns; nodes plug in with a veth.
pub struct Switch {
    pub netns: Netns,
    ports: AtomicUsize,
}

impl Switch {
    pub fn new() -> Switch {
        let netns = Netns::new("lsw-");
        run("ip", &["-n", &netns.name, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &netns.name, "link", "set", "br0", "up"]);
        Switch {
            netns,
            ports: AtomicUsize::new(0),
        }
    }

    /// Give `ns` an interface `ifname` with `cidr` on this segment.
    pub fn plug(&self, ns: &Netns, ifname: &str, cidr: &str) {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::SeqCst));
        run(
            "ip",
            &[
                "-n",
                &self.netns.name,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                ifname,
                "netns",
                &ns.name,
            ],
        );
        run(
            "ip",
            &["-n", &self.netns.name, "link", "set", &port, "master", "br0", "up"],
        );
        run("ip", &["-n", &ns.name, "addr", "add", cidr, "dev", ifname]);
        run("ip", &["-n", &ns.name, "link", "set", ifname, "up"]);
    }
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

/// Poll `f` every 200 ms until it returns Some, or panic with `what` after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Node {
    /// `lanesctl -o json node status`'s BGP part.
    pub fn bgp_status(&self) -> Value {
        let (_, out) = self.lanesctl(&["-o", "json", "node", "status"]);
        serde_json::from_str::<Value>(&out)
            .map(|v| v["bgp"].clone())
            .unwrap_or(Value::Null)
    }

    /// Number of BGP sessions in state up.
    pub fn peers_up(&self) -> usize {
        self.bgp_status()["peers"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["state"] == "up").count())
            .unwrap_or(0)
    }
}

/// Nodes whose lanesd *and then* BIRD are killed on drop (`Node`'s own drop leaves BIRD
/// running, as a lanesd crash would, and BIRD would outlive the test).
pub struct NodeGroup(pub Vec<Node>);

impl Drop for NodeGroup {
    fn drop(&mut self) {
        for n in &mut self.0 {
            n.kill9();
            n.kill_bird();
        }
    }
}

impl std::ops::Deref for NodeGroup {
    type Target = Vec<Node>;
    fn deref(&self) -> &Vec<Node> {
        &self.0
    }
}

impl std::ops::DerefMut for NodeGroup {
    fn deref_mut(&mut self) -> &mut Vec<Node> {
        &mut self.0
    }
}

/// A child process that is SIGKILLed and reaped on drop (unless taken first).
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Send `sig`, then wait for the output (stdout/stderr must have been piped to be read).
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> Option<std::process::Output> {
        let child = self.0.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
        child.wait_with_output().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Write `text` to `path` atomically (a dotfile beside it, then rename), so that a watcher
/// never reads half a file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Node {
    /// The PID of this node's BIRD (lanesd's child), from `<run_dir>/bird.pid`, when that
    /// process is alive and is this node's BIRD (its command line names this node's run dir).
    pub fn bird_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.run_dir.join("bird.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        if stat.contains(") Z ") {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ctl = self.run_dir.join("bird.ctl");
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == ctl.as_os_str().as_encoded_bytes());
        ours.then_some(pid)
    }

    /// SIGKILL this node's BIRD (only the PID [`Node::bird_pid`] vouches for) and wait up to
    /// 5 s until it is gone. lanesd's BIRD outlives a SIGKILLed lanesd (it is reparented to
    /// init), so call this after [`Node::kill9`] to leave nothing behind.
    pub fn kill_bird(&self) -> Option<i32> {
        let pid = self.bird_pid()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.bird_pid() == Some(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(pid)
    }

    /// The BIRD config lanesd last applied.
    pub fn bird_conf(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("bird.conf")).unwrap_or_default()
    }
}

/// A standalone BIRD 2 (a ToR, an external route reflector) in a network namespace, run as
/// `bird -f -c <conf> -s <ctl> -P <pid>` with its stderr in `<dir>/bird-<name>.log`; killed on
/// drop (its log is printed when the test panics).
pub struct Bird {
    pub name: String,
    pub conf: PathBuf,
    pub ctl: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Bird {
    /// Write `config` and start BIRD inside `netns`; waits until its control socket answers.
    pub fn start(netns: &Netns, dir: &Path, name: &str, config: &str) -> Bird {
        let conf = dir.join(format!("bird-{name}.conf"));
        let ctl = dir.join(format!("bird-{name}.ctl"));
        let pid = dir.join(format!("bird-{name}.pid"));
        let log = dir.join(format!("bird-{name}.log"));
        std::fs::write(&conf, config).unwrap();
        let check = Command::new("bird").arg("-p").arg("-c").arg(&conf).output().unwrap();
        assert!(
            check.status.success(),
            "bird -p rejected {}: {}\n{config}",
            conf.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let stderr = std::fs::File::create(&log).unwrap();
        // `ip netns exec` execs bird, so the child's PID is bird's.
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&ctl)
            .arg("-P")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn bird");
        let mut bird = Bird {
            name: name.into(),
            conf,
            ctl,
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (ok, out) = bird.birdc(&["show", "status"]);
            if ok && out.contains("Daemon is up and running") {
                return bird;
            }
            if let Some(Ok(Some(st))) = bird.child.as_mut().map(|c| c.try_wait()) {
                panic!("bird {name} exited ({st}): {}", bird.log_text());
            }
            if Instant::now() > deadline {
                panic!(
                    "bird {name} did not answer on {} in 10s: {}",
                    bird.ctl.display(),
                    bird.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `birdc -s <ctl> <args>`: (success, stdout).
    pub fn birdc(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(args)
            .output()
            .expect("birdc");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `show route [args]` as (prefix, the text of its routes), prefixes in table order.
    pub fn routes(&self, args: &[&str]) -> Vec<(ipnet::IpNet, String)> {
        let mut cmd = vec!["show", "route"];
        cmd.extend_from_slice(args);
        let (_, out) = self.birdc(&cmd);
        parse_bird_routes(&out)
    }
}

/// Parse BIRD 2's `show route` output: one entry per prefix with all its lines (alternative
/// routes and next hops included).
pub fn parse_bird_routes(text: &str) -> Vec<(ipnet::IpNet, String)> {
    let mut out: Vec<(ipnet::IpNet, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("BIRD ") || line.starts_with("Table ") || line.trim().is_empty() {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        let starts_entry = !line.starts_with(char::is_whitespace);
        match first.parse::<ipnet::IpNet>() {
            Ok(prefix) if starts_entry => out.push((prefix, format!("{line}\n"))),
            _ => {
                if let Some((_, text)) = out.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    out
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- bird {} log ---\n{}", self.name, self.log_text());
        }
    }
}

pub mod ovn;
