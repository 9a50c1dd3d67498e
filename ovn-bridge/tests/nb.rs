//! `NbDb` against a real `ovsdb-server` with the `OVN_Northbound` schema, checked with
//! `ovn-nbctl`. Every ensure runs twice: the second must write nothing.

mod common;

use common::{map, Server};
use ovn_bridge::{Action, Error, LspAddresses, NbDb};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn setup() -> Option<(Server, NbDb)> {
    let srv = Server::nb()?;
    let nb = NbDb::new(srv.client());
    Some((srv, nb))
}

#[tokio::test]
async fn logical_switch_is_idempotent_and_exact() {
    let Some((srv, nb)) = setup().await else { return };
    nb.check_schema().await.unwrap();
    let cfg = map(&[("subnet", "10.1.0.0/24"), ("exclude_ips", "10.1.0.1"), ("mtu", "1400")]);
    let ids = map(&[("lanes.dev/network", "default/blue")]);
    let a = nb.ensure_logical_switch("blue", &cfg, &ids).await.unwrap();
    assert_eq!(a.action, Action::Created);
    let b = nb.ensure_logical_switch("blue", &cfg, &ids).await.unwrap();
    assert_eq!((b.uuid, b.action), (a.uuid, Action::Unchanged));
    assert_eq!(
        srv.nbctl(&["get", "logical_switch", "blue", "other_config:subnet"]),
        "\"10.1.0.0/24\""
    );
    assert_eq!(srv.nbctl(&["ls-list"]), format!("{} (blue)", *a.uuid));

    // Dropping exclude_ips from the NAD drops it from the switch.
    let cfg = map(&[("subnet", "10.1.0.0/24"), ("mtu", "1400")]);
    assert_eq!(
        nb.ensure_logical_switch("blue", &cfg, &ids).await.unwrap().action,
        Action::Updated
    );
    assert!(!srv
        .nbctl(&["get", "logical_switch", "blue", "other_config"])
        .contains("exclude_ips"));
    assert_eq!(
        nb.ensure_logical_switch("blue", &cfg, &ids).await.unwrap().action,
        Action::Unchanged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensures_make_one_switch() {
    let Some((srv, _nb)) = setup().await else { return };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let nb = NbDb::new(srv.client());
            tokio::spawn(async move { nb.ensure_logical_switch("race", &map(&[]), &map(&[])).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().action == Action::Created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(NbDb::new(srv.client()).list_logical_switches().await.unwrap(), ["race"]);
}

#[tokio::test]
async fn lsp_is_idempotent_and_listed() {
    let Some((srv, nb)) = setup().await else { return };
    nb.ensure_logical_switch("blue", &map(&[("subnet", "10.1.0.0/24")]), &map(&[]))
        .await
        .unwrap();
    let ids = map(&[("pod", "default/a"), ("lanes.dev/network", "default/blue")]);
    let addrs = strings(&["0a:58:0a:01:00:05 10.1.0.5"]);
    let a = nb
        .ensure_lsp("blue", "default.blue_default_a", &addrs, &addrs, &ids)
        .await
        .unwrap();
    assert_eq!(a.action, Action::Created);
    let b = nb
        .ensure_lsp("blue", "default.blue_default_a", &addrs, &addrs, &ids)
        .await
        .unwrap();
    assert_eq!((b.uuid, b.action), (a.uuid, Action::Unchanged));
    assert_eq!(
        srv.nbctl(&["lsp-list", "blue"]),
        format!("{} (default.blue_default_a)", *a.uuid)
    );
    assert_eq!(
        srv.nbctl(&["lsp-get-port-security", "default.blue_default_a"]),
        "0a:58:0a:01:00:05 10.1.0.5"
    );

    let dynamic = strings(&["dynamic"]);
    let c = nb
        .ensure_lsp("blue", "default.blue_default_a", &dynamic, &[], &ids)
        .await
        .unwrap();
    assert_eq!(c.action, Action::Updated);
    assert_eq!(
        nb.ensure_lsp("blue", "default.blue_default_a", &dynamic, &[], &ids)
            .await
            .unwrap()
            .action,
        Action::Unchanged
    );
    assert_eq!(
        nb.get_lsp_dynamic_addresses("default.blue_default_a").await.unwrap(),
        None
    );
    // What ovn-northd would write.
    srv.nbctl(&[
        "set",
        "logical_switch_port",
        "default.blue_default_a",
        "dynamic_addresses=\"0a:58:0a:01:00:07 10.1.0.7\"",
    ]);
    let dyn_addr = nb
        .get_lsp_dynamic_addresses("default.blue_default_a")
        .await
        .unwrap()
        .unwrap();
    let parsed = LspAddresses::parse(&dyn_addr).unwrap();
    assert_eq!(
        (parsed.mac.as_str(), parsed.ips[0].to_string().as_str()),
        ("0a:58:0a:01:00:07", "10.1.0.7")
    );

    let lsps = nb.list_lsps("blue").await.unwrap();
    assert_eq!(lsps.len(), 1);
    assert_eq!(lsps[0].addresses, ["dynamic"]);
    assert!(lsps[0].port_security.is_empty());
    assert_eq!(lsps[0].external_ids, ids);
    assert_eq!(lsps[0].dynamic_addresses.as_deref(), Some("0a:58:0a:01:00:07 10.1.0.7"));

    let e = nb.get_lsp_dynamic_addresses("nope").await.unwrap_err();
    assert_eq!(e.to_string(), "OVN_Northbound: Logical_Switch_Port \"nope\" not found");
    let e = nb.ensure_lsp("red", "x", &dynamic, &[], &ids).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                table: "Logical_Switch",
                ..
            }
        ),
        "{e}"
    );
    nb.ensure_logical_switch("red", &map(&[]), &map(&[])).await.unwrap();
    let e = nb
        .ensure_lsp("red", "default.blue_default_a", &dynamic, &[], &ids)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    assert!(nb.list_lsps("red").await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_lsp_by_name_and_by_external_id() {
    let Some((srv, nb)) = setup().await else { return };
    for ls in ["blue", "green"] {
        nb.ensure_logical_switch(ls, &map(&[]), &map(&[])).await.unwrap();
    }
    let d = strings(&["dynamic"]);
    nb.ensure_lsp("blue", "a1", &d, &[], &map(&[("pod", "a")]))
        .await
        .unwrap();
    nb.ensure_lsp("green", "a2", &d, &[], &map(&[("pod", "a"), ("x", "y")]))
        .await
        .unwrap();
    nb.ensure_lsp("blue", "a3", &d, &[], &map(&[("pod", "a")]))
        .await
        .unwrap();
    nb.ensure_lsp("blue", "b1", &d, &[], &map(&[("pod", "b")]))
        .await
        .unwrap();
    nb.ensure_lsp("green", "b2", &d, &[], &map(&[("pod", "b")]))
        .await
        .unwrap();

    assert_eq!(nb.delete_lsps_by_external_id("pod", "a").await.unwrap(), 3);
    assert_eq!(nb.delete_lsps_by_external_id("pod", "a").await.unwrap(), 0);
    let names = srv.nbctl(&["--bare", "--columns=name", "list", "logical_switch_port"]);
    let mut names: Vec<&str> = names.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["b1", "b2"]);

    assert!(!nb.delete_lsp("green", "b1").await.unwrap(), "b1 is on blue");
    assert!(nb.delete_lsp("blue", "b1").await.unwrap());
    assert!(!nb.delete_lsp("blue", "b1").await.unwrap());
    assert_eq!(srv.nbctl(&["lsp-list", "blue"]), "");
    assert_eq!(
        nb.list_lsps("green")
            .await
            .unwrap()
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["b2"]
    );
    // The switches' port sets no longer mention the deleted rows.
    assert_eq!(srv.nbctl(&["get", "logical_switch", "blue", "ports"]), "[]");
}

#[tokio::test]
async fn router_gateway_is_idempotent() {
    let Some((srv, nb)) = setup().await else { return };
    nb.ensure_logical_switch("blue", &map(&[("subnet", "10.1.0.0/24")]), &map(&[]))
        .await
        .unwrap();
    let ids = map(&[("lanes.dev/owner", "lanes")]);
    let r = nb.ensure_logical_router("lr0", &ids).await.unwrap();
    assert_eq!(r.action, Action::Created);
    assert_eq!(
        nb.ensure_logical_router("lr0", &ids).await.unwrap().action,
        Action::Unchanged
    );

    let nets = strings(&["10.1.0.1/24"]);
    let (rp, sp) = nb
        .connect_switch_to_router("blue", "lr0", "rtos-blue", "stor-blue", "0a:58:0a:01:00:01", &nets)
        .await
        .unwrap();
    assert_eq!((rp.action, sp.action), (Action::Created, Action::Created));
    let (rp2, sp2) = nb
        .connect_switch_to_router("blue", "lr0", "rtos-blue", "stor-blue", "0a:58:0a:01:00:01", &nets)
        .await
        .unwrap();
    assert_eq!((rp2.action, sp2.action), (Action::Unchanged, Action::Unchanged));
    assert_eq!((rp2.uuid, sp2.uuid), (rp.uuid, sp.uuid));

    assert_eq!(srv.nbctl(&["lsp-get-type", "stor-blue"]), "router");
    assert_eq!(
        srv.nbctl(&["get", "logical_switch_port", "stor-blue", "addresses"]),
        "[router]"
    );
    assert_eq!(
        srv.nbctl(&["get", "logical_switch_port", "stor-blue", "options:router-port"]),
        "rtos-blue"
    );
    assert_eq!(srv.nbctl(&["lrp-list", "lr0"]), format!("{} (rtos-blue)", *rp.uuid));
    assert_eq!(
        srv.nbctl(&["get", "logical_router_port", "rtos-blue", "networks"]),
        "[\"10.1.0.1/24\"]"
    );

    // A new gateway address updates the router port in place.
    let nets = strings(&["10.1.0.254/24"]);
    assert_eq!(
        nb.ensure_lrp("lr0", "rtos-blue", "0a:58:0a:01:00:fe", &nets)
            .await
            .unwrap()
            .action,
        Action::Updated
    );
    assert_eq!(
        srv.nbctl(&["get", "logical_router_port", "rtos-blue", "mac"]),
        "\"0a:58:0a:01:00:fe\""
    );
    let lsps = nb.list_lsps("blue").await.unwrap();
    assert_eq!(
        (
            lsps[0].lsp_type.as_str(),
            lsps[0].options.get("router-port").map(String::as_str)
        ),
        ("router", Some("rtos-blue"))
    );
}

/// A switch goes (with its gateway router) only while no VIF port is on it; router ports don't
/// count.
#[tokio::test]
async fn idle_switch_and_router_are_deleted_busy_ones_kept() {
    let Some((srv, nb)) = setup().await else { return };
    let ids = map(&[("lanes.dev/network", "blue")]);
    nb.ensure_logical_switch("blue", &map(&[("subnet", "10.1.0.0/24")]), &ids)
        .await
        .unwrap();
    nb.ensure_logical_router("lr-blue", &ids).await.unwrap();
    let nets = strings(&["10.1.0.1/24"]);
    nb.connect_switch_to_router("blue", "lr-blue", "rtos-blue", "stor-blue", "0a:58:0a:01:00:01", &nets)
        .await
        .unwrap();
    nb.ensure_lsp("blue", "pod1", &strings(&["dynamic"]), &[], &map(&[]))
        .await
        .unwrap();
    assert_eq!(
        nb.logical_switches_with("lanes.dev/network").await.unwrap(),
        [("blue".to_string(), "blue".to_string())]
    );
    assert!(
        !nb.delete_idle_logical_switch("blue", Some("lr-blue")).await.unwrap(),
        "a pod port keeps the switch"
    );
    assert!(srv.nbctl(&["ls-list"]).contains("(blue)"));
    assert!(nb.delete_lsp("blue", "pod1").await.unwrap());
    assert!(nb.delete_idle_logical_switch("blue", Some("lr-blue")).await.unwrap());
    assert_eq!(srv.nbctl(&["ls-list"]), "");
    assert_eq!(srv.nbctl(&["lr-list"]), "");
    assert_eq!(
        srv.nbctl(&["--bare", "--columns=name", "list", "logical_router_port"]),
        ""
    );
    assert!(
        !nb.delete_idle_logical_switch("blue", None).await.unwrap(),
        "already gone"
    );
}
