//! Bad input through the real shim and daemon: every case must come back as
//! a spec error JSON with the right code and a message that names the
//! offending variable, field or value — and must leave nothing behind.

mod support;

use std::collections::HashMap;

use serde_json::Value;
use support::*;

struct Case {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    stdin: String,
    code: u64,
    fragment: &'static str,
}

fn conf(version: &str, extra: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"lanes","type":"lanes"{extra}}}"#)
}

fn cases(socket: &str, pod: &str) -> Vec<Case> {
    let s = |v: &str| v.to_string();
    let add = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("CNI_COMMAND", s("ADD")),
            ("CNI_CONTAINERID", s("bad1")),
            ("CNI_NETNS", s(pod)),
            ("CNI_IFNAME", s("eth0")),
            ("CNI_PATH", s("/usr/lib/cni")),
            ("LANES_SOCKET", s(socket)),
        ];
        for (k, v) in extra {
            env.retain(|(ek, _)| *ek != k);
            if !v.is_empty() || k == "CNI_CONTAINERID" {
                env.push((k, v));
            }
        }
        env
    };
    let without = |k: &'static str| {
        let mut e = add(vec![]);
        e.retain(|(ek, _)| *ek != k);
        e
    };
    let with_cmd = |cmd: &str| add(vec![("CNI_COMMAND", cmd.to_string())]);
    let ok = conf("1.1.0", "");
    let case = |name, env, stdin: &str, code, fragment| Case {
        name,
        env,
        stdin: stdin.to_string(),
        code,
        fragment,
    };
    let prev = r#","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.244.0.9/32","interface":0}]}"#;
    vec![
        case("no CNI_COMMAND", without("CNI_COMMAND"), &ok, 4, "CNI_COMMAND"),
        case("unknown verb", with_cmd("FROB"), &ok, 4, "CNI_COMMAND=FROB"),
        case("lowercase verb", with_cmd("add"), &ok, 4, "CNI_COMMAND=add"),
        case("no container id", without("CNI_CONTAINERID"), &ok, 4, "CNI_CONTAINERID"),
        case(
            "empty container id",
            add(vec![("CNI_CONTAINERID", s(""))]),
            &ok,
            4,
            "CNI_CONTAINERID",
        ),
        case(
            "slash in container id",
            add(vec![("CNI_CONTAINERID", s("ab/c"))]),
            &ok,
            4,
            "ab/c",
        ),
        case(
            "leading dash container id",
            add(vec![("CNI_CONTAINERID", s("-abc"))]),
            &ok,
            4,
            "CNI_CONTAINERID",
        ),
        case(
            "space in container id",
            add(vec![("CNI_CONTAINERID", s("a b"))]),
            &ok,
            4,
            "CNI_CONTAINERID",
        ),
        case("no netns", without("CNI_NETNS"), &ok, 4, "CNI_NETNS"),
        case(
            "relative netns",
            add(vec![("CNI_NETNS", s("netns/x"))]),
            &ok,
            4,
            "CNI_NETNS",
        ),
        case(
            "missing netns",
            add(vec![("CNI_NETNS", s("/run/netns/lanes-nope"))]),
            &ok,
            4,
            "/run/netns/lanes-nope",
        ),
        case(
            "netns is a plain file",
            add(vec![("CNI_NETNS", s("/etc/hostname"))]),
            &ok,
            4,
            "CNI_NETNS=/etc/hostname",
        ),
        case("no ifname", without("CNI_IFNAME"), &ok, 4, "CNI_IFNAME"),
        case(
            "ifname too long",
            add(vec![("CNI_IFNAME", s("abcdefghijklmnop"))]),
            &ok,
            4,
            "abcdefghijklmnop",
        ),
        case("ifname dot", add(vec![("CNI_IFNAME", s("."))]), &ok, 4, "CNI_IFNAME"),
        case(
            "ifname slash",
            add(vec![("CNI_IFNAME", s("a/b"))]),
            &ok,
            4,
            "CNI_IFNAME",
        ),
        case(
            "ifname colon",
            add(vec![("CNI_IFNAME", s("eth0:1"))]),
            &ok,
            4,
            "CNI_IFNAME",
        ),
        case(
            "ifname space",
            add(vec![("CNI_IFNAME", s("et h0"))]),
            &ok,
            4,
            "CNI_IFNAME",
        ),
        case(
            "ifname taken in pod",
            add(vec![("CNI_IFNAME", s("lo"))]),
            &ok,
            101,
            "CNI_IFNAME=lo",
        ),
        case(
            "CNI_ARGS without =",
            add(vec![("CNI_ARGS", s("K8S_POD_NAME"))]),
            &ok,
            4,
            "CNI_ARGS",
        ),
        case(
            "bad pod name",
            add(vec![("CNI_ARGS", s("K8S_POD_NAMESPACE=default;K8S_POD_NAME=Bad_Name"))]),
            &ok,
            4,
            "K8S_POD_NAME",
        ),
        case("truncated JSON", add(vec![]), "{", 6, "line 1"),
        case("JSON array", add(vec![]), "[]", 6, "object"),
        case("empty stdin", add(vec![]), "", 6, ""),
        case("unknown cniVersion", add(vec![]), &conf("9.9.9", ""), 1, "9.9.9"),
        case("too old cniVersion", add(vec![]), &conf("0.2.0", ""), 1, "0.2.0"),
        case(
            "no cniVersion",
            add(vec![]),
            r#"{"name":"lanes","type":"lanes"}"#,
            7,
            "cniVersion",
        ),
        case(
            "numeric cniVersion",
            add(vec![]),
            r#"{"cniVersion":1,"name":"lanes","type":"lanes"}"#,
            7,
            "cniVersion",
        ),
        case(
            "no name",
            add(vec![]),
            r#"{"cniVersion":"1.0.0","type":"lanes"}"#,
            7,
            "name",
        ),
        case(
            "bad name",
            add(vec![]),
            r#"{"cniVersion":"1.0.0","name":"a b","type":"lanes"}"#,
            7,
            "name",
        ),
        case(
            "no type",
            add(vec![]),
            r#"{"cniVersion":"1.0.0","name":"lanes"}"#,
            7,
            "type",
        ),
        case(
            "wrong type",
            add(vec![]),
            r#"{"cniVersion":"1.0.0","name":"lanes","type":"ptp"}"#,
            7,
            "ptp",
        ),
        case("mtu too small", add(vec![]), &conf("1.0.0", r#","mtu":10"#), 7, "mtu"),
        case(
            "mtu not a number",
            add(vec![]),
            &conf("1.0.0", r#","mtu":"big""#),
            7,
            "mtu",
        ),
        case(
            "bad pool CIDR",
            add(vec![]),
            &conf("1.0.0", r#","ipPools":["10.0.0.0/99"]"#),
            7,
            "ipPools[0]",
        ),
        case(
            "unknown pool",
            add(vec![]),
            &conf("1.0.0", r#","ipPools":["nosuch"]"#),
            7,
            "nosuch",
        ),
        case("CHECK on 0.3.1", with_cmd("CHECK"), &conf("0.3.1", ""), 1, "CHECK"),
        case("CHECK without prevResult", with_cmd("CHECK"), &ok, 7, "prevResult"),
        case(
            "CHECK of unknown container",
            with_cmd("CHECK"),
            &conf("1.1.0", prev),
            101,
            "IPAM reservation for 10.244.0.9",
        ),
        case(
            "malformed prevResult",
            add(vec![]),
            &conf("1.1.0", r#","prevResult":{"ips":[{"address":"nope"}]}"#),
            6,
            "prevResult.ips[0].address",
        ),
        case("STATUS on 1.0.0", with_cmd("STATUS"), &conf("1.0.0", ""), 1, "1.0.0"),
        case("GC on 0.4.0", with_cmd("GC"), &conf("0.4.0", ""), 1, "0.4.0"),
        case(
            "GC with malformed attachments",
            with_cmd("GC"),
            &conf("1.1.0", r#","cni.dev/valid-attachments":{"x":1}"#),
            7,
            "cni.dev/valid-attachments",
        ),
        case(
            "GC without valid attachments",
            with_cmd("GC"),
            &conf("1.1.0", ""),
            7,
            "`cni.dev/valid-attachments` (or the older `cni.dev/attachments`) is missing",
        ),
        case(
            "GC attachment without ifname",
            with_cmd("GC"),
            &conf("1.1.0", r#","cni.dev/valid-attachments":[{"containerID":"a"}]"#),
            7,
            "cni.dev/valid-attachments[0]",
        ),
        case(
            "daemon down",
            add(vec![("LANES_SOCKET", s("/run/lanes-test-nothing.sock"))]),
            &ok,
            11,
            "/run/lanes-test-nothing.sock: No such file",
        ),
        case(
            "daemon down, STATUS",
            add(vec![
                ("LANES_SOCKET", s("/run/lanes-test-nothing.sock")),
                ("CNI_COMMAND", s("STATUS")),
            ]),
            &ok,
            50,
            "No such file",
        ),
        case(
            "socket is not a socket",
            add(vec![("LANES_SOCKET", s("/etc/hostname"))]),
            &ok,
            11,
            "Connection refused",
        ),
    ]
}

#[test]
fn bad_inputs_get_spec_errors_and_leave_nothing() {
    if !prerequisites("bad_inputs_get_spec_errors_and_leave_nothing", &["ip"]) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    let pod = Netns::new("litp-");
    let socket = node.socket().display().to_string();
    let table = cases(&socket, &pod.path());
    assert!(table.len() >= 40, "{} cases", table.len());
    let mut failures = Vec::new();
    for c in &table {
        let env: HashMap<&str, String> = c.env.iter().cloned().collect();
        let (code, out) = shim_exec(None, &env, &c.stdin);
        let text = format!(
            "{} {}",
            out["msg"].as_str().unwrap_or(""),
            out["details"].as_str().unwrap_or("")
        );
        let good = code == 1
            && out["code"].as_u64() == Some(c.code)
            && out["cniVersion"].is_string()
            && out["msg"].as_str().is_some_and(|m| !m.is_empty())
            && text.contains(c.fragment);
        if !good {
            failures.push(format!(
                "{}: want code {} with {:?}, got exit {code}: {out}",
                c.name, c.code, c.fragment
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was allocated or wired by any of them.
    let (_, att) = node.lanesctl(&["-o", "json", "attachments"]);
    assert_eq!(
        serde_json::from_str::<Value>(&att).unwrap(),
        Value::Array(vec![]),
        "{att}"
    );
    assert!(!node.netns.links().iter().any(|l| l.starts_with("lan")), "no veth left");
    assert_eq!(pod.links(), vec!["lo".to_string()], "pod untouched");
}

#[test]
fn pool_too_small_is_rejected_and_named() {
    if !prerequisites("pool_too_small_is_rejected_and_named", &["ip"]) {
        return;
    }
    let bad = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: tiny\nspec:\n  cidr: 10.9.0.0/30\n  blockSize: 26\n";
    let node = Node::new("node1", bad);
    let (_, status) = node.lanesctl(&["node", "status"]);
    assert!(
        status.contains("tiny") && status.contains("blockSize"),
        "rejection shown: {status}"
    );
    let pod = Netns::new("litp-");
    let env: HashMap<&str, String> = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", "t1".into()),
        ("CNI_NETNS", pod.path()),
        ("CNI_IFNAME", "eth0".into()),
        ("LANES_SOCKET", node.socket().display().to_string()),
    ]
    .into_iter()
    .collect();
    let (code, out) = shim_exec(None, &env, &conf("1.0.0", ""));
    assert_eq!((code, out["code"].as_u64()), (1, Some(100)), "{out}");
    assert!(out["details"].as_str().unwrap().contains("no enabled IP pool"), "{out}");
}

/// Pools are chosen by the node's labels (`nodeSelector`) and skip disabled
/// ones; the socket is root-only.
#[test]
fn pool_selection_by_node_labels_and_disabled() {
    if !prerequisites("pool_selection_by_node_labels_and_disabled", &["ip"]) {
        return;
    }
    let docs = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: rack1}\nspec: {cidr: 10.1.0.0/16, nodeSelector: \"rack == 'r1'\"}\n---\n\
apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: off}\nspec: {cidr: 10.2.0.0/16, disabled: true}\n---\n\
apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: rack2}\nspec: {cidr: 10.3.0.0/16, nodeSelector: \"rack == 'r2'\"}\n---\n\
apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node1, labels: {rack: r2}}\n";
    let node = Node::new("node1", docs);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    let pod = Netns::new("litp-");
    let (code, out) = node.shim(&cni_env(&node, "ADD", "sel1", &pod.path()), &conf("1.0.0", ""));
    assert_eq!(code, 0, "{out}");
    assert!(
        result_ip(&out).starts_with("10.3."),
        "pool chosen by rack == 'r2': {out}"
    );
    // Asking for the disabled pool by name says so.
    let pod2 = Netns::new("litp-");
    let (code, out) = node.shim(
        &cni_env(&node, "ADD", "sel2", &pod2.path()),
        &conf("1.0.0", r#","ipPools":["off"]"#),
    );
    assert_eq!((code, out["code"].as_u64()), (1, Some(7)), "{out}");
    assert!(out["details"].as_str().unwrap().contains("disabled"), "{out}");
}
