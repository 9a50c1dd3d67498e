//! Golden tests of the rendering, and a privileged test in network namespaces:
//!
//! ```text
//!   pod netns                node netns (nft runs here)             inet netns
//!   eth0 10.244.1.5/32 --- pod0 169.254.1.1/32      up0 203.0.113.1/24 --- eth0 203.0.113.2/24
//!   default via 169.254.1.1    10.245.0.9 via 203.0.113.2                 lo 10.245.0.9/32
//! ```
//!
//! A UDP socket opened inside the inet netns reports the source address it sees. The root
//! netns is never touched: `nft` only runs on a thread inside the node netns.

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::rules::{loaded_digest, render, render_remove, Family, NatPool, NatRules};
use super::{Applied, Nft};
use crate::dataplane::netns;

fn pool(cidr: &str, nat_outgoing: bool) -> NatPool {
    NatPool {
        cidr: cidr.parse().unwrap(),
        nat_outgoing,
    }
}

#[test]
fn renders_the_golden_batch() {
    let pools = [
        pool("10.250.0.0/16", false),
        pool("10.244.0.0/16", true),
        pool("10.244.7.0/24", true), // inside the first: merged away
    ];
    let rules = NatRules::from_pools(&pools);
    assert!(rules.v6.is_none(), "no IPv6 pool: no ip6 table");
    let digest = rules.v4.as_ref().unwrap().digest();
    assert_eq!(
        digest, "ef4f1754467554de",
        "a fixed vector: changing it rewrites every node's table"
    );
    let table = json!({"family": "ip", "name": "lanes"});
    let six = json!({"family": "ip6", "name": "lanes"});
    let field = |f: &str| json!({"payload": {"protocol": "ip", "field": f}});
    let want = json!({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
        {"add": {"chain": {"family": "ip", "table": "lanes", "name": "postrouting",
            "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}},
        {"add": {"set": {"family": "ip", "table": "lanes", "name": "lanes-pools", "type": "ipv4_addr",
            "flags": ["interval"], "elem": [
                {"prefix": {"addr": "10.244.0.0", "len": 16}},
                {"prefix": {"addr": "10.250.0.0", "len": 16}}]}}},
        {"add": {"set": {"family": "ip", "table": "lanes", "name": "lanes-masq-pools", "type": "ipv4_addr",
            "flags": ["interval"], "elem": [{"prefix": {"addr": "10.244.0.0", "len": 16}}]}}},
        {"add": {"rule": {"family": "ip", "table": "lanes", "chain": "postrouting",
            "comment": format!("lanes natOutgoing sha256:{digest}"),
            "expr": [
                {"match": {"op": "==", "left": field("saddr"), "right": "@lanes-masq-pools"}},
                {"match": {"op": "!=", "left": field("daddr"), "right": "@lanes-pools"}},
                {"counter": {"packets": 0, "bytes": 0}},
                {"masquerade": {"flags": "fully-random"}}]}}},
        {"add": {"table": six}},
        {"delete": {"table": six}},
    ]});
    assert_eq!(render(&rules, &Family::ALL), want);
    // The digest comes back out of what `nft -j list` prints (handles and all).
    let mut listed = render(&rules, &[Family::Ip]);
    listed["nftables"][7]["add"]["rule"]["handle"] = 4.into();
    let listing = json!({"nftables": [listed["nftables"][7]["add"].clone()]});
    assert_eq!(loaded_digest(&listing), Some(digest));
}

#[test]
fn families_are_independent_and_removal_deletes_both() {
    let rules = NatRules::from_pools(&[
        pool("10.244.0.0/16", false),
        pool("fd00:10:244::/48", true),
        pool("fd00:10:300::/48", false),
    ]);
    assert!(rules.v4.is_none(), "no IPv4 pool masquerades");
    let v6 = rules.v6.as_ref().unwrap();
    assert_eq!(v6.pools.len(), 2);
    assert_eq!(v6.masq, ["fd00:10:244::/48".parse().unwrap()]);
    let batch = render(&rules, &[Family::Ip6]);
    let text = batch.to_string();
    assert!(
        text.contains(r#""type":"ipv6_addr""#) && text.contains(r#""protocol":"ip6""#),
        "{text}"
    );
    assert!(
        !text.contains(r#""family":"ip""#),
        "only the ip6 family was asked for: {text}"
    );
    let removal = render_remove();
    let commands: Vec<String> = removal["nftables"].as_array().unwrap()[1..]
        .iter()
        .map(|c| {
            let (verb, obj) = c.as_object().unwrap().iter().next().unwrap();
            format!(
                "{verb} table {} {}",
                obj["table"]["family"].as_str().unwrap(),
                obj["table"]["name"]
            )
        })
        .collect();
    let want = [
        r#"add table ip "lanes""#,
        r#"delete table ip "lanes""#,
        r#"add table ip6 "lanes""#,
        r#"delete table ip6 "lanes""#,
    ];
    assert_eq!(commands, want);
    assert_eq!(NatRules::from_pools(&[]), NatRules::default());
}

/// A named netns, deleted on drop (also when the test panics).
struct Ns {
    name: String,
    path: PathBuf,
}

impl Ns {
    fn new() -> Ns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "lanesnat-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cmd("ip", &["netns", "add", &name]);
        let ns = Ns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        cmd("ip", &full);
    }

    /// Runs `f` on a thread inside this netns: `nft` children and sockets are born here.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        netns::run_in_new_thread(&self.path, f).expect("enter netns")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

fn cmd(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root and `nft` are needed; without them the test prints why and passes, except under
/// `CI=true`, where it fails.
fn privileged(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0");
    let has = |p: &str, arg: &str| Command::new(p).arg(arg).output().is_ok_and(|o| o.status.success());
    let missing = if !root {
        Some("needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for netns)")
    } else if !has("ip", "-V") {
        Some("needs iproute2's `ip`")
    } else if !has(&Nft::default().program().to_string_lossy(), "--version") {
        Some("needs `nft` (Debian: nftables)")
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

/// The source address the inet netns sees for a datagram the pod sends to `dst`, from a new
/// socket each time (a new conntrack entry, so NAT is decided afresh).
fn seen_source(pod: &Ns, listener: &UdpSocket, dst: &str) -> Option<IpAddr> {
    let sender = pod.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut buf = [0u8; 16];
    for _ in 0..3 {
        sender.send_to(b"lanes", (dst, port)).unwrap();
        if let Ok((_, peer)) = listener.recv_from(&mut buf) {
            while listener.recv_from(&mut buf).is_ok() {} // drop the duplicates
            return Some(peer.ip());
        }
    }
    None
}

fn tables(node: &Ns, nft: &Nft) -> (Option<Value>, Option<Value>) {
    node.run(|| (nft.list(Family::Ip).unwrap(), nft.list(Family::Ip6).unwrap()))
}

#[test]
fn masquerades_pool_traffic_to_the_outside_only() {
    if !privileged("masquerades_pool_traffic_to_the_outside_only") {
        return;
    }
    let (node, pod, inet) = (Ns::new(), Ns::new(), Ns::new());
    node.ip(&[
        "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
    ]);
    node.ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &inet.name,
    ]);
    for args in [
        &["addr", "add", "169.254.1.1/32", "dev", "pod0"][..],
        &["addr", "add", "203.0.113.1/24", "dev", "up0"],
        &["link", "set", "pod0", "up"],
        &["link", "set", "up0", "up"],
        &["route", "add", "10.244.1.5/32", "dev", "pod0"],
        &["route", "add", "10.245.0.9/32", "via", "203.0.113.2"],
    ] {
        node.ip(args);
    }
    for args in [
        &["addr", "add", "10.244.1.5/32", "dev", "eth0"][..],
        &["link", "set", "eth0", "up"],
        &["route", "add", "169.254.1.1/32", "dev", "eth0", "scope", "link"],
        &["route", "add", "default", "via", "169.254.1.1"],
    ] {
        pod.ip(args);
    }
    for args in [
        &["addr", "add", "203.0.113.2/24", "dev", "eth0"][..],
        &["addr", "add", "10.245.0.9/32", "dev", "lo"],
        &["link", "set", "eth0", "up"],
        &["route", "add", "default", "via", "203.0.113.1"],
    ] {
        inet.ip(args);
    }
    node.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
        .unwrap();
    let listener = inet.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap();
    listener.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let nft = Nft::default();
    let pod_ip: IpAddr = "10.244.1.5".parse().unwrap();

    // Before anything is loaded the pod's address leaves as it is.
    assert_eq!(seen_source(&pod, &listener, "203.0.113.2"), Some(pod_ip));

    let pools = [pool("10.244.0.0/16", true), pool("10.245.0.0/16", false)];
    assert_eq!(node.run(|| nft.apply(&pools)).unwrap(), Applied::Updated);
    assert_eq!(node.run(|| nft.apply(&pools)).unwrap(), Applied::Unchanged);
    let node_ip: IpAddr = "203.0.113.1".parse().unwrap();
    assert_eq!(
        seen_source(&pod, &listener, "203.0.113.2"),
        Some(node_ip),
        "masqueraded"
    );
    assert_eq!(
        seen_source(&pod, &listener, "10.245.0.9"),
        Some(pod_ip),
        "pool to pool keeps its source"
    );
    let (v4, v6) = tables(&node, &nft);
    assert!(v6.is_none(), "no IPv6 pool, no ip6 table");
    let rule = v4.unwrap()["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("rule").cloned())
        .expect("the masquerade rule");
    let packets = rule["expr"][2]["counter"]["packets"].as_u64().unwrap();
    assert_eq!(
        packets, 1,
        "one masqueraded flow (NAT rules see a flow's first packet): {rule}"
    );
    // Counters survive an unchanged apply; a change rewrites the table.
    assert_eq!(node.run(|| nft.apply(&pools)).unwrap(), Applied::Unchanged);
    let with_v6 = [pools[0], pools[1], pool("fd00:10:244::/48", true)];
    assert_eq!(node.run(|| nft.apply(&with_v6)).unwrap(), Applied::Updated);
    let (v4, v6) = tables(&node, &nft);
    assert!(v4.is_some() && v6.is_some());

    // No pool with natOutgoing: both tables go, and the pod's address leaves as it is.
    let none = [pool("10.244.0.0/16", false), pool("10.245.0.0/16", false)];
    assert_eq!(node.run(|| nft.apply(&none)).unwrap(), Applied::Updated);
    assert_eq!(tables(&node, &nft), (None, None));
    assert_eq!(seen_source(&pod, &listener, "203.0.113.2"), Some(pod_ip));
    assert_eq!(node.run(|| nft.apply(&none)).unwrap(), Applied::Unchanged);

    // remove() is the cleanup: idempotent, and leaves other tables alone.
    node.run(|| cmd(&nft.program().to_string_lossy(), &["add", "table", "inet", "other"]));
    node.run(|| nft.reload(&pools)).unwrap();
    node.run(|| nft.remove()).unwrap();
    node.run(|| nft.remove()).unwrap();
    assert_eq!(tables(&node, &nft), (None, None));
    let out = node
        .run(|| Command::new(nft.program()).args(["list", "tables"]).output())
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "table inet other");
}
