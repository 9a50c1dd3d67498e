//! The generic client against a real `ovsdb-server`: transactions, errors, monitor, probes,
//! TCP and reconnect.

mod common;

use std::time::{Duration, Instant};

use common::{fast_options, Server};
use ovn_bridge::{
    value, Client, ClientOptions, Cond, ConnState, Error, EventKind, MonitorRequest, Mutation, Op, OvsDb, Until,
};
use serde_json::json;

#[tokio::test]
async fn transact_insert_select_update_mutate_wait_delete() {
    let Some(srv) = Server::nb() else { return };
    let c = srv.client();
    let db = "OVN_Northbound";

    let ops = [
        Op::insert(
            "Logical_Switch_Port",
            json!({"name": "p1", "addresses": value::string_set(&["dynamic"])}),
        )
        .uuid_name("p1"),
        Op::insert(
            "Logical_Switch",
            json!({"name": "ls1", "ports": value::named_uuid("p1")}),
        )
        .uuid_name("ls"),
        Op::comment("ovn-bridge test"),
    ];
    let r = c.transact(db, &ops).await.unwrap();
    let (p1, ls) = (r[0].uuid.unwrap(), r[1].uuid.unwrap());

    let r = c
        .transact(db, &[Op::select("Logical_Switch", vec![Cond::eq("name", "ls1")])])
        .await
        .unwrap();
    assert_eq!(r[0].rows.len(), 1);
    assert_eq!(r[0].rows[0].uuid(), Some(ls));
    assert_eq!(r[0].rows[0].uuids("ports"), vec![p1]);

    let ops = [
        Op::update(
            "Logical_Switch",
            vec![Cond::uuid(&ls)],
            json!({"other_config": value::string_map(&common::map(&[("subnet", "10.1.0.0/24")]))}),
        ),
        Op::mutate(
            "Logical_Switch",
            vec![Cond::uuid(&ls)],
            vec![Mutation::insert("external_ids", json!(["map", [["k", "v"]]]))],
        ),
        Op::wait(
            "Logical_Switch",
            vec![Cond::uuid(&ls)],
            &["name"],
            Until::Equal,
            vec![json!({"name": "ls1"})],
        ),
        Op::select("Logical_Switch_Port", vec![Cond::uuid(&p1)]).columns(&["name", "addresses"]),
    ];
    let r = c.transact(db, &ops).await.unwrap();
    assert_eq!((r[0].count, r[1].count), (Some(1), Some(1)));
    assert_eq!(r[3].rows[0].strings("addresses"), vec!["dynamic"]);
    assert_eq!(
        srv.nbctl(&["get", "logical_switch", "ls1", "other_config:subnet"]),
        "\"10.1.0.0/24\""
    );
    assert_eq!(srv.nbctl(&["get", "logical_switch", "ls1", "external_ids:k"]), "v");

    // A wait whose condition does not hold fails the transaction, naming op and table.
    let guard = Op::wait(
        "Logical_Switch",
        vec![Cond::uuid(&ls)],
        &["name"],
        Until::Equal,
        vec![json!({"name": "x"})],
    );
    let e = c
        .transact(db, &[guard, Op::delete("Logical_Switch", vec![])])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("OVN_Northbound: wait on Logical_Switch (operation 0) failed: timed out"),
        "{e}"
    );

    // Deleting the switch takes its (non-root) port with it.
    let r = c
        .transact(db, &[Op::delete("Logical_Switch", vec![Cond::eq("name", "ls1")])])
        .await
        .unwrap();
    assert_eq!(r[0].count, Some(1));
    let r = c
        .transact(db, &[Op::select("Logical_Switch_Port", vec![])])
        .await
        .unwrap();
    assert!(r[0].rows.is_empty());
}

#[tokio::test]
async fn errors_name_database_table_and_operation() {
    let Some(srv) = Server::nb() else { return };
    let c = srv.client();

    let e = c
        .transact("OVN_Northbound", &[Op::insert("Logical_Switch", json!({"nope": 1}))])
        .await
        .unwrap_err();
    match &e {
        Error::Operation {
            db,
            index,
            op,
            table,
            server,
        } => {
            assert_eq!(
                (db.as_str(), *index, *op, table.as_str()),
                ("OVN_Northbound", 0, "insert", "Logical_Switch")
            );
            assert_eq!(server.error, "unknown column");
            assert!(server.details.as_deref().unwrap_or("").contains("nope"), "{e}");
        }
        other => panic!("{other}"),
    }

    // A unique-index violation is detected at commit, after every operation succeeded.
    let lsp = |n| Op::insert("Logical_Switch_Port", json!({"name": n})).uuid_name(n);
    let ls = Op::insert(
        "Logical_Switch",
        json!({"name": "s", "ports": ["set", [value::named_uuid("a"), value::named_uuid("b")]]}),
    );
    let ops = [
        lsp("a"),
        Op::insert("Logical_Switch_Port", json!({"name": "a"})).uuid_name("b"),
        ls,
    ];
    let e = c.transact("OVN_Northbound", &ops).await.unwrap_err();
    assert!(matches!(e, Error::Commit { .. }), "{e}");
    assert_eq!(e.server_error().unwrap().error, "constraint violation");
    assert!(e.to_string().contains("Logical_Switch_Port"), "{e}");

    let e = c.transact("Nope", &[Op::comment("x")]).await.unwrap_err();
    assert!(matches!(e, Error::Rpc { .. }), "{e}");
    assert!(
        e.to_string().starts_with("Nope transact rejected: unknown database"),
        "{e}"
    );
}

#[tokio::test]
async fn echo_list_dbs_and_schema() {
    let Some(srv) = Server::ovs() else { return };
    let c = srv.client();
    assert_eq!(c.echo(json!(["a", "b"])).await.unwrap(), json!(["a", "b"]));
    assert!(c.list_dbs().await.unwrap().contains(&"Open_vSwitch".to_string()));
    let schema = c.get_schema("Open_vSwitch").await.unwrap();
    assert_eq!(schema.name(), "Open_vSwitch");
    assert!(schema.tables().iter().any(|t| t.name() == "Interface"));
    OvsDb::new(c.clone()).check_schema().await.unwrap();
    let e = c
        .check_schema("Open_vSwitch", &[("Interface", &["name", "no_such_column"])])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no column Interface.no_such_column"), "{e}");
}

#[tokio::test]
async fn monitor_sees_changes_made_by_another_client() {
    let Some(srv) = Server::ovs() else { return };
    let c = srv.client();
    srv.vsctl(&["init", "--", "add-br", "br0", "--", "add-port", "br0", "p1"]);
    let req = MonitorRequest::new("Interface").columns(&["name", "external_ids"]);
    let mut mon = c.monitor("Open_vSwitch", &[req]).await.unwrap();

    let initial = mon.next().await.unwrap();
    assert_eq!(initial.kind, EventKind::Initial);
    let mut names: Vec<String> = initial
        .updates
        .table("Interface")
        .filter_map(|(_, u)| u.new.as_ref()?.string("name"))
        .collect();
    names.sort();
    assert_eq!(names, ["br0", "p1"]);

    srv.vsctl(&["set", "interface", "p1", "external_ids:iface-id=pod1"]);
    let ev = tokio::time::timeout(Duration::from_secs(5), mon.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, EventKind::Update);
    let (_, change) = ev.updates.table("Interface").next().unwrap();
    assert_eq!(
        change
            .new
            .as_ref()
            .unwrap()
            .map_get("external_ids", "iface-id")
            .as_deref(),
        Some("pod1")
    );
    assert_eq!(change.old.as_ref().unwrap().string_map("external_ids").len(), 0);

    srv.vsctl(&["del-port", "br0", "p1"]);
    let ev = tokio::time::timeout(Duration::from_secs(5), mon.next())
        .await
        .unwrap()
        .unwrap();
    let (_, change) = ev.updates.table("Interface").next().unwrap();
    assert!(change.new.is_none() && change.old.is_some());
}

#[tokio::test]
async fn tcp_connection_answers_the_servers_inactivity_probe() {
    let Some(srv) = Server::ovs() else { return };
    // Our own probe off: the connection survives only if we answer the server's.
    let opts = ClientOptions {
        probe_interval: None,
        ..fast_options()
    };
    let c = Client::with_options(&srv.tcp(), opts).unwrap();
    assert!(c.list_dbs().await.unwrap().contains(&"Open_vSwitch".to_string()));
    // ovsdb-server probes TCP clients idle for 5 s and drops them 5 s later without a reply.
    let start = Instant::now();
    while c.stats().echoes_answered == 0 {
        assert!(start.elapsed() < Duration::from_secs(15), "server never probed us");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(c.stats().echoes_answered >= 2, "{:?}", c.stats());
    assert_eq!(c.stats().connects, 1, "the server dropped us");
    c.transact("Open_vSwitch", &[Op::select("Bridge", vec![])])
        .await
        .unwrap();
}

#[tokio::test]
async fn our_probe_keeps_an_idle_unix_connection_checked() {
    let Some(srv) = Server::ovs() else { return };
    let opts = ClientOptions {
        probe_interval: Some(Duration::from_millis(100)),
        ..fast_options()
    };
    let c = Client::with_options(&srv.unix(), opts).unwrap();
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let s = c.stats();
    assert!(s.probes_sent >= 2, "{s:?}");
    assert_eq!(s.connects, 1, "probe replies were not recognised: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_restart_and_resends_monitors() {
    let Some(mut srv) = Server::ovs() else { return };
    let c = srv.client();
    let ovs = OvsDb::new(c.clone());
    ovs.init().await.unwrap();
    let mut mon = c
        .monitor("Open_vSwitch", &[MonitorRequest::new("Bridge").columns(&["name"])])
        .await
        .unwrap();
    assert_eq!(mon.next().await.unwrap().kind, EventKind::Initial);

    srv.kill();
    let start = Instant::now();
    while c.state() == ConnState::Connected {
        assert!(start.elapsed() < Duration::from_secs(5), "disconnect not noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A call made while the server is down waits for the reconnect.
    let pending = tokio::spawn({
        let ovs = ovs.clone();
        async move { ovs.ensure_bridge("br-int", "netdev", None, &Default::default()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.restart();

    let ev = tokio::time::timeout(Duration::from_secs(10), mon.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, EventKind::Resync);
    assert!(pending.await.unwrap().is_ok());
    // The re-sent monitor is live: it reports the bridge (resync may already include it).
    let mut seen = ev
        .updates
        .table("Bridge")
        .any(|(_, u)| u.new.as_ref().and_then(|r| r.string("name")).as_deref() == Some("br-int"));
    while !seen {
        let ev = tokio::time::timeout(Duration::from_secs(5), mon.next())
            .await
            .unwrap()
            .unwrap();
        seen = ev.updates.table("Bridge").any(|(_, u)| u.new.is_some());
    }
    srv.vsctl(&["add-br", "br-x"]);
    let ev = tokio::time::timeout(Duration::from_secs(5), mon.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, EventKind::Update);
    // 2, or 3 when the first redial reached the dying server's listener before it closed.
    assert!((2..=3).contains(&c.stats().connects), "{:?}", c.stats());
    assert!(ovs.list_ports("br-int").await.unwrap().contains(&"br-int".to_string()));
}
