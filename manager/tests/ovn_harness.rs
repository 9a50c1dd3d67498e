//! Smoke test of the real-OVN harness (`support/ovn.rs`): central + two nodes (netns) with
//! the userspace datapath, a hand-made pod on each node on logical switch `ls1`, and a ping
//! across nodes through geneve. Also: nothing is left behind when a test panics mid-way.
//!
//! Run with `--nocapture` to see the bring-up timings.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::ovn::*;
use support::*;

#[test]
fn ovn_two_nodes_geneve_ping() {
    if !prerequisites("ovn_two_nodes_geneve_ping", OVN_TOOLS) {
        return;
    }
    let t0 = Instant::now();
    // Declaration order is drop order reversed: pods, nodes, node netns, central, underlay.
    let underlay = Switch::new();
    let central = OvnCentral::start(&underlay, "192.168.200.10/24");
    let ns1 = Netns::new("ovnn-");
    let ns2 = Netns::new("ovnn-");
    let n1 = OvnNode::start(&ns1.name, "node1", &underlay, "192.168.200.11/24", &central, false);
    // node2 as when lanesd manages the chassis: the test plays lanesd and sets the ids.
    let mut n2 = OvnNode::start(&ns2.name, "node2", &underlay, "192.168.200.12/24", &central, true);
    assert!(n2.controller_pid().is_none());
    let ids: Vec<String> = n2
        .chassis_external_ids()
        .into_iter()
        .map(|(k, v)| format!("external_ids:{k}={v}"))
        .collect();
    let mut args = vec!["set", "open", "."];
    args.extend(ids.iter().map(String::as_str));
    n2.vsctl(&args);
    n2.start_controller();
    let t_nodes = t0.elapsed();
    let t = Instant::now();
    prime_tunnels(&[&n1, &n2]);
    let t_prime = t.elapsed();

    let mut chassis = central.chassis();
    chassis.sort();
    assert_eq!(chassis, ["node1", "node2"]);

    let t = Instant::now();
    central.nbctl(&[
        "ls-add",
        "ls1",
        "--",
        "lsp-add",
        "ls1",
        "p1",
        "--",
        "lsp-set-addresses",
        "p1",
        "0a:58:0a:90:00:0b 10.144.0.11",
        "--",
        "lsp-add",
        "ls1",
        "p2",
        "--",
        "lsp-set-addresses",
        "p2",
        "0a:58:0a:90:00:0c 10.144.0.12",
    ]);
    let pod1 = Netns::new("ovnp-");
    let pod2 = Netns::new("ovnp-");
    n1.plug_pod(&pod1, "p1h", "p1", "0a:58:0a:90:00:0b", "10.144.0.11/24", 1400);
    n2.plug_pod(&pod2, "p2h", "p2", "0a:58:0a:90:00:0c", "10.144.0.12/24", 1400);
    n1.wait_installed("p1h", 30);
    n2.wait_installed("p2h", 30);
    let t_installed = t.elapsed();
    for p in ["p1", "p2"] {
        wait_for(&format!("LSP {p} up"), 30, || {
            (central.nbctl(&["get", "logical_switch_port", p, "up"]).trim() == "true").then_some(())
        });
    }
    // OVN made the geneve tunnels between the chassis.
    for (n, peer) in [(&n1, "192.168.200.12"), (&n2, "192.168.200.11")] {
        let tun = n.vsctl(&["--bare", "--columns=options", "find", "interface", "type=geneve"]);
        assert!(tun.contains(peer), "{}: no geneve tunnel to {peer}: {tun}", n.name);
    }

    let mut attempts = 0;
    let ok = (0..10).any(|_| {
        attempts += 1;
        pod1.ping("10.144.0.12")
    });
    let t_ping = t.elapsed();
    assert!(ok, "pod1 -> pod2 across nodes: no reply in {attempts} pings");
    assert!(pod2.ping("10.144.0.11"), "pod2 -> pod1");
    let total = t0.elapsed();
    println!(
        "ovn bring-up: central {:?}, node1 {:?}, node2 {:?}, central+nodes {:?}, prime {:?}, \
         pods ovn-installed {:?}, first cross-node ping {:?} (attempt {attempts}), total {:?}",
        central.startup, n1.startup, n2.startup, t_nodes, t_prime, t_installed, t_ping, total
    );
    assert_eq!(attempts, 1, "the first cross-node ping after prime_tunnels was lost");

    let t = Instant::now();
    drop((pod1, pod2, n2, n1, ns1, ns2, central, underlay));
    println!("ovn tear-down: {:?}", t.elapsed());
}

/// A panic mid-test leaves no daemon, netns or instance dir behind.
#[test]
fn ovn_cleanup_after_panic() {
    if !prerequisites("ovn_cleanup_after_panic", OVN_TOOLS) {
        return;
    }
    #[derive(Default)]
    struct Seen {
        pids: Vec<u32>,
        /// (child PID, pidfile PID) of vswitchd and ovn-controller.
        same: Vec<(Option<u32>, u32)>,
        netns: Vec<String>,
        dirs: Vec<std::path::PathBuf>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let r = std::panic::catch_unwind(move || {
        let underlay = Switch::new();
        let central = OvnCentral::start(&underlay, "192.168.200.10/24");
        let ns1 = Netns::new("ovnn-");
        let n1 = OvnNode::start(&ns1.name, "node1", &underlay, "192.168.200.11/24", &central, false);
        let mut s = s.lock().unwrap();
        s.pids.extend(central.northd_pid());
        let pidfile = |f: &str| std::fs::read_to_string(n1.dir.join(f)).unwrap().trim().parse().unwrap();
        s.same.push((n1.vswitchd_pid(), pidfile("vswitchd.pid")));
        s.same.push((n1.controller_pid(), pidfile("ovn-controller.pid")));
        s.netns.extend([
            underlay.netns.name.clone(),
            central.netns.name.clone(),
            ns1.name.clone(),
        ]);
        s.dirs.extend([central.dir.clone(), n1.dir.clone()]);
        for f in ["ovsdb.pid", "vswitchd.pid", "ovn-controller.pid"] {
            let pid = std::fs::read_to_string(n1.dir.join(f)).unwrap();
            s.pids.push(pid.trim().parse().unwrap());
        }
        for f in ["nb.pid", "sb.pid"] {
            let pid = std::fs::read_to_string(central.dir.join(f)).unwrap();
            s.pids.push(pid.trim().parse().unwrap());
        }
        drop(s);
        panic!("deliberate panic with OVN running");
    });
    assert!(r.is_err());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.pids.len(), 6, "{:?}", seen.pids);
    // `ip netns exec` and `setpriv` exec: the child Drop kills is the daemon itself.
    for (child, pidfile) in &seen.same {
        assert_eq!(*child, Some(*pidfile));
    }
    for pid in &seen.pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still running: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        );
    }
    let list = run("ip", &["netns", "list"]);
    for ns in &seen.netns {
        assert!(!list.split_whitespace().any(|w| w == ns), "netns {ns} left behind");
    }
    for d in &seen.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}
