//! Timing runs (ignored by default):
//! `cargo test --release -- --ignored --nocapture dataplane::tests::bench`

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::support::{in_netns, privileged, TestNetns};
use crate::dataplane::{host_ifname, netns, Dataplane, PodSpec};

fn pods_from_env() -> usize {
    std::env::var("LANES_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    eprintln!(
        "{what:<40} n={:<4} p50={:>9.3?} p99={:>9.3?} max={:>9.3?}",
        samples.len(),
        pct(50),
        pct(99),
        samples[samples.len() - 1]
    );
}

fn spec(pod: &TestNetns, i: usize) -> PodSpec {
    PodSpec {
        netns: pod.path.clone(),
        container_ifname: "eth0".into(),
        host_ifname: host_ifname(&format!("bench-{i}"), "eth0"),
        addresses: vec![format!("10.250.{}.{}/32", i / 250, i % 250 + 1).parse().unwrap()],
        mtu: 1450,
    }
}

#[test]
#[ignore = "timing run; needs root"]
fn bench_setup_teardown() {
    if !privileged("bench_setup_teardown", false) {
        return;
    }
    let n = pods_from_env();
    let node = TestNetns::node();
    let pods: Vec<TestNetns> = (0..n).map(|_| TestNetns::new()).collect();
    let specs: Vec<PodSpec> = pods.iter().enumerate().map(|(i, p)| spec(p, i)).collect();
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        dp.ensure_ip_forwarding().await.unwrap();

        let mut thread = Vec::new();
        for pod in &pods {
            let t = Instant::now();
            netns::run_in(&pod.path, || ()).unwrap();
            thread.push(t.elapsed());
        }
        report("netns thread (spawn+setns+join)", thread);

        let mut connect = Vec::new();
        for pod in &pods {
            let file = netns::open(&pod.path).unwrap();
            let t = Instant::now();
            let nl = netns::netlink_in_fd(file.as_fd(), &pod.path, &dp.rt).unwrap();
            connect.push(t.elapsed());
            drop(nl);
        }
        report("pod netlink connect", connect);

        let mut setup = Vec::new();
        for spec in &specs {
            let t = Instant::now();
            dp.setup_pod(spec).await.unwrap();
            setup.push(t.elapsed());
        }
        report("setup_pod", setup);

        let mut teardown = Vec::new();
        for spec in &specs {
            let t = Instant::now();
            dp.teardown_pod(&spec.host_ifname, &spec.addresses).await.unwrap();
            teardown.push(t.elapsed());
        }
        report("teardown_pod", teardown);

        // The deferred variant: time until the call returns, then until the link is gone.
        for spec in &specs {
            dp.setup_pod(spec).await.unwrap();
        }
        let (mut returned, mut finished) = (Vec::new(), Vec::new());
        for spec in &specs {
            let t = Instant::now();
            let slow = dp
                .teardown_pod_deferred(&spec.host_ifname, &spec.addresses)
                .await
                .unwrap();
            returned.push(t.elapsed());
            slow.await.unwrap().unwrap();
            finished.push(t.elapsed());
        }
        report("teardown_pod_deferred (returns)", returned);
        report("teardown_pod_deferred (link gone)", finished);
    });
}

#[test]
#[ignore = "timing run; needs root"]
fn bench_delete_variants() {
    if !privileged("bench_delete_variants", false) {
        return;
    }
    let n = pods_from_env().min(60);
    let node = TestNetns::node();
    let pods: Vec<TestNetns> = (0..n).map(|_| TestNetns::new()).collect();
    let specs: Vec<PodSpec> = pods.iter().enumerate().map(|(i, p)| spec(p, i)).collect();
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        for spec in &specs {
            dp.setup_pod(spec).await.unwrap();
        }
        let third = n / 3;
        // (a) `ip link del` as a subprocess, minus the cost of a no-op `ip` run.
        let (mut ip_del, mut ip_noop) = (Vec::new(), Vec::new());
        for spec in &specs[..third] {
            let t = Instant::now();
            let ok = Command::new("ip")
                .args(["-n", &node.name, "link", "show", "lo"])
                .output();
            ip_noop.push(t.elapsed());
            assert!(ok.unwrap().status.success());
            let t = Instant::now();
            let args = ["-n", &node.name, "link", "del", &spec.host_ifname];
            assert!(Command::new("ip").args(args).status().unwrap().success());
            ip_del.push(t.elapsed());
        }
        report("`ip link show lo` (process overhead)", ip_noop);
        report("`ip link del <host end>`", ip_del);
        // (b) deleting the pod end through a socket in the pod netns.
        let mut pod_end = Vec::new();
        for (spec, pod) in specs[third..2 * third].iter().zip(&pods[third..]) {
            let file = netns::open(&pod.path).unwrap();
            let nl = netns::netlink_in_fd(file.as_fd(), &pod.path, &dp.rt).unwrap();
            let link = nl.link_get(&spec.container_ifname).await.unwrap().unwrap();
            let t = Instant::now();
            nl.link_del(link.index, "eth0").await.unwrap();
            pod_end.push(t.elapsed());
        }
        report("netlink delete of the pod end", pod_end);
        // (c) the steps of the deferred variant, one by one.
        let (mut down, mut rename, mut del) = (Vec::new(), Vec::new(), Vec::new());
        for spec in &specs[2 * third..] {
            let link = dp.host.link_get(&spec.host_ifname).await.unwrap().unwrap();
            let t = Instant::now();
            dp.host.link_set_down(None, link.index, &link.name).await.unwrap();
            down.push(t.elapsed());
            let t = Instant::now();
            dp.host
                .link_rename(None, link.index, &link.name, "lanesdead")
                .await
                .unwrap();
            rename.push(t.elapsed());
            let t = Instant::now();
            dp.host.link_del(link.index, "lanesdead").await.unwrap();
            del.push(t.elapsed());
        }
        report("set host end down", down);
        report("rename host end", rename);
        report("netlink delete of the (down) host end", del);
    });
}
