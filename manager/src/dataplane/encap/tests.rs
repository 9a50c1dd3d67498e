//! Unit tests of [`super::plan`]: routing decisions, determinism and skipped inputs.

use super::*;
use EncapKind::{Ipip, Vxlan};
use EncapMode::{Always, CrossSubnet};

fn remote(block: &str, node: &str, node_ip: &str, mode: EncapMode, kind: EncapKind) -> RemoteBlock {
    let n: u8 = node.trim_start_matches("node").parse().unwrap_or(99);
    RemoteBlock {
        block: block.parse().unwrap(),
        node: node.into(),
        node_ip: node_ip.parse().unwrap(),
        vtep_mac: Some(vtep_mac(node)),
        vtep_ip: Some(Ipv4Addr::new(10, 244, n, 0)),
        mode,
        kind,
    }
}

fn plan_of(remotes: &[RemoteBlock]) -> EncapPlan {
    plan("192.168.0.11/24".parse().unwrap(), remotes)
}

fn show<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

#[test]
fn vxlan_always_routes_via_the_vtep_with_fdb_and_neighbour() {
    let plan = plan_of(&[remote("10.244.2.0/26", "node2", "192.168.0.12", Always, Vxlan)]);
    assert_eq!(
        show(&plan.routes),
        ["10.244.2.0/26 via 10.244.2.0 dev vxlan.lanes onlink proto 76"]
    );
    let mac = format_mac(&vtep_mac("node2"));
    assert_eq!(
        show(&plan.fdb),
        [format!("{mac} dev vxlan.lanes dst 192.168.0.12 self permanent")]
    );
    assert_eq!(
        show(&plan.neighbors),
        [format!("10.244.2.0 lladdr {mac} dev vxlan.lanes nud permanent")]
    );
    assert!(plan.skipped.is_empty() && plan.uses_tunnel(VXLAN_DEVICE) && !plan.uses_tunnel(IPIP_DEVICE));
}

#[test]
fn cross_subnet_is_native_on_the_same_subnet_only() {
    let plan = plan_of(&[
        remote("10.244.3.0/26", "node3", "192.168.0.13", CrossSubnet, Vxlan),
        remote("10.244.2.0/26", "node2", "192.168.2.12", CrossSubnet, Vxlan),
    ]);
    assert_eq!(
        show(&plan.routes),
        [
            "10.244.2.0/26 via 10.244.2.0 dev vxlan.lanes onlink proto 76",
            "10.244.3.0/26 via 192.168.0.13 proto 76",
        ]
    );
    assert_eq!(plan.routes[1].dev, RouteDev::Underlay);
    // Felix programs every known VTEP, used by a route or not: no churn when modes change.
    assert_eq!((plan.fdb.len(), plan.neighbors.len()), (2, 2));
    assert_eq!(plan.tunnel_devices().into_iter().collect::<Vec<_>>(), [VXLAN_DEVICE]);
}

#[test]
fn ipip_routes_via_the_node_address_without_l2_entries() {
    let plan = plan_of(&[
        remote("10.244.2.0/26", "node2", "192.168.2.12", CrossSubnet, Ipip),
        remote("10.244.3.0/26", "node3", "192.168.0.13", CrossSubnet, Ipip),
        remote("10.244.4.0/26", "node4", "192.168.0.14", Always, Ipip),
    ]);
    assert_eq!(
        show(&plan.routes),
        [
            "10.244.2.0/26 via 192.168.2.12 dev ipip.lanes onlink proto 76",
            "10.244.3.0/26 via 192.168.0.13 proto 76",
            "10.244.4.0/26 via 192.168.0.14 dev ipip.lanes onlink proto 76",
        ]
    );
    assert!(plan.fdb.is_empty() && plan.neighbors.is_empty());
}

#[test]
fn order_of_inputs_does_not_matter_and_blocks_are_normalised() {
    let mut inputs = vec![
        remote("10.244.2.5/26", "node2", "192.168.2.12", Always, Vxlan),
        remote("10.244.2.64/26", "node2", "192.168.2.12", Always, Vxlan),
        remote("10.244.3.0/26", "node3", "192.168.0.13", CrossSubnet, Vxlan),
        remote("10.244.5.0/26", "node5", "192.168.0.15", CrossSubnet, Ipip),
    ];
    let first = plan_of(&inputs);
    inputs.reverse();
    assert_eq!(plan_of(&inputs), first);
    assert_eq!(first.routes[0].dst.to_string(), "10.244.2.0/26");
    assert_eq!(first.fdb.len(), 2, "one FDB entry per node, not per block");
}

#[test]
fn unusable_inputs_are_skipped_with_a_reason() {
    let mut no_vtep = remote("10.244.6.0/26", "node6", "192.168.2.16", Always, Vxlan);
    no_vtep.vtep_mac = None;
    let mut same_mac = remote("10.244.8.0/26", "node8", "192.168.2.18", Always, Vxlan);
    same_mac.vtep_mac = Some(vtep_mac("node7"));
    let plan = plan_of(&[
        remote("fd00:10:244::/122", "node2", "192.168.2.12", Always, Vxlan),
        remote("10.244.1.0/26", "node1", "192.168.0.11", Always, Vxlan),
        remote("10.244.2.0/26", "node2", "192.168.2.12", Always, Vxlan),
        remote("10.244.2.0/26", "node9", "192.168.2.19", Always, Vxlan),
        no_vtep,
        remote("10.244.7.0/26", "node7", "192.168.2.17", Always, Vxlan),
        same_mac,
    ]);
    assert_eq!(
        show(&plan.skipped),
        [
            "10.244.1.0/26 of node1: node address 192.168.0.11 is this node's",
            "10.244.2.0/26 of node9: block already routed to node node2",
            "10.244.6.0/26 of node6: node has no VTEP yet (VXLAN MAC or address unknown)",
            "10.244.8.0/26 of node8: VTEP MAC already used by node node7",
            "fd00:10:244::/122 of node2: IPv6 blocks are not encapsulated yet",
        ]
    );
    let dsts: Vec<String> = plan.routes.iter().map(|r| r.dst.to_string()).collect();
    assert_eq!(dsts, ["10.244.2.0/26", "10.244.7.0/26"]);
    let vteps: Vec<String> = plan.fdb.iter().map(|f| f.dst.to_string()).collect();
    assert_eq!(
        vteps,
        ["192.168.2.17", "192.168.2.19", "192.168.2.12"],
        "node9's VTEP is valid"
    );
}

#[test]
fn vtep_mac_is_stable_unicast_and_locally_administered() {
    let mac = vtep_mac("node1");
    assert_eq!(mac, vtep_mac("node1"));
    assert_ne!(mac, vtep_mac("node2"));
    assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}");
    // A fixed vector: changing it would change every node's VTEP on upgrade.
    assert_eq!(format_mac(&mac), "82:ef:aa:45:b9:ba");
}
