//! Timing runs (ignored by default):
//! `cargo test --release -- --ignored --nocapture dataplane::tests::bench`

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
        report("netns::run_in (resident thread)", thread);

        let mut connect = Vec::new();
        for pod in &pods {
            let file = netns::open(&pod.path).unwrap();
            let t = Instant::now();
            let nl = netns::netlink_in_file(&file, &pod.path, &dp.rt).unwrap();
            connect.push(t.elapsed());
            drop(nl);
        }
        report("pod netlink connect", connect);

        std::thread::sleep(Duration::from_secs(2));
        let mut setup = Vec::new();
        for spec in &specs {
            let t = Instant::now();
            dp.setup_pod(spec).await.unwrap();
            setup.push(t.elapsed());
        }
        report("setup_pod", setup);

        // Let the kernel's after-work of 200 new links (addrconf, linkwatch) settle first.
        std::thread::sleep(Duration::from_secs(2));
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
        std::thread::sleep(Duration::from_secs(2));
        let (mut returned, mut finished) = (Vec::new(), Vec::new());
        for spec in &specs {
            let t = Instant::now();
            let slow = dp
                .teardown_pod_deferred(&spec.host_ifname, &spec.addresses, Some(&spec.netns))
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
    let n = pods_from_env();
    let node = TestNetns::node();
    let pods: Vec<TestNetns> = (0..n).map(|_| TestNetns::new()).collect();
    let specs: Vec<PodSpec> = pods.iter().enumerate().map(|(i, p)| spec(p, i)).collect();
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        for spec in &specs {
            dp.setup_pod(spec).await.unwrap();
        }
        std::thread::sleep(Duration::from_secs(2));
        // Variants take turns so that background kernel work hits them alike.
        let mut v: [Vec<Duration>; 9] = Default::default();
        for (i, (spec, pod)) in specs.iter().zip(&pods).enumerate() {
            match i % 5 {
                0 => {
                    let t = Instant::now();
                    let ok = Command::new("ip")
                        .args(["-n", &node.name, "link", "show", "lo"])
                        .output();
                    v[0].push(t.elapsed());
                    assert!(ok.unwrap().status.success());
                    let t = Instant::now();
                    let args = ["-n", &node.name, "link", "del", &spec.host_ifname];
                    assert!(Command::new("ip").args(args).status().unwrap().success());
                    v[1].push(t.elapsed());
                }
                1 => {
                    let link = dp.host.link_get(&spec.host_ifname).await.unwrap().unwrap();
                    let t = Instant::now();
                    dp.host.link_del(link.index, &link.name).await.unwrap();
                    v[2].push(t.elapsed());
                }
                2 => {
                    let file = netns::open(&pod.path).unwrap();
                    let nl = netns::netlink_in_file(&file, &pod.path, &dp.rt).unwrap();
                    let link = nl.link_get(&spec.container_ifname).await.unwrap().unwrap();
                    let t = Instant::now();
                    nl.link_del(link.index, "eth0").await.unwrap();
                    v[3].push(t.elapsed());
                }
                3 => {
                    let t = Instant::now();
                    dp.teardown_pod(&spec.host_ifname, &[]).await.unwrap();
                    v[7].push(t.elapsed());
                    let t = Instant::now();
                    dp.teardown_pod(&spec.host_ifname, &spec.addresses).await.unwrap();
                    v[8].push(t.elapsed());
                }
                _ => {
                    let link = dp.host.link_get(&spec.host_ifname).await.unwrap().unwrap();
                    let t = Instant::now();
                    dp.host.link_set_down(link.index, &link.name).await.unwrap();
                    v[4].push(t.elapsed());
                    let t = Instant::now();
                    dp.host.link_rename(link.index, &link.name, "lanesdead").await.unwrap();
                    v[5].push(t.elapsed());
                    let t = Instant::now();
                    dp.host.link_del(link.index, "lanesdead").await.unwrap();
                    v[6].push(t.elapsed());
                }
            }
        }
        let names = [
            "`ip link show lo` (process overhead)",
            "`ip link del <host end>` (incl. process)",
            "netlink delete, host end",
            "netlink delete, pod end (pod socket)",
            "set host end down",
            "rename host end",
            "netlink delete, host end already down",
            "teardown_pod",
            "teardown_pod again (nothing left)",
        ];
        for (name, samples) in names.iter().zip(v) {
            report(name, samples);
        }
    });
}

/// Per-step costs of what `setup_pod` does, run one after another.
#[test]
#[ignore = "timing run; needs root"]
fn bench_setup_steps() {
    if !privileged("bench_setup_steps", false) {
        return;
    }
    let n = pods_from_env();
    let node = TestNetns::node();
    let pods: Vec<TestNetns> = (0..n).map(|_| TestNetns::new()).collect();
    let specs: Vec<PodSpec> = pods.iter().enumerate().map(|(i, p)| spec(p, i)).collect();
    in_netns(&node, || async {
        use crate::dataplane::{link::veth_msg, route, sysctl, POD_GATEWAY_V4};
        use std::os::fd::AsRawFd;
        let dp = Dataplane::new().await.unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let mut v: [Vec<Duration>; 8] = Default::default();
        for spec in &specs {
            let mut lap = {
                let mut t = Instant::now();
                move || {
                    let d = t.elapsed();
                    t = Instant::now();
                    d
                }
            };
            let file = netns::open(&spec.netns).unwrap();
            let pod = netns::netlink_in_file(&file, &spec.netns, &dp.rt).unwrap();
            v[0].push(lap());
            let msg = veth_msg(&spec.host_ifname, "eth0", 1450, file.as_raw_fd());
            dp.host.link_add(msg, "veth").await.unwrap();
            v[1].push(lap());
            let host = dp.host.link_get(&spec.host_ifname).await.unwrap().unwrap();
            v[2].push(lap());
            sysctl::enable_proxy_arp(&host.name).unwrap();
            sysctl::disable_proxy_delay(&host.name).unwrap();
            v[3].push(lap());
            let addr = spec.addresses[0];
            dp.host
                .route_replace(route::link_route_msg(addr, host.index), "r")
                .await
                .unwrap();
            v[4].push(lap());
            let eth0 = pod.link_get("eth0").await.unwrap().unwrap();
            pod.addr_replace(eth0.index, "eth0", addr).await.unwrap();
            v[5].push(lap());
            pod.link_set_up(eth0.index, "eth0").await.unwrap();
            pod.link_set_up(1, "lo").await.unwrap();
            v[6].push(lap());
            let gw = ipnet::IpNet::from(std::net::IpAddr::from(POD_GATEWAY_V4));
            pod.route_add(route::link_route_msg(gw, eth0.index), "gw")
                .await
                .unwrap();
            pod.route_add(route::default_via_msg(POD_GATEWAY_V4, eth0.index), "d")
                .await
                .unwrap();
            v[7].push(lap());
        }
        let names = [
            "open netns + pod netlink socket",
            "create veth (RTM_NEWLINK)",
            "get host link",
            "2 sysctl writes",
            "host /32 route",
            "pod: get link + add address",
            "pod: eth0 up + lo up",
            "pod: 2 routes",
        ];
        for (name, samples) in names.iter().zip(v) {
            report(name, samples);
        }
    });
}

/// What entering a netns costs: a fresh thread per entry vs the resident thread.
#[test]
#[ignore = "timing run; needs root"]
fn bench_netns_entry() {
    if !privileged("bench_netns_entry", false) {
        return;
    }
    let pods: Vec<TestNetns> = (0..50).map(|_| TestNetns::new()).collect();
    std::thread::sleep(Duration::from_secs(2));
    // Separate loops: exiting threads disturb whatever runs right after them.
    let (mut fresh, mut resident, mut spawn) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..200 {
        let t = Instant::now();
        std::thread::spawn(|| ()).join().unwrap();
        spawn.push(t.elapsed());
    }
    for i in 0..200 {
        let t = Instant::now();
        netns::run_in_new_thread(&pods[i % pods.len()].path, || ()).unwrap();
        fresh.push(t.elapsed());
    }
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..200 {
        let t = Instant::now();
        netns::run_in(&pods[i % pods.len()].path, || ()).unwrap();
        resident.push(t.elapsed());
    }
    report("bare std::thread spawn + join", spawn);
    report("run_in_new_thread (fresh thread)", fresh);
    report("run_in (resident thread)", resident);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut connect = Vec::new();
    for _ in 0..200 {
        let _rt = rt.enter();
        let t = Instant::now();
        let connection = rtnetlink::new_connection().unwrap();
        connect.push(t.elapsed());
        drop(connection);
    }
    report("rtnetlink::new_connection (no netns)", connect);
}
