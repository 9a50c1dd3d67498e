//! Privileged tests against real network namespaces.
//!
//! Each test makes its own `lanesdp-<pid>-<n>` netns: one "node" in which the [`Dataplane`]
//! runs (a runtime whose threads all entered it) and one per pod, all deleted on drop. The root
//! netns is never modified. Results are checked with `ip -n <ns> -j ...`, `/proc/sys` reads
//! from inside the netns, and `ping`. Without root they print a reason and pass, except under
//! `CI=true` where they fail.

mod batch;
mod bench;
mod lifecycle;
pub(super) mod support;

use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;

use super::{host_ifname, Dataplane, Error, PodSpec};
use support::{in_netns, privileged, TestNetns};

pub(super) fn pod_spec(pod: &TestNetns, container_id: &str, addr: &str) -> PodSpec {
    PodSpec {
        netns: pod.path.clone(),
        container_ifname: "eth0".into(),
        host_ifname: host_ifname(container_id, "eth0"),
        addresses: vec![addr.parse().unwrap()],
        mtu: 1450,
    }
}

pub(super) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(super) fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The `ip -j route` entry for `dst` (`"default"` or a bare address for host routes).
fn route_to<'a>(routes: &'a [Value], dst: &str) -> Option<&'a Value> {
    routes.iter().find(|r| r["dst"] == dst)
}

#[test]
fn two_pods_are_wired_and_can_reach_each_other_and_the_node() {
    if !privileged("two_pods_are_wired_and_can_reach_each_other_and_the_node", true) {
        return;
    }
    let (node, pod_a, pod_b) = (TestNetns::node(), TestNetns::new(), TestNetns::new());
    let a = pod_spec(&pod_a, "ctr-a", "10.244.0.2/32");
    let b = pod_spec(&pod_b, "ctr-b", "10.244.0.3/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        dp.ensure_ip_forwarding().await.unwrap();
        let links_a = dp.setup_pod(&a).await.unwrap();
        dp.setup_pod(&b).await.unwrap();

        // Node side: veth up with the MTU, proxy ARP on, a proto-76 scope-link /32 route each.
        let host = &node.ip_json(&["link", "show", "dev", &a.host_ifname])[0];
        assert_eq!(host["mtu"], 1450);
        assert!(host["flags"].as_array().unwrap().contains(&"UP".into()), "{host}");
        assert_eq!(host["address"], links_a.host_mac.as_str());
        assert_eq!(node.sysctl(&format!("net/ipv4/conf/{}/proxy_arp", a.host_ifname)), "1");
        assert_eq!(
            node.sysctl(&format!("net/ipv4/neigh/{}/proxy_delay", a.host_ifname)),
            "0"
        );
        assert_eq!(node.sysctl("net/ipv4/ip_forward"), "1");
        let routes = node.lanes_routes();
        for spec in [&a, &b] {
            let dst = spec.addresses[0].addr().to_string();
            let route = route_to(&routes, &dst).unwrap_or_else(|| panic!("{dst}: {routes:?}"));
            assert_eq!(route["dev"], spec.host_ifname.as_str());
            assert_eq!(route["scope"], "link");
        }

        // Pod side: eth0 with the /32, up; lo up; the two proto-76 routes.
        let eth0 = &pod_a.ip_json(&["addr", "show", "dev", "eth0"])[0];
        assert_eq!(eth0["ifindex"], links_a.container_ifindex);
        assert_eq!(eth0["address"], links_a.container_mac.as_str());
        assert_eq!(eth0["mtu"], 1450);
        assert_eq!(eth0["operstate"], "UP");
        let v4: Vec<_> = eth0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == "inet")
            .collect();
        assert_eq!(v4.len(), 1);
        assert_eq!(
            (&v4[0]["local"], &v4[0]["prefixlen"]),
            (&"10.244.0.2".into(), &32.into())
        );
        let lo = &pod_a.ip_json(&["link", "show", "dev", "lo"])[0];
        assert!(lo["flags"].as_array().unwrap().contains(&"UP".into()), "{lo}");
        let routes = pod_a.lanes_routes();
        let gw = route_to(&routes, "169.254.1.1").expect("gateway route");
        assert_eq!((&gw["dev"], &gw["scope"]), (&"eth0".into(), &"link".into()));
        let default = route_to(&routes, "default").expect("default route");
        assert_eq!(
            (&default["gateway"], &default["dev"]),
            (&"169.254.1.1".into(), &"eth0".into())
        );

        // Traffic: pod to pod through the node, and pod to a node address.
        assert!(pod_a.ping("10.244.0.3"), "pod A cannot ping pod B");
        assert!(pod_b.ping("10.244.0.2"), "pod B cannot ping pod A");
        assert!(pod_a.ping("10.99.0.1"), "pod A cannot ping the node");

        // A second ADD finds the host name taken and must not roll back what it did not make.
        let err = dp.setup_pod(&a).await.unwrap_err();
        let want = format!(
            "create veth {}/eth0 in {}: File exists (os error 17)",
            a.host_ifname,
            a.netns.display()
        );
        assert_eq!(err.to_string(), want);
        assert!(pod_a.ping("10.244.0.3"), "the failed re-ADD broke pod A");

        // The read side of the API agrees.
        dp.check_pod(&a).await.unwrap();
        dp.check_pod(&b).await.unwrap();
        let mut links: Vec<String> = dp
            .list_host_links("lan")
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.0)
            .collect();
        links.sort();
        let mut want = vec![a.host_ifname.clone(), b.host_ifname.clone()];
        want.sort();
        assert_eq!(links, want);
        let pod_routes = dp.list_pod_routes().await.unwrap();
        assert_eq!(
            pod_routes,
            vec![
                (net("10.244.0.2/32"), a.host_ifname.clone()),
                (net("10.244.0.3/32"), b.host_ifname.clone())
            ]
        );
        assert_eq!(dp.link_mtu(&a.host_ifname).await.unwrap(), Some(1450));
        assert_eq!(dp.link_mtu("up0").await.unwrap(), Some(1500));
        assert_eq!(dp.link_mtu("lan-nothing").await.unwrap(), None);

        // Teardown removes everything and is idempotent.
        for spec in [&a, &b] {
            dp.teardown_pod(&spec.host_ifname, &spec.addresses).await.unwrap();
            dp.teardown_pod(&spec.host_ifname, &spec.addresses).await.unwrap();
        }
        assert_eq!(sorted(node.link_names()), ["lo", "up0", "up0p"]);
        assert!(node.lanes_routes().is_empty(), "{:?}", node.lanes_routes());
        assert!(!pod_a.link_names().contains(&"eth0".to_string()));
        assert!(dp.list_pod_routes().await.unwrap().is_empty());
    });
}

#[test]
fn taken_pod_ifname_is_reported_and_leaves_nothing() {
    if !privileged("taken_pod_ifname_is_reported_and_leaves_nothing", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "other"]);
    let spec = pod_spec(&pod, "ctr-taken", "10.244.0.4/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        let err = dp.setup_pod(&spec).await.unwrap_err();
        assert!(matches!(err, Error::PodIfnameTaken { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&spec.host_ifname) && msg.contains(pod.path.to_str().unwrap()),
            "{msg}"
        );
        assert!(msg.contains("interface eth0 already exists in the pod netns"), "{msg}");
    });
    assert_eq!(sorted(node.link_names()), ["lo", "up0", "up0p"]);
    assert!(node.lanes_routes().is_empty());
    assert_eq!(
        sorted(pod.link_names()),
        ["eth0", "lo", "other"],
        "the pod's own eth0 survives"
    );
}

#[test]
fn failure_inside_the_pod_rolls_back_the_veth() {
    if !privileged("failure_inside_the_pod_rolls_back_the_veth", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    // A default route already in the pod makes step 3's `route add default` fail (EEXIST)
    // after the veth, its sysctls and the node's /32 route exist.
    pod.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    pod.ip(&["link", "set", "d0", "up"]);
    pod.ip(&["route", "add", "default", "dev", "d0"]);
    let spec = pod_spec(&pod, "ctr-rollback", "10.244.0.5/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        let err = dp.setup_pod(&spec).await.unwrap_err();
        assert_eq!(err.errno(), Some(17), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("add route default via 169.254.1.1 dev eth0 proto 76 in /run/netns/"),
            "{msg}"
        );
        assert!(msg.ends_with("File exists (os error 17)"), "{msg}");
        assert!(dp.list_pod_routes().await.unwrap().is_empty());
    });
    assert_eq!(
        sorted(node.link_names()),
        ["lo", "up0", "up0p"],
        "veth must be rolled back"
    );
    assert!(node.lanes_routes().is_empty(), "{:?}", node.lanes_routes());
    assert_eq!(
        sorted(pod.link_names()),
        ["d0", "d1", "lo"],
        "pod end goes with the veth"
    );
}

#[test]
fn bad_specs_fail_before_touching_the_kernel() {
    if !privileged("bad_specs_fail_before_touching_the_kernel", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    let good = pod_spec(&pod, "ctr-bad", "10.244.0.10/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        let missing = PodSpec {
            netns: PathBuf::from("/run/netns/lanesdp-no-such-pod"),
            ..good.clone()
        };
        let err = dp.setup_pod(&missing).await.unwrap_err();
        assert!(err.is_netns_missing(), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("open netns /run/netns/lanesdp-no-such-pod: "),
            "{err}"
        );
        let v6 = PodSpec {
            addresses: vec![net("10.244.0.10/32"), net("fd00::a/128")],
            ..good.clone()
        };
        assert!(matches!(dp.setup_pod(&v6).await, Err(Error::Unsupported(_))));
        for bad in [
            PodSpec {
                addresses: vec![net("10.244.0.0/24")],
                ..good.clone()
            },
            PodSpec {
                addresses: vec![],
                ..good.clone()
            },
            PodSpec {
                host_ifname: "lan-name-far-too-long".into(),
                ..good.clone()
            },
            PodSpec {
                container_ifname: "a/b".into(),
                ..good.clone()
            },
            PodSpec {
                mtu: 10,
                ..good.clone()
            },
        ] {
            assert!(matches!(dp.setup_pod(&bad).await, Err(Error::Invalid(_))), "{bad:?}");
        }
    });
    assert_eq!(sorted(node.link_names()), ["lo", "up0", "up0p"]);
    assert_eq!(pod.link_names(), ["lo"]);
}

#[test]
fn host_ifname_is_stable_and_fits() {
    // Fixed vectors: changing them would orphan every existing pod's veth on upgrade.
    assert_eq!(host_ifname("abc", "eth0"), "lan757b8a2e6d5");
    let long_id = "0123456789abcdef".repeat(4);
    assert_eq!(host_ifname(&long_id, "net1"), "lan5b7070cb10e");
    assert!(host_ifname(&long_id, "eth0").len() <= crate::dataplane::MAX_IFNAME_LEN);
}

/// Dumps from many tasks on one handle all succeed: without the per-handle dump turn the kernel
/// refuses every dump that starts while another runs on the same socket (`EBUSY`). Only reads
/// the current netns, so it needs no root.
#[test]
fn concurrent_dumps_on_one_handle_take_turns() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(connection);
        let nl = super::Netlink::new(handle, None);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let nl = nl.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        nl.link_dump().await.map(|links| links.len())
                    } else {
                        nl.route_dump().await.map(|routes| routes.len())
                    }
                })
            })
            .collect();
        for task in tasks {
            let n = task.await.unwrap().expect("a dump failed");
            assert!(n > 0, "every netns has lo and its routes");
        }
    });
}
