//! Crash safety: kill -9 lanesd between and during ADDs. After a restart no
//! address is handed out twice, old pods can still be deleted, and the
//! kernel matches the store (every `lan*` veth has an allocation).

mod support;

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::*;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;

fn attachments(node: &Node) -> Vec<Value> {
    let (ok, out) = node.lanesctl(&["-o", "json", "attachments"]);
    assert!(ok, "lanesctl attachments");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Store and kernel agree, and no address is held twice.
fn assert_consistent(node: &Node) -> Vec<Value> {
    let atts = attachments(node);
    let mut ips = HashSet::new();
    for a in &atts {
        for ip in a["ips"].as_array().unwrap() {
            assert!(ips.insert(ip.as_str().unwrap().to_string()), "duplicate address {ip}");
        }
    }
    let hosts: HashSet<String> = atts
        .iter()
        .map(|a| a["hostIfname"].as_str().unwrap().to_string())
        .collect();
    for link in node.netns.links().into_iter().filter(|l| l.starts_with("lan")) {
        assert!(hosts.contains(&link), "veth {link} has no allocation after restart");
    }
    atts
}

#[test]
fn kill9_between_and_during_adds() {
    if !prerequisites("kill9_between_and_during_adds", &["ip"]) {
        return;
    }
    let mut node = Node::new("node1", SEED_POOL);
    // 10 before, 60 in flight when the kill comes (enough that it lands mid-way).
    let pods: Vec<Netns> = (0..70).map(|_| Netns::new("litr-")).collect();
    let mut first = HashSet::new();
    for (i, p) in pods.iter().take(5).enumerate() {
        let (code, out) = node.shim(&cni_env(&node, "ADD", &format!("before{i}"), &p.path()), CONF);
        assert_eq!(code, 0, "{out}");
        first.insert(result_ip(&out));
    }
    // Between ADDs.
    node.kill9();
    node.start();
    for (i, p) in pods.iter().skip(5).take(5).enumerate() {
        let (code, out) = node.shim(&cni_env(&node, "ADD", &format!("after{i}"), &p.path()), CONF);
        assert_eq!(code, 0, "{out}");
        assert!(!first.contains(&result_ip(&out)), "address reused after restart: {out}");
    }
    // During ADDs: 60 in flight, then kill -9 as soon as the first one is answered, while the
    // others are at every step between IPAM and netlink.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let inflight: Vec<_> = pods
        .iter()
        .skip(10)
        .enumerate()
        .map(|(i, p)| {
            let env = cni_env(&node, "ADD", &format!("during{i}"), &p.path());
            let done = done_tx.clone();
            thread::spawn(move || {
                let r = shim_exec(None, &env, CONF);
                let _ = done.send(());
                r
            })
        })
        .collect();
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("an in-flight ADD answered");
    node.kill9();
    let outcomes: Vec<(i32, Value)> = inflight.into_iter().map(|t| t.join().unwrap()).collect();
    let failed: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c != 0)
        .map(|(i, _)| i)
        .collect();
    assert!(!failed.is_empty(), "the kill landed after every ADD had finished");
    for (code, out) in &outcomes {
        if *code != 0 {
            eprintln!("cut-off ADD: {out}");
            assert_eq!(out["code"], 11, "a cut-off ADD asks the runtime to retry: {out}");
        }
    }
    eprintln!(
        "{} of {} in-flight ADDs were cut off by the kill",
        failed.len(),
        outcomes.len()
    );
    node.start();
    assert_consistent(&node);
    // The runtime retries what failed: same handle, fresh wiring, unique address.
    for i in &failed {
        let env = cni_env(&node, "ADD", &format!("during{i}"), &pods[10 + i].path());
        let (code, out) = node.shim(&env, CONF);
        if code != 0 {
            // The interface may have survived the crash inside the pod: DEL, then ADD again.
            let mut del = env.clone();
            del.insert("CNI_COMMAND", "DEL".into());
            assert_eq!(node.shim(&del, CONF).0, 0);
            let (code, out) = node.shim(&env, CONF);
            assert_eq!(code, 0, "retry after DEL: {out}");
        } else {
            assert!(!result_ip(&out).is_empty());
        }
    }
    let atts = assert_consistent(&node);
    assert_eq!(atts.len(), 70, "every pod attached exactly once: {atts:?}");
    // DEL of everything, including pods from before both crashes.
    for a in &atts {
        let mut env = cni_env(&node, "ADD", a["containerID"].as_str().unwrap(), "");
        env.insert("CNI_COMMAND", "DEL".into());
        env.remove("CNI_NETNS");
        let (code, out) = node.shim(&env, CONF);
        assert_eq!(code, 0, "DEL {}: {out}", a["containerID"]);
    }
    assert!(attachments(&node).is_empty());
    assert!(!node.netns.links().iter().any(|l| l.starts_with("lan")), "no veth left");
}
