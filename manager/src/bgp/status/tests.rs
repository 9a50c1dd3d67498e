//! Parser tests on real BIRD 2.0.12 output. Node A (`capture_a.conf`, AS 64512) and node B
//! (`capture_b.conf`, passive side of the mesh) ran in two network namespaces joined by a veth:
//! A↔B iBGP over IPv4 and IPv6 (`Mesh_…`), eBGP to B's AS 1111111 (`Global_10_231_1_2`), a peer
//! with no host behind it (`Node_10_231_0_99`), MD5 with different passwords on the two sides
//! (`Node_10_231_2_2`), a wrong peer AS (`Global_10_231_3_2`) and a disabled session
//! (`Global_10_231_9_9`). Captured with `birdc -s SOCK show …`; the `.raw` file is the same
//! reply as read from the control socket.

use super::*;

const PROTOCOLS_ALL_A: &str = include_str!("../testdata/protocols_all_a.txt");
const PROTOCOLS_ALL_B: &str = include_str!("../testdata/protocols_all_b.txt");
const PROTOCOLS_A: &str = include_str!("../testdata/protocols_a.txt");
const ROUTE_A: &str = include_str!("../testdata/route_a.txt");
const ROUTE_B: &str = include_str!("../testdata/route_b.txt");
const ROUTE_ALL_B: &str = include_str!("../testdata/route_all_b.txt");
const ROUTE_PROTOCOL_B: &str = include_str!("../testdata/route_protocol_b.txt");
const ROUTE_COUNT_A: &str = include_str!("../testdata/route_count_a.txt");

fn find<'a>(ps: &'a [ProtocolStatus], name: &str) -> &'a ProtocolStatus {
    ps.iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no protocol {name}"))
}

#[test]
fn protocols_all_lists_every_protocol_with_its_summary() {
    let ps = parse_protocols(PROTOCOLS_ALL_A);
    let names: Vec<&str> = ps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "device1",
            "direct1",
            "kernel4",
            "kernel6",
            "static_blocks",
            "static_v6",
            "Mesh_10_231_0_2",
            "Mesh_fd00_231__2",
            "Global_10_231_1_2",
            "Node_10_231_0_99",
            "Node_10_231_2_2",
            "Global_10_231_3_2",
            "Global_10_231_9_9"
        ]
    );
    let k = find(&ps, "kernel4");
    assert_eq!(
        (k.proto.as_str(), k.table.as_str(), k.state.as_str()),
        ("Kernel", "master4", "up")
    );
    assert_eq!(
        (k.since.as_str(), k.info.as_str(), k.bgp.is_none()),
        ("12:57:47.849", "", true)
    );
    let s = find(&ps, "static_blocks");
    assert_eq!((s.proto.as_str(), s.channels.len()), ("Static", 1));
    let r = s.routes();
    assert_eq!((r.imported, r.exported, r.preferred), (4, 0, 4));
    assert_eq!(find(&ps, "device1").channels, []);
}

#[test]
fn established_ibgp_session() {
    let ps = parse_protocols(PROTOCOLS_ALL_A);
    let p = find(&ps, "Mesh_10_231_0_2");
    assert_eq!(
        (p.proto.as_str(), p.table.as_str(), p.state.as_str()),
        ("BGP", "---", "up")
    );
    assert_eq!((p.since.as_str(), p.info.as_str()), ("12:57:49.788", "Established"));
    let b = p.bgp.as_ref().unwrap();
    assert_eq!(b.state, "Established");
    assert_eq!(b.neighbor_address.as_deref(), Some("10.231.0.2"));
    assert_eq!((b.neighbor_as, b.local_as), (Some(64512), Some(64512)));
    assert_eq!(b.neighbor_id.as_deref(), Some("10.231.0.2"));
    assert_eq!(b.session.as_deref(), Some("internal multihop AS4"));
    assert_eq!(b.source_address.as_deref(), Some("10.231.0.1"));
    assert_eq!(b.last_error, None);
    assert_eq!(b.hold_timer.as_ref().map(|t| t.configured), Some(240));
    assert_eq!(b.keepalive_timer.as_ref().map(|t| t.configured), Some(80));
    assert!(b.hold_timer.as_ref().unwrap().remaining > 0.0);
    let c = &p.channels[0];
    assert_eq!(
        (c.name.as_str(), c.state.as_str(), c.table.as_str()),
        ("ipv4", "UP", "master4")
    );
    assert_eq!(
        c.routes,
        Some(RouteStats {
            imported: 2,
            filtered: 0,
            exported: 4,
            preferred: 2
        })
    );
}

#[test]
fn ebgp_session_with_4_octet_as_and_its_timers() {
    let ps = parse_protocols(PROTOCOLS_ALL_A);
    let b = find(&ps, "Global_10_231_1_2").bgp.clone().unwrap();
    assert_eq!((b.neighbor_as, b.local_as), (Some(1_111_111), Some(64512)));
    assert_eq!(b.session.as_deref(), Some("external AS4"));
    assert_eq!(b.hold_timer.map(|t| t.configured), Some(90));
    assert_eq!(b.keepalive_timer.map(|t| t.configured), Some(30));
}

#[test]
fn ipv6_session_with_a_down_ipv4_channel() {
    let ps = parse_protocols(PROTOCOLS_ALL_A);
    let p = find(&ps, "Mesh_fd00_231__2");
    assert_eq!(p.bgp.as_ref().unwrap().neighbor_address.as_deref(), Some("fd00:231::2"));
    let chans: Vec<(&str, &str, bool)> = p
        .channels
        .iter()
        .map(|c| (c.name.as_str(), c.state.as_str(), c.routes.is_some()))
        .collect();
    assert_eq!(chans, [("ipv6", "UP", true), ("ipv4", "DOWN", false)]);
    assert_eq!(p.routes().exported, 1);
}

#[test]
fn sessions_that_are_not_up() {
    let ps = parse_protocols(PROTOCOLS_ALL_A);
    let nohost = find(&ps, "Node_10_231_0_99");
    assert_eq!(
        (nohost.state.as_str(), nohost.info.as_str()),
        ("start", "Active Socket: No route to host")
    );
    let b = nohost.bgp.as_ref().unwrap();
    assert_eq!(
        (b.state.as_str(), b.last_error.as_deref()),
        ("Active", Some("Socket: No route to host"))
    );
    assert_eq!(b.hold_timer, None);

    // MD5 mismatch: the SYNs are dropped silently, so BIRD only ever says Connect/Active.
    let md5 = find(&ps, "Node_10_231_2_2");
    assert_eq!((md5.state.as_str(), md5.info.as_str()), ("start", "Connect"));
    assert_eq!(md5.bgp.as_ref().unwrap().last_error, None);

    let bad_as = find(&ps, "Global_10_231_3_2");
    assert_eq!(bad_as.info, "Active Socket: Connection reset by peer");
    assert_eq!(bad_as.bgp.as_ref().unwrap().neighbor_as, Some(65000));

    let disabled = find(&ps, "Global_10_231_9_9");
    assert_eq!((disabled.state.as_str(), disabled.info.as_str()), ("down", ""));
    assert_eq!(disabled.bgp.as_ref().unwrap().state, "Down");
}

#[test]
fn passive_side_and_bad_peer_as() {
    let ps = parse_protocols(PROTOCOLS_ALL_B);
    let passive = find(&ps, "Node_10_231_2_1");
    assert_eq!((passive.state.as_str(), passive.info.as_str()), ("start", "Passive"));
    let bad = find(&ps, "Global_10_231_3_1");
    assert_eq!(
        (bad.state.as_str(), bad.info.as_str()),
        ("start", "Idle Received: Bad peer AS")
    );
    assert_eq!(
        bad.bgp.as_ref().unwrap().last_error.as_deref(),
        Some("Received: Bad peer AS")
    );
    let mesh = find(&ps, "Mesh_10_231_0_1");
    assert_eq!(mesh.routes().imported, 4);
}

#[test]
fn plain_show_protocols_has_summaries_only() {
    let ps = parse_protocols(PROTOCOLS_A);
    assert_eq!(ps.len(), 13);
    assert!(ps.iter().all(|p| p.bgp.is_none() && p.channels.is_empty()));
    assert_eq!(find(&ps, "static_blocks").table, "master4");
    let full = parse_protocols(PROTOCOLS_ALL_A);
    for (a, b) in ps.iter().zip(&full) {
        assert_eq!(
            (&a.name, &a.state, &a.since, &a.info),
            (&b.name, &b.state, &b.since, &b.info)
        );
    }
}

#[test]
fn since_with_a_space_and_garbage_lines() {
    let text = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n\
        bgp1       BGP        ---        up     2024-01-02 03:04:05  Established   \n\
        nonsense\n  BGP state:          Established\n    Neighbor AS:      not-a-number\n";
    let ps = parse_protocols(text);
    assert_eq!(ps.len(), 1);
    assert_eq!(
        (ps[0].since.as_str(), ps[0].info.as_str()),
        ("2024-01-02 03:04:05", "Established")
    );
    assert_eq!(ps[0].bgp.as_ref().unwrap().neighbor_as, None);
    assert_eq!(parse_protocols(""), []);
    assert_eq!(
        parse_route_stats("1 imported, 2 filtered, 3 exported, 4 preferred").filtered,
        2
    );
}

#[test]
fn calico_view_of_the_sessions() {
    let rows = peer_rows(&parse_protocols(PROTOCOLS_ALL_A));
    let view: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.peer_address.as_str(),
                r.peer_type.as_str(),
                r.state.as_str(),
                r.info.as_str(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("10.231.0.2", "node-to-node mesh", "up", "Established"),
            ("fd00:231::2", "node-to-node mesh", "up", "Established"),
            ("10.231.1.2", "global", "up", "Established"),
            (
                "10.231.0.99",
                "node specific",
                "start",
                "Active Socket: No route to host"
            ),
            ("10.231.2.2", "node specific", "start", "Connect"),
            (
                "10.231.3.2",
                "global",
                "start",
                "Active Socket: Connection reset by peer"
            ),
            ("10.231.9.9", "global", "down", ""),
        ]
    );
    assert_eq!(rows[0].since, "12:57:49.788");
    assert_eq!(
        (rows[0].routes_imported, rows[0].routes_exported, rows[0].ipv6),
        (2, 4, false)
    );
    assert!(rows[1].ipv6);
    // Without `all` the address comes from the name.
    let short = peer_rows(&parse_protocols(PROTOCOLS_A));
    let addrs: Vec<&str> = short.iter().map(|r| r.peer_address.as_str()).collect();
    assert_eq!(addrs[..3], ["10.231.0.2", "fd00:231::2", "10.231.1.2"]);
    assert_eq!(address_from_name("10_0_0_1_port_1790"), "10.0.0.1");
    assert_eq!(address_from_name("fd00__1"), "fd00::1");
}

#[test]
fn routes_with_ecmp_blackholes_and_alternatives() {
    let rs = parse_routes(ROUTE_A);
    assert_eq!(rs.len(), 14);
    let ecmp = rs.iter().find(|r| r.prefix == "10.96.0.0/12").unwrap();
    assert_eq!(
        (ecmp.kind.as_str(), ecmp.protocol.as_str(), ecmp.table.as_str()),
        ("unicast", "static_blocks", "master4")
    );
    assert_eq!(
        (ecmp.primary, ecmp.preference, ecmp.since.as_str()),
        (true, Some(200), "12:57:47.849")
    );
    let gws: Vec<(Option<&str>, Option<&str>, Option<u32>)> = ecmp
        .next_hops
        .iter()
        .map(|n| (n.gateway.as_deref(), n.interface.as_deref(), n.weight))
        .collect();
    assert_eq!(
        gws,
        [
            (Some("10.231.0.2"), Some("fxa"), Some(1)),
            (Some("10.231.1.2"), Some("fxa"), Some(1))
        ]
    );

    let bh = rs.iter().find(|r| r.prefix == "10.244.0.0/26").unwrap();
    assert_eq!(
        (bh.kind.as_str(), bh.next_hops.len(), bh.bgp.as_deref()),
        ("blackhole", 0, None)
    );
    assert_eq!(
        rs.iter().find(|r| r.prefix == "192.168.50.0/24").unwrap().kind,
        "unreachable"
    );

    // One network, two routes: the iBGP one is preferred, the eBGP one is the alternative.
    let two: Vec<&Route> = rs.iter().filter(|r| r.prefix == "10.244.1.0/26").collect();
    assert_eq!(two.len(), 2);
    assert_eq!(
        (two[0].protocol.as_str(), two[0].primary, two[0].bgp.as_deref()),
        ("Mesh_10_231_0_2", true, Some("i"))
    );
    assert_eq!((two[1].protocol.as_str(), two[1].primary), ("Global_10_231_1_2", false));
    assert_eq!(two[1].bgp.as_deref(), Some("AS1111111i"));
    assert_eq!(two[1].next_hops[0].gateway.as_deref(), Some("10.231.1.2"));

    let direct = rs.iter().find(|r| r.prefix == "10.231.0.0/24").unwrap();
    assert_eq!(
        (
            direct.next_hops[0].gateway.as_deref(),
            direct.next_hops[0].interface.as_deref()
        ),
        (None, Some("fxa"))
    );
    let v6: Vec<&str> = rs
        .iter()
        .filter(|r| r.table == "master6")
        .map(|r| r.prefix.as_str())
        .collect();
    assert_eq!(v6, ["fd00:231::/64", "fd00:244::/80"]);
}

#[test]
fn routes_learned_from_peers() {
    let rs = parse_routes(ROUTE_B);
    let v6 = rs.iter().find(|r| r.prefix == "fd00:244::/80").unwrap();
    assert_eq!(
        (v6.protocol.as_str(), v6.kind.as_str()),
        ("Mesh_fd00_231__1", "unicast")
    );
    assert_eq!(v6.next_hops[0].gateway.as_deref(), Some("fd00:231::1"));
    let by_proto = parse_routes(ROUTE_PROTOCOL_B);
    assert_eq!(by_proto.len(), 4);
    assert!(by_proto
        .iter()
        .all(|r| r.protocol == "Mesh_10_231_0_1" && r.primary && r.attributes.is_empty()));
}

#[test]
fn route_all_attributes() {
    let rs = parse_routes(ROUTE_ALL_B);
    assert_eq!(rs.len(), parse_routes(ROUTE_B).len());
    let ebgp = rs
        .iter()
        .find(|r| r.prefix == "10.244.0.0/26" && r.protocol == "Global_10_231_1_1")
        .unwrap();
    let attr = |k: &str| {
        ebgp.attributes
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(attr("Type"), Some("BGP univ"));
    assert_eq!(attr("BGP.as_path"), Some("64512"));
    assert_eq!(attr("BGP.next_hop"), Some("10.231.1.1"));
    assert_eq!(ebgp.next_hops.len(), 1);
    let ibgp = rs
        .iter()
        .find(|r| r.prefix == "10.244.0.0/26" && r.protocol == "Mesh_10_231_0_1")
        .unwrap();
    assert_eq!(
        ibgp.attributes
            .iter()
            .find(|(k, _)| k == "BGP.as_path")
            .map(|(_, v)| v.as_str()),
        Some("")
    );
    let line = "10.1.0.0/16  unicast [bgp1 2024-01-02 10:00:00 from 10.0.0.9] * (100/20) [AS65000?]";
    let r = parse_routes(line).pop().unwrap();
    assert_eq!(
        (r.since.as_str(), r.from.as_deref(), r.preference),
        ("2024-01-02 10:00:00", Some("10.0.0.9"), Some(100))
    );
}

#[test]
fn route_count() {
    let c = parse_route_count(ROUTE_COUNT_A);
    let tables: Vec<(&str, u64, u64, u64)> = c
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.routes, t.total_routes, t.networks))
        .collect();
    assert_eq!(tables, [("master4", 12, 12, 10), ("master6", 2, 2, 2)]);
    assert_eq!(
        c.total,
        Some(TableCount {
            table: String::new(),
            routes: 14,
            total_routes: 14,
            networks: 12
        })
    );
    let one = parse_route_count("4 of 12 routes for 4 networks in table master4\n");
    assert_eq!((one.tables[0].routes, one.total), (4, None));
    assert_eq!(
        parse_route_count("garbage\n1 of x routes for 1 networks in table t"),
        RouteCount::default()
    );
}

#[test]
fn md5_counters_and_hint() {
    let netstat = "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure\n\
                   TcpExt: 0 2 0 7\n\
                   IpExt: InNoRoutes\n\
                   IpExt: 0\n";
    let c = parse_md5_counters(netstat);
    assert_eq!(
        c,
        Md5Counters {
            failure: 7,
            not_found: 2,
            unexpected: 0
        }
    );
    assert_eq!(parse_md5_counters(""), Md5Counters::default());
    let mut row = PeerRow {
        state: "start".into(),
        info: "Connect".into(),
        ..PeerRow::default()
    };
    let hint = md5_hint(&row, c).unwrap();
    assert!(
        hint.contains("passwords likely differ") && hint.contains("TCPMD5Failure 7"),
        "{hint}"
    );
    assert!(md5_hint(&row, Md5Counters::default())
        .unwrap()
        .contains("no signature failures"));
    row.state = "up".into();
    assert_eq!(md5_hint(&row, c), None);
}
