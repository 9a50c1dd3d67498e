//! The blocking batch socket against a real kernel: ordered requests, the first failure
//! named, the rest still run, and the echo of a created link.

use ipnet::IpNet;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::LinkVeth;

use super::support::{privileged, TestNetns};
use crate::dataplane::batch::{Request, SyncNetlink};
use crate::dataplane::link::link_up_msg;
use crate::dataplane::route::{blackhole_msg, link_route_msg};

/// A fresh netns with a batch socket inside it; `None` (test skipped) without root.
fn scratch(test: &str) -> Option<(TestNetns, SyncNetlink)> {
    if !privileged(test, false) {
        return None;
    }
    let ns = TestNetns::new();
    let file = std::fs::File::open(&ns.path).unwrap();
    let nl = SyncNetlink::open_in(&file, &ns.path).unwrap();
    Some((ns, nl))
}

#[test]
fn a_failed_request_is_named_and_the_rest_of_the_batch_still_runs() {
    let Some((ns, mut nl)) = scratch("a_failed_request_is_named_and_the_rest_of_the_batch_still_runs") else {
        return;
    };
    let dst: IpNet = "10.9.0.0/24".parse().unwrap();
    let err = nl
        .run(vec![
            Request::change(RouteNetlinkMessage::NewLink(link_up_msg(1)), "set link lo up"),
            Request::create(
                RouteNetlinkMessage::NewRoute(link_route_msg(dst, 999)),
                "add route 10.9.0.0/24 dev ifindex 999",
            ),
            Request::create(
                RouteNetlinkMessage::NewRoute(blackhole_msg("10.8.0.0/24".parse().unwrap())),
                "add route blackhole 10.8.0.0/24",
            ),
        ])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "add route 10.9.0.0/24 dev ifindex 999 in {}: ",
            ns.path.display()
        )),
        "{msg}"
    );
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENODEV as i32), "{msg}");
    assert!(ns.ip(&["route", "show", "type", "blackhole"]).contains("10.8.0.0/24"));
    assert!(nl.link_get("lo").unwrap().unwrap().up, "the first request ran too");
    assert_eq!(nl.link_get("nosuchlink").unwrap(), None);
}

#[test]
fn a_created_link_is_echoed_with_its_index_and_mac() {
    let Some((_ns, mut nl)) = scratch("a_created_link_is_echoed_with_its_index_and_mac") else {
        return;
    };
    let msg = LinkVeth::new("veth7", "veth7p").build();
    let echoed = nl
        .create_link(msg.clone(), "add link veth7")
        .unwrap()
        .expect("echo (Linux 6.1+)");
    let looked_up = nl.link_get("veth7").unwrap().unwrap();
    assert_eq!(echoed.name, "veth7");
    assert_eq!((echoed.index, &echoed.mac), (looked_up.index, &looked_up.mac));
    let again = nl.create_link(msg, "add link veth7").unwrap_err().to_string();
    assert!(again.starts_with("add link veth7 in "), "{again}");
    assert!(again.contains("File exists"), "{again}");
}
