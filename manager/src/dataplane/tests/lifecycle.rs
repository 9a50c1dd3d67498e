//! Privileged tests of what happens after setup: teardown, blackholes and CNI CHECK.

use std::path::PathBuf;

use super::support::{in_netns, privileged, TestNetns};
use super::{net, pod_spec};
use crate::dataplane::{CheckError, Dataplane, Error, PodSpec};

#[test]
fn teardown_tolerates_absence_and_refuses_non_veths() {
    if !privileged("teardown_tolerates_absence_and_refuses_non_veths", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    node.ip(&["link", "add", "lanbridge", "type", "bridge"]);
    let spec = pod_spec(&pod, "ctr-idem", "10.244.0.6/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        dp.teardown_pod("lan00000000000", &[net("10.244.0.99/32")])
            .await
            .unwrap();
        let err = dp.teardown_pod("lanbridge", &[]).await.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(matches!(dp.teardown_pod("../x", &[]).await, Err(Error::Invalid(_))));

        // A route for the same address through another device is not ours to delete.
        dp.setup_pod(&spec).await.unwrap();
        node.ip(&[
            "route",
            "add",
            "10.244.7.7/32",
            "dev",
            "up0",
            "proto",
            "76",
            "scope",
            "link",
        ]);
        let addrs = [spec.addresses[0], net("10.244.7.7/32")];
        dp.teardown_pod(&spec.host_ifname, &addrs).await.unwrap();
        dp.teardown_pod(&spec.host_ifname, &addrs).await.unwrap();
        assert_eq!(
            dp.list_pod_routes().await.unwrap(),
            [(net("10.244.7.7/32"), "up0".into())]
        );
    });
    assert!(node.link_names().contains(&"lanbridge".to_string()));
    assert!(!node.link_names().contains(&spec.host_ifname));
}

#[test]
fn deferred_teardown_frees_names_for_an_immediate_re_add() {
    if !privileged("deferred_teardown_frees_names_for_an_immediate_re_add", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    let spec = pod_spec(&pod, "ctr-deferred", "10.244.0.11/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        dp.setup_pod(&spec).await.unwrap();
        let slow = dp
            .teardown_pod_deferred(&spec.host_ifname, &spec.addresses, Some(&spec.netns))
            .await
            .unwrap();
        // Before the delete finishes: route gone, both names free, so the same pod can return.
        assert!(dp.list_pod_routes().await.unwrap().is_empty());
        assert!(dp.list_host_links("lan").await.unwrap().is_empty());
        assert!(!pod.link_names().contains(&"eth0".to_string()));
        dp.setup_pod(&spec).await.unwrap();
        slow.await.unwrap().unwrap();
        dp.check_pod(&spec).await.unwrap();
        assert_eq!(dp.reap_deferred().await.unwrap(), 0);

        // A deferred delete that never ran leaves an `ldel*` veth for reap_deferred.
        dp.teardown_pod_deferred(&spec.host_ifname, &spec.addresses, None)
            .await
            .unwrap()
            .abort();
        dp.reap_deferred().await.unwrap();
        let names = node.link_names();
        assert!(
            !names.iter().any(|n| n.starts_with("ldel") || n.starts_with("lan")),
            "{names:?}"
        );
        // Already gone is fine, with or without the netns.
        let done = dp
            .teardown_pod_deferred(&spec.host_ifname, &[], Some(&spec.netns))
            .await
            .unwrap();
        done.await.unwrap().unwrap();
    });
    assert_eq!(pod.link_names(), ["lo"]);
}

/// The batched delete holds RTNL for ~20 ms, which would stall any ADD in flight: it waits
/// for pod setups to go quiet, and under endless churn runs anyway after MAX_DEFER.
#[test]
fn deferred_deletes_wait_for_setups_to_go_quiet() {
    if !privileged("deferred_deletes_wait_for_setups_to_go_quiet", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    let spec = pod_spec(&pod, "ctr-quiet", "10.244.0.12/32");
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        let dead = || node.link_names().into_iter().filter(|n| n.starts_with("ldel")).count();
        // A setup in flight: the batch (due after 100 ms) waits.
        dp.setup_pod(&spec).await.unwrap();
        let busy = dp.activity.begin();
        let slow = dp
            .teardown_pod_deferred(&spec.host_ifname, &spec.addresses, Some(&spec.netns))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(dead(), 1, "deleted while a setup was in flight");
        drop(busy);
        tokio::time::timeout(std::time::Duration::from_secs(2), slow)
            .await
            .expect("deleted once quiet")
            .unwrap()
            .unwrap();
        assert_eq!(dead(), 0);

        // Setups that never stop: the batch still goes, within a second or so.
        dp.setup_pod(&spec).await.unwrap();
        let _busy = dp.activity.begin();
        let started = std::time::Instant::now();
        let slow = dp
            .teardown_pod_deferred(&spec.host_ifname, &spec.addresses, Some(&spec.netns))
            .await
            .unwrap();
        slow.await.unwrap().unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(900) && waited < std::time::Duration::from_secs(3),
            "{waited:?}"
        );
        assert_eq!(dead(), 0);
    });
}

#[test]
fn blackholes_are_added_listed_and_removed_idempotently() {
    if !privileged("blackholes_are_added_listed_and_removed_idempotently", false) {
        return;
    }
    let node = TestNetns::node();
    // Someone else's blackhole (proto boot) must be neither listed nor removed.
    node.ip(&["route", "add", "blackhole", "10.250.0.0/24"]);
    let v6 = std::path::Path::new("/proc/sys/net/ipv6").exists();
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        let mut blocks = vec![net("10.244.8.0/26")];
        if v6 {
            blocks.push(net("fd00:8::/122"));
        }
        for block in &blocks {
            dp.ensure_blackhole(*block).await.unwrap();
            dp.ensure_blackhole(*block).await.unwrap();
        }
        assert_eq!(dp.list_blackholes().await.unwrap(), blocks);
        let ours = node.ip_json(&["route", "show", "type", "blackhole", "proto", "76"]);
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert_eq!(ours[0]["dst"], "10.244.8.0/26");
        for block in &blocks {
            dp.remove_blackhole(*block).await.unwrap();
            dp.remove_blackhole(*block).await.unwrap();
        }
        assert!(dp.list_blackholes().await.unwrap().is_empty());
        dp.remove_blackhole(net("10.250.0.0/24")).await.unwrap();
    });
    let left = node.ip_json(&["route", "show", "type", "blackhole"]);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["dst"], "10.250.0.0/24");
}

#[test]
fn check_pod_names_what_drifted() {
    if !privileged("check_pod_names_what_drifted", false) {
        return;
    }
    let (node, pod) = (TestNetns::node(), TestNetns::new());
    let spec = pod_spec(&pod, "ctr-check", "10.244.0.9/32");
    let host = spec.host_ifname.clone();
    in_netns(&node, || async {
        let dp = Dataplane::new().await.unwrap();
        dp.setup_pod(&spec).await.unwrap();
        dp.check_pod(&spec).await.unwrap();
        let problems = |res: Result<(), CheckError>| match res {
            Err(CheckError::Mismatch(problems)) => problems,
            other => panic!("expected a mismatch, got {other:?}"),
        };

        // Removing the pod's only IPv4 address also makes the kernel flush the routes via eth0.
        pod.ip(&["addr", "del", "10.244.0.9/32", "dev", "eth0"]);
        let found = problems(dp.check_pod(&spec).await);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("address 10.244.0.9/32 dev eth0 in /run/netns/"),
            "{found:?}"
        );
        assert!(found[1].starts_with("route 169.254.1.1/32 dev eth0 scope link proto 76 in "));
        dp.teardown_pod(&host, &spec.addresses).await.unwrap();
        dp.setup_pod(&spec).await.unwrap();
        dp.check_pod(&spec).await.unwrap();

        node.ip(&["route", "del", "10.244.0.9/32", "dev", &host]);
        let found = problems(dp.check_pod(&spec).await);
        assert_eq!(
            found,
            [format!("route 10.244.0.9/32 dev {host} scope link proto 76 missing")]
        );

        pod.ip(&["route", "del", "default"]);
        let found = problems(dp.check_pod(&spec).await);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[1].starts_with("route default via 169.254.1.1 dev eth0 proto 76"),
            "{found:?}"
        );

        node.ip(&["link", "set", &host, "mtu", "1400"]);
        let found = problems(dp.check_pod(&spec).await);
        assert!(
            found.contains(&format!("{host} has mtu Some(1400), want 1450")),
            "{found:?}"
        );

        dp.teardown_pod(&host, &spec.addresses).await.unwrap();
        let found = problems(dp.check_pod(&spec).await);
        assert_eq!(found[0], format!("host veth {host} missing"));
        let gone = PodSpec {
            netns: PathBuf::from("/run/netns/lanesdp-gone"),
            ..spec.clone()
        };
        match dp.check_pod(&gone).await {
            Err(CheckError::Dataplane(err)) => assert!(err.is_netns_missing(), "{err:?}"),
            other => panic!("{other:?}"),
        }
    });
}
