//! Helpers for the privileged tests: throwaway netns, `ip -j` queries, running async code with
//! the node netns as "the host".

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::dataplane::netns;

/// Whether a privileged test can run. Without root (or `ip`, or `ping` when `ping` is set) it
/// prints why and returns false, except under `CI=true` where a missing prerequisite is a
/// failure: CI must never report a skipped dataplane test as passed.
pub fn privileged(test: &str, ping: bool) -> bool {
    let missing = if effective_uid() != Some(0) {
        Some("needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for netns)")
    } else if !runs("ip", &["-V"]) {
        Some("needs iproute2's `ip`")
    } else if ping && !runs("ping", &["-V"]) {
        Some("needs `ping` (Debian: iputils-ping)")
    } else {
        None
    };
    let Some(why) = missing else { return true };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why}, and CI=true"
    );
    eprintln!("skipped {test}: {why}");
    false
}

fn effective_uid() -> Option<u32> {
    // /proc/self/status rather than geteuid(): no extra nix feature and no unsafe.
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A named netns (`ip netns add lanesdp-<pid>-<n>`), deleted on drop, also when a test panics.
pub struct TestNetns {
    pub name: String,
    pub path: PathBuf,
}

impl TestNetns {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("lanesdp-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        TestNetns {
            path: Path::new("/run/netns").join(&name),
            name,
        }
    }

    /// A "node": lo up, plus an uplink `up0` (a veth whose peer `up0p` stays in the same netns,
    /// since this kernel has no dummy driver) holding 10.99.0.1/32 and the default route. The
    /// default route matters: proxy ARP only answers for 169.254.1.1 when the node routes it
    /// out of some other interface than the asking veth.
    pub fn node() -> Self {
        let node = Self::new();
        node.ip(&["link", "set", "lo", "up"]);
        node.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up0p"]);
        node.ip(&["link", "set", "up0p", "up"]);
        node.ip(&["link", "set", "up0", "up"]);
        node.ip(&["addr", "add", "10.99.0.1/32", "dev", "up0"]);
        node.ip(&["route", "add", "default", "dev", "up0"]);
        node
    }

    /// `ip -n <ns> <args>`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -n <ns> -j <args>` parsed; `[]` for empty output.
    pub fn ip_json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        if out.trim().is_empty() {
            return Vec::new();
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {out}"))
    }

    /// Names of the links in this netns.
    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }

    /// IPv4 routes with `proto 76`, as `ip -j route show` objects.
    pub fn lanes_routes(&self) -> Vec<Value> {
        self.ip_json(&["route", "show", "table", "main"])
            .into_iter()
            .filter(|r| r["protocol"] == "76")
            .collect()
    }

    /// A `/proc/sys` value as this netns sees it (read from a thread inside it).
    pub fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{key}");
        let read = path.clone();
        netns::run_in(&self.path, move || std::fs::read_to_string(read))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_string()
    }

    /// `ip netns exec <ns> ping -c1 -W1 <dst>` succeeded.
    pub fn ping(&self, dst: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "ping", "-c1", "-W1", dst])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Deleting the netns also deletes every veth end inside it, and with it the peers.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Runs `f` to completion on a fresh multi-thread runtime whose threads all live in `ns`:
/// inside, `ns` is "the host" for `Dataplane::new`, `/proc/sys/net` and every spawned thread.
pub fn in_netns<F, Fut, T>(ns: &TestNetns, f: F) -> T
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    netns::run_in_new_thread(&ns.path, || {
        // Worker threads are spawned from this thread and so inherit its netns.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(f())
    })
    .expect("enter node netns")
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
