//! `OvsDb` against a real `ovsdb-server` with the `Open_vSwitch` schema, checked with
//! `ovs-vsctl`. Every ensure runs twice: the second must write nothing.

mod common;

use std::time::{Duration, Instant};

use common::{map, Server};
use ovn_bridge::{Action, Error, FailMode, OvsDb};

async fn setup() -> Option<(Server, OvsDb)> {
    let srv = Server::ovs()?;
    let ovs = OvsDb::new(srv.client());
    Some((srv, ovs))
}

#[tokio::test]
async fn init_and_bridge_are_idempotent() {
    let Some((srv, ovs)) = setup().await else { return };
    let e = ovs
        .ensure_bridge("br-int", "netdev", None, &map(&[]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                table: "Open_vSwitch",
                ..
            }
        ),
        "{e}"
    );

    assert_eq!(ovs.init().await.unwrap().action, Action::Created);
    assert_eq!(ovs.init().await.unwrap().action, Action::Unchanged);

    let cfg = map(&[("disable-in-band", "true")]);
    let a = ovs
        .ensure_bridge("br-int", "netdev", Some(FailMode::Secure), &cfg)
        .await
        .unwrap();
    assert_eq!(a.action, Action::Created);
    let b = ovs
        .ensure_bridge("br-int", "netdev", Some(FailMode::Secure), &cfg)
        .await
        .unwrap();
    assert_eq!((b.uuid, b.action), (a.uuid, Action::Unchanged));
    assert_eq!(srv.vsctl(&["list-br"]), "br-int");
    assert_eq!(
        srv.vsctl(&["get", "bridge", "br-int", "datapath_type", "fail_mode"]),
        "netdev\nsecure"
    );
    assert_eq!(srv.vsctl(&["get", "interface", "br-int", "type"]), "internal");

    // Someone else's other_config key survives; ours is updated; fail_mode can be cleared.
    srv.vsctl(&["set", "bridge", "br-int", "other_config:hwaddr=02:00:00:00:00:01"]);
    let cfg = map(&[("disable-in-band", "false")]);
    let c = ovs.ensure_bridge("br-int", "netdev", None, &cfg).await.unwrap();
    assert_eq!((c.uuid, c.action), (a.uuid, Action::Updated));
    assert_eq!(
        srv.vsctl(&["get", "bridge", "br-int", "other_config:disable-in-band"]),
        "\"false\""
    );
    assert_eq!(
        srv.vsctl(&["get", "bridge", "br-int", "other_config:hwaddr"]),
        "\"02:00:00:00:00:01\""
    );
    assert_eq!(srv.vsctl(&["get", "bridge", "br-int", "fail_mode"]), "[]");
    assert_eq!(
        ovs.ensure_bridge("br-int", "netdev", None, &cfg).await.unwrap().action,
        Action::Unchanged
    );
}

#[tokio::test]
async fn port_is_idempotent_and_merges_external_ids() {
    let Some((srv, ovs)) = setup().await else { return };
    ovs.init().await.unwrap();
    ovs.ensure_bridge("br-int", "netdev", Some(FailMode::Secure), &map(&[]))
        .await
        .unwrap();
    let ids = map(&[
        ("iface-id", "ns_pod"),
        ("attached_mac", "0a:58:0a:01:00:05"),
        ("sandbox", "c1"),
    ]);
    let a = ovs.ensure_port("br-int", "lan1", "", &ids).await.unwrap();
    assert_eq!(a.action, Action::Created);
    assert_eq!(
        ovs.ensure_port("br-int", "lan1", "", &ids).await.unwrap().action,
        Action::Unchanged
    );
    assert_eq!(srv.vsctl(&["list-ports", "br-int"]), "lan1");
    assert_eq!(ovs.list_ports("br-int").await.unwrap(), ["br-int", "lan1"]);
    assert_eq!(
        srv.vsctl(&["get", "interface", "lan1", "external_ids:iface-id"]),
        "ns_pod"
    );

    // ovn-controller marks it installed; our update must not wipe that.
    srv.vsctl(&["set", "interface", "lan1", "external_ids:ovn-installed=true"]);
    let ids = map(&[
        ("iface-id", "ns_pod"),
        ("attached_mac", "0a:58:0a:01:00:06"),
        ("ip_addresses", "10.1.0.6/24"),
    ]);
    let b = ovs.ensure_port("br-int", "lan1", "", &ids).await.unwrap();
    assert_eq!((b.uuid, b.action), (a.uuid, Action::Updated));
    let got = ovs.interface_external_ids("lan1").await.unwrap().unwrap();
    assert_eq!(got.get("attached_mac").map(String::as_str), Some("0a:58:0a:01:00:06"));
    assert_eq!(got.get("ip_addresses").map(String::as_str), Some("10.1.0.6/24"));
    assert_eq!(got.get("ovn-installed").map(String::as_str), Some("true"));
    assert_eq!(got.get("sandbox").map(String::as_str), Some("c1"));
    assert_eq!(
        ovs.ensure_port("br-int", "lan1", "", &ids).await.unwrap().action,
        Action::Unchanged
    );

    // The interface type is ours to set.
    assert_eq!(
        ovs.ensure_port("br-int", "lan1", "internal", &ids)
            .await
            .unwrap()
            .action,
        Action::Updated
    );
    assert_eq!(srv.vsctl(&["get", "interface", "lan1", "type"]), "internal");

    // Same port name on another bridge: refused, not moved.
    ovs.ensure_bridge("br-ex", "netdev", None, &map(&[])).await.unwrap();
    let e = ovs.ensure_port("br-ex", "lan1", "", &ids).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { table: "Port", .. }), "{e}");
    assert!(e.to_string().contains("not in Bridge \"br-ex\""), "{e}");
    let e = ovs.ensure_port("br-nope", "lan2", "", &ids).await.unwrap_err();
    assert!(e.to_string().contains("Bridge \"br-nope\" not found"), "{e}");
}

#[tokio::test]
async fn delete_by_name_and_find_by_external_id() {
    let Some((srv, ovs)) = setup().await else { return };
    ovs.init().await.unwrap();
    ovs.ensure_bridge("br-int", "netdev", None, &map(&[])).await.unwrap();
    for (port, sandbox) in [("p1", "abc"), ("p2", "abc"), ("p3", "other")] {
        ovs.ensure_port("br-int", port, "", &map(&[("sandbox", sandbox), ("iface-id", port)]))
            .await
            .unwrap();
    }
    let found = ovs.find_ports_by_external_id("sandbox", "abc").await.unwrap();
    assert_eq!(found.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
    assert_eq!(found[0].external_ids.get("iface-id").map(String::as_str), Some("p1"));
    assert!(ovs
        .find_ports_by_external_id("sandbox", "none")
        .await
        .unwrap()
        .is_empty());

    for p in &found {
        assert!(ovs.delete_port("br-int", &p.name).await.unwrap());
        assert!(!ovs.delete_port("br-int", &p.name).await.unwrap());
    }
    assert_eq!(srv.vsctl(&["list-ports", "br-int"]), "p3");
    assert!(ovs
        .find_ports_by_external_id("sandbox", "abc")
        .await
        .unwrap()
        .is_empty());
    // The Interface rows went with their ports.
    assert_eq!(
        srv.vsctl(&["--bare", "--columns=name", "find", "interface", "name=p1"]),
        ""
    );
    assert!(!ovs.delete_port("br-nope", "p3").await.unwrap());
}

#[tokio::test]
async fn open_vswitch_external_ids_merge() {
    let Some((srv, ovs)) = setup().await else { return };
    let ids = map(&[("system-id", "node1"), ("ovn-remote", "tcp:192.168.122.10:6642")]);
    let e = ovs.set_open_vswitch_external_ids(&ids).await.unwrap_err();
    assert!(e.to_string().contains("ovs-vsctl init"), "{e}");
    srv.vsctl(&["init", "--", "set", "open", ".", "external_ids:rundir=/x"]);
    assert_eq!(ovs.set_open_vswitch_external_ids(&ids).await.unwrap(), Action::Updated);
    assert_eq!(
        ovs.set_open_vswitch_external_ids(&ids).await.unwrap(),
        Action::Unchanged
    );
    let more = map(&[
        ("ovn-encap-ip", "192.168.200.11"),
        ("ovn-encap-type", "geneve"),
        ("ovn-bridge-datapath-type", "netdev"),
        ("hostname", "node1"),
        ("system-id", "node1"),
    ]);
    assert_eq!(ovs.set_open_vswitch_external_ids(&more).await.unwrap(), Action::Updated);
    let got = srv.vsctl(&["get", "open", ".", "external_ids"]);
    for kv in [
        "rundir=\"/x\"",
        "system-id=node1",
        "ovn-encap-ip=\"192.168.200.11\"",
        "ovn-remote=",
    ] {
        assert!(got.contains(kv), "{kv} in {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_interface_column_sees_another_clients_write() {
    let Some((srv, ovs)) = setup().await else { return };
    ovs.init().await.unwrap();
    ovs.ensure_bridge("br-int", "netdev", None, &map(&[])).await.unwrap();
    ovs.ensure_port("br-int", "lan1", "", &map(&[("iface-id", "p")]))
        .await
        .unwrap();
    let db = srv.unix();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        common::run(
            "ovs-vsctl",
            &[
                &format!("--db={db}"),
                "--no-wait",
                "set",
                "interface",
                "lan1",
                "external_ids:ovn-installed=true",
            ],
        );
    });
    let never = std::future::pending::<()>();
    let waited = ovs
        .wait_interface_column(
            "lan1",
            "external_ids:ovn-installed",
            "true",
            Duration::from_secs(10),
            never,
        )
        .await
        .unwrap();
    writer.join().unwrap();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // Already true: returns at once. Plain columns work too.
    let quick = ovs
        .wait_interface_column(
            "lan1",
            "external_ids:ovn-installed",
            "true",
            Duration::from_secs(5),
            std::future::pending(),
        )
        .await
        .unwrap();
    assert!(quick < Duration::from_secs(1), "{quick:?}");
    ovs.wait_interface_column("lan1", "name", "lan1", Duration::from_secs(5), std::future::pending())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_interface_column_for_a_port_created_later() {
    let Some((srv, ovs)) = setup().await else { return };
    srv.vsctl(&["init", "--", "add-br", "br-int"]);
    let db = srv.unix();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let db = format!("--db={db}");
        common::run(
            "ovs-vsctl",
            &[
                &db,
                "--no-wait",
                "add-port",
                "br-int",
                "late",
                "--",
                "set",
                "interface",
                "late",
                "external_ids:ovn-installed=true",
            ],
        );
    });
    ovs.wait_interface_column(
        "late",
        "external_ids:ovn-installed",
        "true",
        Duration::from_secs(10),
        std::future::pending(),
    )
    .await
    .unwrap();
    writer.join().unwrap();
}

#[tokio::test]
async fn wait_interface_column_times_out_or_is_cancelled() {
    let Some((_srv, ovs)) = setup().await else { return };
    ovs.init().await.unwrap();
    ovs.ensure_bridge("br-int", "netdev", None, &map(&[])).await.unwrap();
    ovs.ensure_port("br-int", "lan1", "", &map(&[])).await.unwrap();

    let start = Instant::now();
    let e = ovs
        .wait_interface_column(
            "lan1",
            "external_ids:ovn-installed",
            "true",
            Duration::from_millis(300),
            std::future::pending(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WaitTimeout { .. }), "{e}");
    assert!(
        e.to_string().contains("lan1") && e.to_string().contains("ovn-installed"),
        "{e}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300) && start.elapsed() < Duration::from_secs(2));
    assert!(e.is_transient());

    let start = Instant::now();
    let cancel = tokio::time::sleep(Duration::from_millis(100));
    let e = ovs
        .wait_interface_column(
            "lan1",
            "external_ids:ovn-installed",
            "true",
            Duration::from_secs(30),
            cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(2));
    // The monitors of both waits were cancelled: the client is still fine.
    assert_eq!(ovs.list_ports("br-int").await.unwrap(), ["br-int", "lan1"]);
}
