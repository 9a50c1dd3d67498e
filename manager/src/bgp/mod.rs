//! BGP, done by BIRD 2 and configured by lanesd, the way calico-node's confd configures BIRD.
//!
//! # Layout
//! - [`model`]: [`Desired`], the BGP speaker this node should run (sessions, originated
//!   prefixes, kernel export policy), as plain data.
//! - [`desired`]: [`build`] computes it from the resources and this node's IPAM state, with
//!   Calico's semantics (mesh, route reflectors, BGPPeer selectors, export policy per pool).
//! - [`render`]: [`render`](render::render) writes it as a complete BIRD 2 config.
//!
//! All three are pure. The daemon's side: collect [`desired::password_sources`] and read those
//! Secrets/files, fill a [`desired::Input`], call [`build`], [`render`](render::render), write
//! the text to `<runDir>/bird.conf.new`, check it with `bird -p -c`, and only then rename it
//! over `bird.conf` and run `birdc configure`; on any error the running config stays.

pub mod desired;
pub mod model;
pub mod render;

pub use desired::{build, password_sources, BuildError, Input, NodeInfo};
pub use model::{Community, Desired, LogSeverity, NextHopMode, OriginKind, Origination, Peer, PeerKind};
pub use render::render;

#[cfg(test)]
pub(crate) mod testutil {
    use std::process::Command;

    use super::Desired;
    use crate::resources::{parse_documents, Resources};

    /// One line per session: name, endpoint, AS, and the flags that matter.
    pub(crate) fn sessions(d: &Desired) -> Vec<String> {
        let flag = |on: bool, text: &str| if on { format!(" {text}") } else { String::new() };
        let line = |p: &super::Peer| {
            let local = flag(p.local_as != d.local_as, &format!("local{}", p.local_as));
            let (passive, rr) = (flag(p.passive, "passive"), flag(p.rr_client, "rr-client"));
            let endpoint = std::net::SocketAddr::new(p.address, p.port);
            format!("{} {endpoint} as{}{local}{passive}{rr}", p.name, p.remote_as)
        };
        d.peers.iter().map(line).collect()
    }

    /// Resources from YAML documents, which must all be accepted.
    pub(crate) fn resources(yaml: &str) -> Resources {
        let (docs, rejections) = parse_documents("test.yaml", yaml);
        assert!(rejections.is_empty(), "{rejections:#?}");
        let mut all = Resources::default();
        for doc in docs {
            all.insert(doc);
        }
        all
    }

    /// A Calico Node document with `spec.bgp.ipv4Address: <ip>/24` and the labels given as
    /// YAML flow-mapping entries (`rack: r1, tor: 'true'`), then a document separator.
    pub(crate) fn node(name: &str, ip: &str, labels: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n\
             spec: {{bgp: {{ipv4Address: {ip}/24}}}}\n---\n"
        )
    }

    /// `bird -p -c` on `config`. Skips (with a message) when `bird` is not installed, unless
    /// `CI=true`, where a missing `bird` fails.
    pub(crate) fn assert_bird_parses(name: &str, config: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(format!("{name}.conf"));
        std::fs::write(&path, config).expect("write config");
        match Command::new("bird").arg("-p").arg("-c").arg(&path).output() {
            Ok(out) => assert!(
                out.status.success(),
                "bird -p rejected {name}:\n{}\n--- config ---\n{config}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true but bird cannot run: {e}"),
            Err(e) => eprintln!("skipping the bird -p check of {name}: bird is not installed ({e})"),
        }
    }
}

/// The seeds' topologies end to end: resources, [`build`], [`render`](render::render), `bird -p`.
#[cfg(test)]
mod scenarios {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::testutil::{assert_bird_parses, node, resources, sessions};
    use super::*;
    use crate::resources::{IpPool, NodeBgp, NodeResource, Resources};

    fn build_for(res: &Resources, name: &str) -> Desired {
        build(&Input::new(res, name)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lines from the one starting with `start` to the next `}` at column 0.
    fn section<'a>(text: &'a str, start: &str) -> &'a str {
        let from = text
            .find(&format!("\n{start}"))
            .unwrap_or_else(|| panic!("no {start} in\n{text}"))
            + 1;
        &text[from..from + text[from..].find("\n}\n").expect("closing brace") + 3]
    }

    const SEED_RR: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 1111111, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: \"route-reflector == 'true'\"}
---
";

    #[test]
    fn route_reflector_with_two_clients_and_a_4_octet_as() {
        let rr = |name: &str, ip: &str| {
            let doc = node(name, ip, "route-reflector: 'true'");
            doc.replace("/24}", "/24, routeReflectorClusterID: 224.0.0.1}")
        };
        let yaml = SEED_RR.to_string()
            + &rr("rr1", "192.168.0.2")
            + &rr("rr2", "192.168.0.3")
            + &node("node1", "192.168.0.11", "")
            + &node("node2", "192.168.0.12", "");
        let res = resources(&yaml);
        let d = build_for(&res, "rr1");
        assert_eq!(
            (d.rr_cluster_id, d.local_as),
            (Some("224.0.0.1".parse().unwrap()), 1111111)
        );
        let expected = [
            "Node_192_168_0_11 192.168.0.11:179 as1111111 rr-client",
            "Node_192_168_0_12 192.168.0.12:179 as1111111 rr-client",
            "Node_192_168_0_3 192.168.0.3:179 as1111111 passive",
        ];
        assert_eq!(sessions(&d), expected);
        let text = render(&d);
        assert_bird_parses("rr1", &text);
        assert!(text.contains("template bgp lanes_peer {\n  local port 179 as 1111111;\n"));
        let reflect =
            "  # Route reflector: reflect what clients and peers announce.\n  if source = RTS_BGP then accept;\n";
        assert!(section(&text, "filter lanes_to_bgp").contains(reflect));
        assert_eq!(
            &text[text.find("# ------------- Node-specific").unwrap()..],
            "# ------------- Node-specific peers -------------
protocol bgp Node_192_168_0_11 from lanes_peer {
  neighbor 192.168.0.11 port 179 as 1111111;
  source address 192.168.0.2;
  multihop;
  rr client;
  rr cluster id 224.0.0.1;
}

protocol bgp Node_192_168_0_12 from lanes_peer {
  neighbor 192.168.0.12 port 179 as 1111111;
  source address 192.168.0.2;
  multihop;
  rr client;
  rr cluster id 224.0.0.1;
}

protocol bgp Node_192_168_0_3 from lanes_peer {
  neighbor 192.168.0.3 port 179 as 1111111;
  source address 192.168.0.2;
  multihop;
  passive on; # the peer connects to us
}
"
        );
        let d = build_for(&res, "node1");
        let expected = [
            "Node_192_168_0_2 192.168.0.2:179 as1111111 passive",
            "Node_192_168_0_3 192.168.0.3:179 as1111111 passive",
        ];
        assert_eq!(sessions(&d), expected);
        let text = render(&d);
        assert_bird_parses("node1", &text);
        assert!(!text.contains("rr client") && !text.contains("RTS_BGP then accept"));
        // With the mesh on, clients mesh among themselves; reflectors stay out of it.
        let res = resources(&yaml.replace("nodeToNodeMeshEnabled: false", "nodeToNodeMeshEnabled: true"));
        let mesh = |d: &Desired| d.peers.iter().filter(|p| p.kind == PeerKind::Mesh).count();
        assert_eq!(mesh(&build_for(&res, "node1")), 1);
        let d = build_for(&res, "rr1");
        assert!(mesh(&d) == 0 && d.notes[0].contains("no part in the node-to-node mesh"));
    }

    const SEED_TOR: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: false, asNumber: 63400}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rack1-tor}
spec: {peerIP: 192.168.0.1, asNumber: 63400, nodeSelector: \"rack == 'rack-1'\"}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rr-group-peer}
spec: {peerIP: 192.168.1.1, asNumber: 1111111, nodeSelector: \"rr-group == 'rr1'\"}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: edge}
spec: {peerIP: '10.0.0.1:1790', asNumber: 65000, localASNumber: 4200000000}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: self}
spec: {peerIP: 192.168.0.12, asNumber: 63400, node: node2}
---
";

    #[test]
    fn global_and_node_specific_peers_from_the_seeds() {
        let yaml = SEED_TOR.to_string()
            + &node("node1", "192.168.0.11", "rack: rack-1, rr-group: rr1")
            + &node("node2", "192.168.0.12", "rack: rack-2");
        let res = resources(&yaml);
        let d = build_for(&res, "node1");
        let expected = [
            "Global_10_0_0_1_port_1790 10.0.0.1:1790 as65000 local4200000000",
            "Node_192_168_0_1 192.168.0.1:179 as63400",
            "Node_192_168_1_1 192.168.1.1:179 as1111111",
        ];
        assert_eq!(sessions(&d), expected);
        let kinds: Vec<PeerKind> = d.peers.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [PeerKind::Global, PeerKind::NodeSpecific, PeerKind::NodeSpecific]
        );
        let text = render(&d);
        assert_bird_parses("tor", &text);
        let (node_specific, global) = (
            text.find("# ------------- Node-specific").unwrap(),
            text.find("# ------------- Global").unwrap(),
        );
        assert!(node_specific < global && !text.contains("Node-to-node mesh"));
        assert_eq!(
            section(&text, "protocol bgp Node_192_168_1_1 "),
            "protocol bgp Node_192_168_1_1 from lanes_peer {\n  neighbor 192.168.1.1 port 179 as 1111111;\n  \
             source address 192.168.0.11;\n  multihop;\n}\n"
        );
        assert_eq!(
            section(&text, "protocol bgp Global_10_0_0_1_port_1790 "),
            "protocol bgp Global_10_0_0_1_port_1790 from lanes_peer {\n  neighbor 10.0.0.1 port 1790 as 65000;\n  \
             local as 4200000000;\n  source address 192.168.0.11;\n  multihop;\n}\n"
        );
        let d = build_for(&res, "node2");
        assert_eq!(
            sessions(&d),
            ["Global_10_0_0_1_port_1790 10.0.0.1:1790 as65000 local4200000000"]
        );
        assert_eq!(d.notes, ["BGPPeer self: skipping ourselves (192.168.0.12)"]);
        // A peer that duplicates a mesh session: the mesh wins.
        let yaml = yaml.replace("nodeToNodeMeshEnabled: false", "nodeToNodeMeshEnabled: true");
        let d = build_for(&resources(&yaml.replace("10.0.0.1:1790", "192.168.0.12")), "node1");
        assert!(d.peers.iter().any(|p| p.name == "Mesh_192_168_0_12"));
        assert!(!d.peers.iter().any(|p| p.kind == PeerKind::Global));
        let note = "BGPPeer edge: the session to 192.168.0.12 port 179 is already configured as Mesh_192_168_0_12";
        assert_eq!(d.notes, [note]);
    }

    #[test]
    fn a_thousand_peers_and_five_thousand_blocks() {
        let mut res = Resources::default();
        let pool = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8}\n";
        res.pools = resources(pool).pools.into_iter().collect::<BTreeMap<String, IpPool>>();
        for i in 0..=1000u32 {
            let address = std::net::Ipv4Addr::from(0xc0a8_0000 + i + 1);
            res.insert(crate::resources::Resource::Node(NodeResource {
                name: format!("node{i}"),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                bgp: Some(NodeBgp {
                    ipv4_address: Some(address.into()),
                    ..NodeBgp::default()
                }),
                spec: serde_json::Value::Null,
                api_version: "v1".into(),
                source: "generated".into(),
            }));
        }
        let mut input = Input::new(&res, "node0");
        input.blocks = (0..5000u32)
            .map(|i| {
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 6)), 26)
                    .unwrap()
                    .into()
            })
            .collect();
        let start = Instant::now();
        let d = build(&input).unwrap();
        let text = render(&d);
        let took = start.elapsed();
        assert!(took.as_millis() < 200, "build and render took {took:?}");
        assert_eq!((d.peers.len(), d.originate.len()), (1000, 5000));
        assert_eq!(text.matches("\nprotocol bgp ").count(), 1000);
        assert_eq!(text.matches("\n  route ").count(), 5000);
        assert_bird_parses("scale", &text);
    }
}
