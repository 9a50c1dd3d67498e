//! The low-latency lanes when things go wrong, on real OVN (the harness of
//! `ovn_lanes.rs`: OVN central in a netns, per node ovsdb-server +
//! ovs-vswitchd + ovn-controller and lanesd, pods made through lanes-cni):
//!
//! 1. NB unreachable at ADD: code 11 within the configured bound, nothing left.
//! 2. Bad inputs: each a spec error (code 7) naming the thing, nothing left.
//! 3. DEL with NB down: fast, veth gone at once, LSP removed once NB is back;
//!    a re-ADD meanwhile keeps its port.
//! 4. lanesd SIGKILLed mid-ADD, restarted, CNI GC: nothing stale remains.
//! 5. Requested `ips`/`mac` are what eth1 gets, and it is reachable.
//! 6. Replies leave by the interface the request came in on.
//!
//! The tests take a lock so that they run one at a time (each starts its own
//! OVN; on a small machine, side by side they would time each other out).

mod support;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::ovn::{prime_tunnels, Daemon, OvnCentral, OvnNode, OVN_TOOLS};
use support::*;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lanes","type":"lanes"}"#;
const CENTRAL_IP: &str = "192.168.200.10";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const NAD: &str = r#"apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: yusur-ovn, namespace: default}
spec:
  config: '{"cniVersion":"0.3.1","name":"yusur-ovn","type":"ovn-k8s-cni-overlay","topology":"layer2","subnets":"10.144.0.0/16","excludeSubnets":"10.144.0.1/32","mtu":1400,"netAttachDefName":"default/yusur-ovn"}'
"#;

fn pod_doc(name: &str, annotation: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    k8s.v1.cni.cncf.io/networks: '{annotation}'\n"
    )
}

/// The seed pool, a BGP config, the yusur-ovn NAD, `extra` documents and the pods.
fn resources(extra: &str, pods: &[(&str, &str)]) -> String {
    let mut s = format!(
        "{SEED_POOL}---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{asNumber: 64512}}\n---\n{NAD}{extra}"
    );
    for (name, ann) in pods {
        s.push_str(&pod_doc(name, ann));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The lab

struct LabOpts {
    nodes: usize,
    bgp: bool,
    controller: bool,
    /// lanesd's `--ovn-northbound`; default: central's NB over TCP.
    northbound: Option<String>,
}

/// Fields drop in order: OVS/OVN daemons of the nodes, then lanesd and the node netns, then
/// central, then the segments.
struct Lab {
    /// The shared store directory (resources.yaml lives here).
    store: std::path::PathBuf,
    ovn: Vec<OvnNode>,
    nodes: Vec<Node>,
    central: OvnCentral,
    _underlay: Switch,
    _primary: Switch,
}

impl Lab {
    fn start(resources: &str, o: LabOpts) -> Lab {
        let primary = Switch::new();
        let underlay = Switch::new();
        let central = OvnCentral::start(&underlay, &format!("{CENTRAL_IP}/24"));
        let (dir, store) = Node::store(resources);
        let mut ovn = Vec::new();
        let mut nodes = Vec::new();
        for i in 1..=o.nodes {
            let ns = Netns::new("lof-");
            primary.plug(&ns, "ens2", &format!("192.168.100.1{i}/24"));
            let name = format!("node{i}");
            let node_ovn = OvnNode::start(
                &ns.name,
                &name,
                &underlay,
                &format!("192.168.200.1{i}/24"),
                &central,
                true,
            );
            let mut args = vec![
                "--primary-interface".to_string(),
                "ens2".into(),
                "--ovn-enabled".into(),
                "true".into(),
                "--ovn-ovsdb".into(),
                node_ovn.ovs_db.clone(),
                "--ovn-northbound".into(),
                o.northbound.clone().unwrap_or_else(|| central.nb_tcp()),
                "--ovn-southbound".into(),
                central.sb_tcp(),
                "--ovn-encap-interface".into(),
                "br-phy".into(),
            ];
            if !o.bgp {
                args.extend(["--bgp-enabled".to_string(), "false".into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let node = Node::prepared(&name, &dir, &store, ns, &args, true);
            ovn.push(node_ovn);
            nodes.push(node);
        }
        if o.controller {
            for n in ovn.iter_mut() {
                n.start_controller();
            }
            if ovn.len() > 1 {
                prime_tunnels(&ovn.iter().collect::<Vec<_>>());
            }
        }
        Lab {
            store,
            ovn,
            nodes,
            central,
            _underlay: underlay,
            _primary: primary,
        }
    }

    /// LSP names whose `external_ids:lanes.dev/node` is `node`.
    fn lsps_of(&self, node: &str) -> Vec<String> {
        let out = self.central.nbctl(&[
            "--format=json",
            "--columns=name,external_ids",
            "list",
            "Logical_Switch_Port",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("nbctl json: {e}: {out}"));
        let mut names = Vec::new();
        for row in v["data"].as_array().into_iter().flatten() {
            let name = row[0].as_str().unwrap_or_default().to_string();
            let ids = row[1][1].as_array().cloned().unwrap_or_default();
            if ids.iter().any(|kv| kv[0] == "lanes.dev/node" && kv[1] == node) {
                names.push(name);
            }
        }
        names
    }

    fn lsp_exists(&self, name: &str) -> bool {
        let (ok, out, _) = self.central.nbctl_try(&[
            "--bare",
            "--columns=name",
            "find",
            "Logical_Switch_Port",
            &format!("name={name}"),
        ]);
        ok && out.trim() == name
    }

    /// `lov*` ports on node `i`'s br-int.
    fn lov_ports(&self, i: usize) -> Vec<String> {
        self.ovn[i]
            .vsctl(&["list-ports", "br-int"])
            .split_whitespace()
            .filter(|p| p.starts_with("lov"))
            .map(String::from)
            .collect()
    }

    /// Links of node `i`'s netns starting with `lan` or `lov`.
    fn pod_veths(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .netns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("lan") || l.starts_with("lov"))
            .collect()
    }

    fn attachments(&self, i: usize) -> Vec<Value> {
        let (ok, out) = self.nodes[i].lanesctl(&["-o", "json", "attachments"]);
        assert!(ok, "lanesctl attachments: {out}");
        serde_json::from_str::<Value>(&out)
            .unwrap_or_else(|e| panic!("attachments json: {e}: {out}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Nothing of node `i`'s pods is left: no pod veth, OVS port, LSP or attachment.
    fn assert_clean(&self, i: usize, what: &str) {
        let node = &self.nodes[i].name;
        assert_eq!(self.pod_veths(i), Vec::<String>::new(), "{what}: veths left on {node}");
        assert_eq!(
            self.lov_ports(i),
            Vec::<String>::new(),
            "{what}: OVS ports left on {node}"
        );
        assert_eq!(self.lsps_of(node), Vec::<String>::new(), "{what}: LSPs of {node} left");
        assert_eq!(
            self.attachments(i),
            Vec::<Value>::new(),
            "{what}: attachments left on {node}"
        );
    }

    /// SIGKILL central's NB ovsdb-server (by the PID in its pidfile) and wait until it is gone.
    fn kill_nb(&self) {
        let pidfile = self.central.dir.join("nb.pid");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()))
            .trim()
            .parse()
            .expect("NB pid");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        // Its parent (this test, through the harness) reaps it later: gone means a zombie.
        wait_for("NB ovsdb-server to die", 5, || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        });
    }

    /// Start NB again on the same database, sockets and TCP port.
    fn restart_nb(&self) -> Daemon {
        let dir = &self.central.dir;
        let d = |f: &str| dir.join(f).display().to_string();
        let mut nb = Daemon::spawn(
            &self.central.netns.name,
            dir,
            "nb-again",
            "ovsdb-server",
            &[
                format!("--remote=punix:{}", d("nb.sock")),
                format!("--remote=ptcp:6641:{CENTRAL_IP}"),
                format!("--unixctl={}", d("nb-again.ctl")),
                d("nb.db"),
            ],
        );
        nb.wait_ready("NB to answer again", 20, || {
            self.central.nbctl_try(&["--timeout=2", "show"]).0
        });
        nb
    }
}

fn pod_env(node: &Node, cmd: &str, cid: &str, netns: &str, pod: &str) -> HashMap<&'static str, String> {
    let mut env = cni_env(node, cmd, cid, netns);
    env.insert(
        "CNI_ARGS",
        format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID=uid-{pod}"),
    );
    env
}

/// ADD through the shim: (exit code, stdout, how long it took).
fn add(node: &Node, pod: &Netns, cid: &str, name: &str) -> (i32, Value, Duration) {
    let t = Instant::now();
    let (code, out) = node.shim(&pod_env(node, "ADD", cid, &pod.path(), name), CONF);
    (code, out, t.elapsed())
}

fn add_ok(node: &Node, pod: &Netns, cid: &str, name: &str) -> Value {
    let (code, out, _) = add(node, pod, cid, name);
    assert_eq!(code, 0, "ADD {name}: {out}");
    out
}

fn del(node: &Node, pod: &Netns, cid: &str, name: &str) -> (i32, Value, Duration) {
    let t = Instant::now();
    let (code, out) = node.shim(&pod_env(node, "DEL", cid, &pod.path(), name), CONF);
    (code, out, t.elapsed())
}

/// CNI GC through the shim, cniVersion 1.1.0, with these valid attachments.
fn gc(node: &Node, valid: &str) -> (i32, Value) {
    let env: HashMap<&str, String> = [
        ("CNI_COMMAND", "GC".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
        ("LANES_SOCKET", node.socket().display().to_string()),
    ]
    .into_iter()
    .collect();
    let conf = format!(r#"{{"cniVersion":"1.1.0","name":"lanes","type":"lanes","cni.dev/valid-attachments":{valid}}}"#);
    shim_exec(None, &env, &conf)
}

/// The eth1 (10.144/16) address of an ADD result, without prefix.
fn eth1_ip(result: &Value) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .find(|a| a.starts_with("10.144."))
        .unwrap_or_else(|| panic!("an eth1 address in {result}"))
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// The host end of the secondary veth in an ADD result.
fn lov_of(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .find(|n| n.starts_with("lov"))
        .unwrap_or_else(|| panic!("a lov* interface in {result}"))
        .to_string()
}

fn pod_links(pod: &Netns) -> Vec<String> {
    pod.links().into_iter().filter(|l| l != "lo").collect()
}

/// TX packets of `ifname` in `ns`.
fn tx_packets(ns: &Netns, ifname: &str) -> u64 {
    let v = ns.ip_json(&["-s", "link", "show", ifname]);
    v[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("tx packets of {ifname}: {v}"))
}

fn prereqs(test: &str, bird: bool) -> bool {
    let mut tools = OVN_TOOLS.to_vec();
    if bird {
        tools.push("bird");
    }
    prerequisites(test, &tools)
}

// ---------------------------------------------------------------------------------------------
// 1. NB unreachable

#[test]
fn nb_unreachable_add_fails_fast_and_leaves_nothing() {
    if !prereqs("nb_unreachable_add_fails_fast_and_leaves_nothing", false) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    // Nothing listens on this port of central: every connect is refused.
    let dead_nb = format!("tcp:{CENTRAL_IP}:6699");
    let mut lab = Lab::start(
        &resources("", &[("busybox1", "yusur-ovn@eth1")]),
        LabOpts {
            nodes: 1,
            bgp: false,
            controller: false,
            northbound: Some(dead_nb.clone()),
        },
    );
    // lanesd came up although NB is unreachable; a restart is quick too. (SIGKILL: a SIGTERM
    // this soon after start can land before lanesd installs its handler.)
    lab.nodes[0].kill9();
    let t = Instant::now();
    lab.nodes[0].start();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "lanesd start with NB down took {:?}",
        t.elapsed()
    );

    let pod = Netns::new("lofp-");
    let (code, out, took) = add(&lab.nodes[0], &pod, "c1", "busybox1");
    assert!(
        code != 0 && out["code"] == 11,
        "ADD with NB unreachable: exit {code}: {out}"
    );
    assert!(
        out["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("northbound unreachable"),
        "{out}"
    );
    assert!(
        out["details"].as_str().unwrap_or_default().contains(&dead_nb),
        "names the remote: {out}"
    );
    assert!(took < Duration::from_secs(10), "ADD took {took:?} (default bound 5 s)");
    assert!(
        took >= Duration::from_secs(4),
        "ADD waited the whole bound for NB: {took:?}"
    );
    assert_eq!(pod_links(&pod), Vec::<String>::new(), "no eth0/eth1 left in the pod");
    lab.assert_clean(0, "after the failed ADD");

    // The bound is configurable.
    lab.nodes[0]
        .args
        .extend(["--ovn-call-timeout-ms".to_string(), "1500".into()]);
    lab.nodes[0].kill9();
    lab.nodes[0].start();
    let (code, out, took) = add(&lab.nodes[0], &pod, "c2", "busybox1");
    assert!(code != 0 && out["code"] == 11, "exit {code}: {out}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "ADD with a 1.5 s bound took {took:?}"
    );
    assert_eq!(pod_links(&pod), Vec::<String>::new());
    lab.assert_clean(0, "after the second failed ADD");
    // DEL of what failed is fine too (a runtime sends it).
    let (code, out, took) = del(&lab.nodes[0], &pod, "c2", "busybox1");
    assert_eq!(code, 0, "{out}");
    assert!(took < Duration::from_secs(2), "DEL took {took:?}");
    eprintln!("nb_unreachable: {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. Bad inputs

#[test]
fn bad_inputs_are_named_and_leave_nothing() {
    if !prereqs("bad_inputs_are_named_and_leave_nothing", false) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let broken = r#"---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: broken, namespace: default}
spec:
  config: '{"cniVersion":"0.3.1","name":"broken","type":"ovn-k8s-cni-overlay",'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: badsubnet, namespace: default}
spec:
  config: '{"cniVersion":"0.3.1","name":"badsubnet","type":"ovn-k8s-cni-overlay","topology":"layer2","subnets":"10.145.0.0/33","netAttachDefName":"default/badsubnet"}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: macvlan-net, namespace: default}
spec:
  config: '{"cniVersion":"0.3.1","name":"macvlan-net","type":"macvlan","master":"eth0"}'
"#;
    let cases: &[(&str, &str, &[&str])] = &[
        ("missing-nad", "nosuch@eth1", &["default/nosuch", "not found"]),
        (
            "bad-json-nad",
            "broken@eth1",
            &["default/broken", "spec.config", "invalid JSON"],
        ),
        (
            "bad-subnet-nad",
            "badsubnet@eth1",
            &["default/badsubnet", "spec.config.subnets"],
        ),
        (
            "other-plugin-nad",
            "macvlan-net@eth1",
            &["default/macvlan-net", "macvlan"],
        ),
        (
            "bad-syntax",
            "yusur-ovn@eth1, bad_name@eth2",
            &["networks[1]", "bad_name"],
        ),
        (
            "bad-json-annotation",
            r#"[{"name":"yusur-ovn","interface":"eth1"}"#,
            &["invalid JSON"],
        ),
        (
            "ifname-clash",
            r#"[{"name":"yusur-ovn","interface":"eth1"},{"name":"broken","interface":"eth1"}]"#,
            &["networks[1]", "eth1", "already requested by networks[0]"],
        ),
        ("eth0-requested", "yusur-ovn@eth0", &["networks[0]", "eth0"]),
        (
            "bad-mac",
            r#"[{"name":"yusur-ovn","interface":"eth1","mac":"zz:00"}]"#,
            &["networks[0]", "mac", "zz:00"],
        ),
        (
            "ip-outside-subnet",
            r#"[{"name":"yusur-ovn","interface":"eth1","ips":["10.99.0.5/16"]}]"#,
            &["networks[0]", "ips[0]", "10.99.0.5/16"],
        ),
    ];
    let mut pods: Vec<(&str, &str)> = cases.iter().map(|(name, ann, _)| (*name, *ann)).collect();
    pods.push(("good", "yusur-ovn@eth1"));
    let mut lab = Lab::start(
        &resources(broken, &pods),
        LabOpts {
            nodes: 1,
            bgp: false,
            controller: false,
            northbound: None,
        },
    );
    for (i, (name, _, want)) in cases.iter().enumerate() {
        let pod = Netns::new("lofp-");
        let (code, out, took) = add(&lab.nodes[0], &pod, &format!("bad{i}"), name);
        assert!(code != 0 && out["code"] == 7, "{name}: exit {code}: {out}");
        let text = format!(
            "{} {}",
            out["msg"].as_str().unwrap_or_default(),
            out["details"].as_str().unwrap_or_default()
        );
        for w in *want {
            assert!(text.contains(w), "{name}: error should name {w:?}: {out}");
        }
        assert!(took < Duration::from_secs(2), "{name}: took {took:?}");
        assert_eq!(
            pod_links(&pod),
            Vec::<String>::new(),
            "{name}: pod left with interfaces"
        );
        lab.assert_clean(0, name);
    }
    let (_, status) = lab.nodes[0].lanesctl(&["-o", "json", "node", "status"]);
    eprintln!("node status with broken NADs: {status}");

    // A good pod on a node with no ovn-controller: `ovn-installed` never comes. ADD fails
    // with code 11 after `ovn.installTimeoutMs` and rolls everything back.
    lab.nodes[0]
        .args
        .extend(["--ovn-install-timeout-ms".to_string(), "1000".into()]);
    lab.nodes[0].kill9();
    lab.nodes[0].start();
    let pod = Netns::new("lofp-");
    let (code, out, took) = add(&lab.nodes[0], &pod, "noinstall", "good");
    assert!(code != 0 && out["code"] == 11, "exit {code}: {out}");
    assert_eq!(out["msg"], "OVN did not install the port in time", "{out}");
    assert!(
        out["details"].as_str().unwrap_or_default().contains("ovn-installed"),
        "names the column: {out}"
    );
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(5),
        "ADD with a 1 s install bound took {took:?}"
    );
    assert_eq!(pod_links(&pod), Vec::<String>::new(), "rolled back in the pod");
    lab.assert_clean(0, "after the install timeout");

    // The wait is cancellable: SIGTERM during it ends the ADD at once (code 11), rolled back,
    // instead of holding shutdown for the whole bound.
    let n = lab.nodes[0].args.len();
    lab.nodes[0].args[n - 1] = "30000".into();
    lab.nodes[0].kill9();
    lab.nodes[0].start();
    let (code, out, took) = std::thread::scope(|sc| {
        let adding = sc.spawn(|| add(&lab.nodes[0], &pod, "cancelled", "good"));
        // Until the wait has begun: the OVS port is on br-int.
        wait_for("the ADD to reach the ovn-installed wait", 10, || {
            (!lab.lov_ports(0).is_empty()).then_some(())
        });
        let t = Instant::now();
        let pid = lab.nodes[0].child.as_ref().map(|c| c.id() as i32).expect("lanesd runs");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        let r = adding.join().expect("ADD thread");
        (r.0, r.1, t.elapsed())
    });
    assert!(code != 0 && out["code"] == 11, "exit {code}: {out}");
    assert_eq!(out["msg"], "lanesd is shutting down", "{out}");
    assert!(took < Duration::from_secs(5), "ADD ended {took:?} after SIGTERM");
    assert!(lab.nodes[0].stop(), "lanesd exits cleanly after the cancelled ADD");
    lab.nodes[0].start();
    assert_eq!(pod_links(&pod), Vec::<String>::new(), "rolled back in the pod");
    lab.assert_clean(0, "after the cancelled ADD");
    eprintln!("bad_inputs: {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 3. DEL with NB down

#[test]
fn del_with_nb_down_is_fast_and_cleans_up_later() {
    if !prereqs("del_with_nb_down_is_fast_and_cleans_up_later", false) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let lab = Lab::start(
        &resources(
            "",
            &[
                ("busybox1", "yusur-ovn@eth1"),
                ("busybox2", "yusur-ovn@eth1"),
                ("busybox3", "yusur-ovn@eth1"),
            ],
        ),
        LabOpts {
            nodes: 1,
            bgp: false,
            controller: true,
            northbound: None,
        },
    );
    let node = &lab.nodes[0];
    let (p1, p2, p3) = (Netns::new("lofp-"), Netns::new("lofp-"), Netns::new("lofp-"));
    let r1 = add_ok(node, &p1, "c1", "busybox1");
    let r2 = add_ok(node, &p2, "c2", "busybox2");
    let (lsp1, lsp2) = (
        "default.yusur.ovn_default_busybox1",
        "default.yusur.ovn_default_busybox2",
    );
    assert!(lab.lsp_exists(lsp1) && lab.lsp_exists(lsp2));
    let (lov1, lov2) = (lov_of(&r1), lov_of(&r2));

    lab.kill_nb();
    // ADD with NB down: code 11, bounded, nothing left.
    let (code, out, took) = add(node, &p3, "c3", "busybox3");
    assert!(code != 0 && out["code"] == 11, "ADD with NB down: exit {code}: {out}");
    assert!(took < Duration::from_secs(10), "ADD with NB down took {took:?}");
    assert_eq!(pod_links(&p3), Vec::<String>::new());

    // DEL with NB down: quick, and the pod's interfaces are gone at once.
    for (pod, cid, name, lov) in [(&p1, "c1", "busybox1", &lov1), (&p2, "c2", "busybox2", &lov2)] {
        let (code, out, took) = del(node, pod, cid, name);
        assert_eq!(code, 0, "DEL {name} with NB down: {out}");
        assert!(took < Duration::from_secs(3), "DEL {name} with NB down took {took:?}");
        assert!(!node.netns.links().contains(lov), "{name}: {lov} gone at once");
        assert!(!lab.lov_ports(0).contains(lov), "{name}: OVS port gone (OVS is up)");
        // eth0's pod end is renamed at once and deleted just after the reply (`ldel*`).
        assert!(
            !pod.links().iter().any(|l| l.starts_with("eth")),
            "{name}: pod interfaces gone"
        );
        wait_for(&format!("{name}: pod emptied"), 5, || {
            pod_links(pod).is_empty().then_some(())
        });
    }
    assert_eq!(lab.attachments(0), Vec::<Value>::new(), "detached pods are not listed");
    // Their records wait, flagged, for NB.
    let record = |cid: &str| std::fs::read_to_string(node.store.join(format!("state/secondary/node1/{cid}.eth1"))).ok();
    for cid in ["c1", "c2"] {
        let text = record(cid).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(v["value"]["pendingDelete"], true, "{cid}'s record: {text}");
    }
    assert_eq!(lab.pod_veths(0), Vec::<String>::new());

    let _nb = lab.restart_nb();
    let back = Instant::now();
    // busybox2 comes back at once (same container): its pending delete must not remove the
    // LSP that this ADD makes again.
    let r2 = add_ok(node, &p2, "c2", "busybox2");
    wait_for("busybox1's LSP removed after NB is back", 15, || {
        (!lab.lsp_exists(lsp1)).then_some(())
    });
    let cleaned = back.elapsed();
    wait_for("busybox1's record gone", 5, || record("c1").is_none().then_some(()));
    std::thread::sleep(Duration::from_secs(5)); // more than two retry rounds
    assert!(lab.lsp_exists(lsp2), "the re-added pod keeps its LSP");
    assert!(lab.ovn[0].installed(&lov_of(&r2)), "and its port stays bound");
    assert_eq!(lab.lsps_of("node1"), vec![lsp2.to_string()]);
    let atts = lab.attachments(0);
    assert!(
        atts.iter().any(|a| a["containerID"] == "c2" && a["ifname"] == "eth1"),
        "{atts:?}"
    );
    // And the whole thing again, with NB up: DEL removes the LSP at once.
    let (code, out, _) = del(node, &p2, "c2", "busybox2");
    assert_eq!(code, 0, "{out}");
    assert!(!lab.lsp_exists(lsp2));
    lab.assert_clean(0, "after the last DEL");
    eprintln!(
        "del_with_nb_down: LSP removed {cleaned:?} after NB came back; total {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. kill -9 mid-ADD, then GC

#[test]
fn kill_mid_add_then_gc_leaves_nothing() {
    if !prereqs("kill_mid_add_then_gc_leaves_nothing", false) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let mut lab = Lab::start(
        &resources("", &[("crash", "yusur-ovn@eth1"), ("keeper", "yusur-ovn@eth1")]),
        LabOpts {
            nodes: 1,
            bgp: false,
            controller: true,
            northbound: None,
        },
    );
    // A pod that stays, listed as valid to GC: GC must not touch it.
    let keeper = Netns::new("lofp-");
    let kept = add_ok(&lab.nodes[0], &keeper, "keep", "keeper");
    let kept_lov = lov_of(&kept);
    let valid = r#"[{"containerID":"keep","ifname":"eth0"}]"#;
    let mut outcomes = Vec::new();
    for (round, delay_ms) in [2u64, 10, 20, 30, 40, 50, 60, 70, 90, 150].into_iter().enumerate() {
        let pod = Netns::new("lofp-");
        let env = pod_env(&lab.nodes[0], "ADD", &format!("k{round}"), &pod.path(), "crash");
        let adder = std::thread::spawn(move || shim_exec(None, &env, CONF));
        std::thread::sleep(Duration::from_millis(delay_ms));
        lab.nodes[0].kill9();
        let (add_code, _) = adder.join().unwrap();
        lab.nodes[0].start();
        // What the crash left (beside the keeper's), for the record.
        let left = (
            lab.lsps_of("node1").len() - 1,
            lab.lov_ports(0).len() - 1,
            lab.pod_veths(0).len() - 2,
        );
        outcomes.push((delay_ms, add_code, left));
        let (code, out) = gc(&lab.nodes[0], valid);
        assert_eq!(code, 0, "round {round} ({delay_ms} ms): GC: {out}");
        let what = format!("round {round} (killed {delay_ms} ms into ADD, which exited {add_code})");
        assert_eq!(pod_links(&pod), Vec::<String>::new(), "{what}: pod interfaces left");
        let veths = lab.pod_veths(0);
        assert!(
            veths.len() == 2 && veths.contains(&kept_lov),
            "{what}: only the keeper's veths remain: {veths:?}"
        );
        assert_eq!(lab.lov_ports(0), vec![kept_lov.clone()], "{what}: OVS ports");
        assert_eq!(
            lab.lsps_of("node1"),
            vec!["default.yusur.ovn_default_keeper".to_string()],
            "{what}: LSPs"
        );
        let atts = lab.attachments(0);
        assert!(
            atts.iter().all(|a| a["containerID"] == "keep") && atts.len() == 2,
            "{what}: attachments {atts:?}"
        );
        let (_, ipam) = lab.nodes[0].lanesctl(&["-o", "json", "ipam", "show", "--allocations"]);
        assert!(!ipam.contains(&format!("k{round}")), "{what}: allocation left: {ipam}");
    }
    assert!(lab.ovn[0].installed(&kept_lov), "the keeper's port is still bound");
    // Finally GC with nothing valid removes the keeper too.
    let (code, out) = gc(&lab.nodes[0], "[]");
    assert_eq!(code, 0, "{out}");
    assert_eq!(pod_links(&keeper), Vec::<String>::new());
    lab.assert_clean(0, "after GC with no valid attachments");
    eprintln!(
        "kill_mid_add (delay ms, ADD exit, (LSPs, OVS ports, veths) left): {outcomes:?}; total {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Requested ips/mac

#[test]
fn requested_ip_and_mac_are_honoured() {
    if !prereqs("requested_ip_and_mac_are_honoured", false) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let fixed = r#"[{"name":"yusur-ovn","namespace":"default","interface":"eth1","ips":["10.144.0.200/16"],"mac":"0a:58:0a:90:00:c8"}]"#;
    let lab = Lab::start(
        &resources("", &[("fixed", fixed), ("peer", "yusur-ovn@eth1")]),
        LabOpts {
            nodes: 1,
            bgp: false,
            controller: true,
            northbound: None,
        },
    );
    let (a, b) = (Netns::new("lofp-"), Netns::new("lofp-"));
    let ra = add_ok(&lab.nodes[0], &a, "fx", "fixed");
    let rb = add_ok(&lab.nodes[0], &b, "pe", "peer");
    assert!(
        ra["ips"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["address"] == "10.144.0.200/16"),
        "{ra}"
    );
    assert!(
        ra["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "eth1" && i["mac"] == "0a:58:0a:90:00:c8"),
        "{ra}"
    );
    let link = a.ip_json(&["addr", "show", "eth1"]);
    assert_eq!(link[0]["address"], "0a:58:0a:90:00:c8", "{link}");
    assert_eq!(a.ipv4_of("eth1").as_deref(), Some("10.144.0.200"));
    let prefix = link[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["family"] == "inet")
        .map(|x| x["prefixlen"].clone());
    assert_eq!(prefix, Some(Value::from(16)), "{link}");
    let addrs = lab.central.nbctl(&[
        "get",
        "Logical_Switch_Port",
        "default.yusur.ovn_default_fixed",
        "addresses",
    ]);
    assert!(
        addrs.contains("0a:58:0a:90:00:c8 10.144.0.200"),
        "static LSP addresses: {addrs}"
    );
    assert_ne!(
        eth1_ip(&rb),
        "10.144.0.200",
        "OVN IPAM never hands out a requested address"
    );
    wait_for("peer → fixed over eth1", 10, || b.ping("10.144.0.200").then_some(()));
    assert!(a.ping(&eth1_ip(&rb)), "fixed → peer over eth1");
    // The NAD goes while the pods run: they keep their lanes, and DEL still removes everything
    // (it works from lanesd's attachment records, not from the NAD).
    let without_nad = resources("", &[("fixed", fixed), ("peer", "yusur-ovn@eth1")]).replace(NAD, "");
    write_atomic(&lab.store.join("resources.yaml"), &without_nad);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(a.ping(&eth1_ip(&rb)), "fixed → peer over eth1 with the NAD gone");
    // GC keeps the NAD's switch while pods are on it...
    let both = r#"[{"containerID":"fx","ifname":"eth0"},{"containerID":"pe","ifname":"eth0"}]"#;
    let (code, out) = gc(&lab.nodes[0], both);
    assert_eq!(code, 0, "GC: {out}");
    let switches = lab.central.nbctl(&["ls-list"]);
    assert!(switches.contains("yusur.ovn_ovn_layer2_switch"), "{switches}");
    assert!(a.ping(&eth1_ip(&rb)), "GC left the pods' lane alone");
    for (pod, cid, name) in [(&a, "fx", "fixed"), (&b, "pe", "peer")] {
        let (code, out, _) = del(&lab.nodes[0], pod, cid, name);
        assert_eq!(code, 0, "DEL {name} after its NAD went: {out}");
    }
    lab.assert_clean(0, "DEL after the NAD was removed");
    // ...and removes it once they are gone.
    let (code, out) = gc(&lab.nodes[0], "[]");
    assert_eq!(code, 0, "GC: {out}");
    assert_eq!(lab.central.nbctl(&["ls-list"]), "", "the deleted NAD's switch is gone");
    eprintln!("requested_ip_and_mac: {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 6. Replies stay on their interface

#[test]
fn replies_leave_by_the_interface_the_request_came_in() {
    if !prereqs("replies_leave_by_the_interface_the_request_came_in", true) {
        return;
    }
    let _serial = serial();
    let t0 = Instant::now();
    let lab = Lab::start(
        &resources(
            "",
            &[
                (
                    "poda",
                    r#"[{"name":"yusur-ovn","namespace":"default","interface":"eth1","default-route":["10.144.0.1"]}]"#,
                ),
                ("podb", "yusur-ovn@eth1"),
            ],
        ),
        LabOpts {
            nodes: 2,
            bgp: true,
            controller: true,
            northbound: None,
        },
    );
    let (a, b) = (Netns::new("lofp-"), Netns::new("lofp-"));
    let ra = add_ok(&lab.nodes[0], &a, "ca", "poda");
    let rb = add_ok(&lab.nodes[1], &b, "cb", "podb");
    let (a0, a1, b0, b1) = (result_ip(&ra), eth1_ip(&ra), result_ip(&rb), eth1_ip(&rb));
    let routes = a.routes();
    assert!(routes.contains("default via 10.144.0.1 dev eth1"), "{routes}");
    let t_mesh = Instant::now();
    wait_for("BGP mesh up", 40, || (lab.nodes[0].peers_up() == 1).then_some(()));
    let mesh = t_mesh.elapsed();
    wait_for("podB eth0 → podA eth0", 30, || b.ping(&a0).then_some(()));
    eprintln!(
        "replies: lab up after {:?}, mesh up after {mesh:?}, eth0 route after {:?}",
        t_mesh - t0,
        t_mesh.elapsed()
    );
    wait_for("podB eth1 → podA eth1", 15, || b.ping(&a1).then_some(()));

    // What A's kernel picks for a reply, by source address.
    let node2 = "192.168.100.12";
    let (_, get) = a.exec(&["ip", "route", "get", node2, "from", &a0]);
    assert!(get.contains("dev eth0"), "reply from eth0's address: {get}");
    let (_, get) = a.exec(&["ip", "route", "get", node2]);
    assert!(get.contains("dev eth1"), "without a source, the default (eth1): {get}");
    let (_, get) = a.exec(&["ip", "route", "get", &b0, "from", &a0]);
    assert!(get.contains("dev eth0"), "{get}");
    let (_, get) = a.exec(&["ip", "route", "get", &b1, "from", &a1]);
    assert!(get.contains("dev eth1"), "{get}");

    const N: u64 = 5;
    let pings = |from: &Netns, to: &str| {
        let (ok, out) = from.exec(&["ping", "-c", &N.to_string(), "-i", "0.2", "-W", "2", to]);
        assert!(ok, "ping {to}: {out}");
    };
    let counters = || (tx_packets(&a, "eth0"), tx_packets(&a, "eth1"));
    // podB's eth0 → podA's eth0: the replies leave A by eth0.
    let before = counters();
    pings(&b, &a0);
    let after = counters();
    assert!(after.0 - before.0 >= N, "eth0 TX {before:?} → {after:?}");
    assert!(after.1 - before.1 < N, "eth1 TX {before:?} → {after:?}");
    // node2 itself (192.168.100.12, outside every pinned CIDR) → podA's eth0: only the
    // source rule keeps the reply off the default route through eth1.
    let before = counters();
    pings(&lab.nodes[1].netns, &a0);
    let after = counters();
    assert!(after.0 - before.0 >= N, "eth0 TX {before:?} → {after:?}");
    assert!(after.1 - before.1 < N, "eth1 TX {before:?} → {after:?}");
    // And it is that rule: without it the replies follow the default route out of eth1.
    let rule = ["from", a0.as_str(), "lookup", "1000", "priority", "100"];
    let mut del_rule = vec!["-n", a.name.as_str(), "rule", "del"];
    del_rule.extend(rule);
    run("ip", &del_rule);
    let (ok, _) = lab.nodes[1].netns.exec(&["ping", "-c", "2", "-W", "1", &a0]);
    let mut add_rule = vec!["-n", a.name.as_str(), "rule", "add"];
    add_rule.extend(rule);
    run("ip", &add_rule);
    assert!(!ok, "without the source rule node2 → podA eth0 should fail");
    // podB's eth1 → podA's eth1: answered through eth1.
    let before = counters();
    pings(&b, &a1);
    let after = counters();
    assert!(after.1 - before.1 >= N, "eth1 TX {before:?} → {after:?}");
    assert!(after.0 - before.0 < N, "eth0 TX {before:?} → {after:?}");
    eprintln!("replies: {:?}", t0.elapsed());
}
