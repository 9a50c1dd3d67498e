//! The least of `manager/tests/support/mod.rs` that its OVN harness (`support/ovn.rs`, included
//! as is below) needs in this crate: `run`, `Netns` and `Switch`. The rest of that file (lanesd
//! `Node`, cnidriver, BIRD) uses `env!("CARGO_BIN_EXE_lanesd")`, which only exists for the
//! manager's own tests, so the benchmark has its own lanesd handling.
//!
//! One difference: every namespace is named `<tag>-<prefix><n>`, where the tag comes from
//! `LANES_BENCH_TAG` (scripts/bench-ovn.sh sets it), so that the script can find and remove
//! whatever a killed run left behind.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "../../manager/tests/support/ovn.rs"]
pub mod ovn;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The prefix of every namespace this process makes.
pub fn tag() -> String {
    std::env::var("LANES_BENCH_TAG").unwrap_or_else(|_| format!("lob{}", std::process::id()))
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = format!("{}-{prefix}{}", tag(), SEQ.fetch_add(1, Ordering::SeqCst));
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Run a command inside; (success, stdout).
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Run a command; stdout; panics on failure.
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

/// A layer-2 segment: a bridge in its own netns; nodes plug in with a veth.
pub struct Switch {
    pub netns: Netns,
    ports: AtomicUsize,
}

impl Switch {
    pub fn new() -> Switch {
        let netns = Netns::new("sw");
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
        let sw = self.netns.name.as_str();
        run(
            "ip",
            &[
                "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", &ns.name,
            ],
        );
        run("ip", &["-n", sw, "link", "set", &port, "master", "br0", "up"]);
        run("ip", &["-n", &ns.name, "addr", "add", cidr, "dev", ifname]);
        run("ip", &["-n", &ns.name, "link", "set", ifname, "up"]);
    }
}
