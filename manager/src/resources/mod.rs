//! Resource documents: the Kubernetes-style YAML that configures the primary network, parsed,
//! validated and defaulted into a [`Resources`] snapshot.
//!
//! # Layout
//! - [`meta`]: object metadata, [`Rejection`], and the field readers every kind uses.
//! - [`document`]: one YAML file to documents, each dispatched to its kind ([`parse_documents`]).
//! - [`ippool`], [`ipamconfig`], [`node`], [`pod`], [`bgpconfig`], [`bgppeer`]: one kind each,
//!   parse + validate + default; [`bgpfields`]: the field types the BGP kinds share.
//! - [`selector`]: Calico label selectors (`rack == 'r1' && has(tor)`).
//! - [`loader`]: reading a store directory and keeping the last good state across reloads.
//!
//! This module holds the snapshot type and the [`Resource`] enum over the kinds. Parsing is
//! pure: only [`loader::load_dir`] touches the filesystem.
//!
//! Calico's documents (`projectcalico.org/v3`, `crd.projectcalico.org/v1`) are read with
//! Calico's field names and defaults, so a user can paste them unchanged.

pub mod bgpconfig;
pub mod bgpfields;
pub mod bgppeer;
pub mod document;
pub mod ipamconfig;
pub mod ippool;
pub mod loader;
pub mod meta;
pub mod node;
pub mod pod;
pub mod selector;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub use bgpconfig::{BgpConfiguration, BgpSettings, BindMode, LogSeverity};
pub use bgpfields::{CommunityValue, PasswordSource};
pub use bgppeer::{BgpPeer, NextHopMode, NodeScope, PeerAddress, PeerTarget, ReversePeering, SourceAddress};
pub use document::{parse_documents, parse_file, parse_object, ParsedDocument};
pub use ipamconfig::IpamConfig;
pub use ippool::{AllowedUse, AssignmentMode, BgpExport, EncapMode, IpPool};
pub use loader::{load_dir, LoadedFile, LoadedFiles, Loader, PoolPin, ReloadOutcome};
pub use meta::{ObjectMeta, RawResource, Rejection};
pub use node::{NodeBgp, NodeResource};
pub use pod::PodResource;

/// Our own API group.
pub const API_LANES: &str = "lanes.dev/v1";
/// Calico's public API (calicoctl, the Calico API server).
pub const API_CALICO_V3: &str = "projectcalico.org/v3";
/// Calico's CRDs as stored in Kubernetes.
pub const API_CALICO_CRD: &str = "crd.projectcalico.org/v1";
/// Multus' NetworkAttachmentDefinition.
pub const API_NAD: &str = "k8s.cni.cncf.io/v1";
/// Kubernetes core (Node, Pod).
pub const API_CORE: &str = "v1";

/// One accepted document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    IpPool(IpPool),
    IpamConfig(IpamConfig),
    Node(NodeResource),
    Pod(PodResource),
    BgpConfiguration(BgpConfiguration),
    BgpPeer(BgpPeer),
    /// NetworkAttachmentDefinition: kept raw for its owner.
    Other(RawResource),
}

/// What identifies a resource: kind (canonical, so `IPAMConfiguration` files as `IPAMConfig`),
/// namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl Resource {
    pub fn key(&self) -> ResourceKey {
        let (kind, namespace, name) = match self {
            Resource::IpPool(p) => ("IPPool", "", p.name.as_str()),
            Resource::IpamConfig(_) => ("IPAMConfig", "", ipamconfig::IPAM_CONFIG_NAME),
            Resource::Node(n) => ("Node", "", n.name.as_str()),
            Resource::Pod(p) => ("Pod", p.namespace.as_str(), p.name.as_str()),
            Resource::BgpConfiguration(c) => ("BGPConfiguration", "", c.name.as_str()),
            Resource::BgpPeer(p) => ("BGPPeer", "", p.name.as_str()),
            Resource::Other(r) => (
                r.kind.as_str(),
                r.metadata.namespace.as_deref().unwrap_or(""),
                r.metadata.name.as_str(),
            ),
        };
        ResourceKey {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// A consistent view of every accepted resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub pools: BTreeMap<String, IpPool>,
    /// Defaults when no IPAMConfig document exists.
    pub ipam_config: IpamConfig,
    pub nodes: BTreeMap<String, NodeResource>,
    /// Keyed by (namespace, name).
    pub pods: BTreeMap<(String, String), PodResource>,
    /// By name: `default` and `node.<nodename>`.
    pub bgp_configurations: BTreeMap<String, BgpConfiguration>,
    pub bgp_peers: BTreeMap<String, BgpPeer>,
    /// NetworkAttachmentDefinition documents, in key order when built by the loader.
    pub others: Vec<RawResource>,
}

impl Resources {
    /// The pool whose CIDR holds `ip`, disabled or not (pools never overlap).
    pub fn pool_for(&self, ip: IpAddr) -> Option<&IpPool> {
        self.pools.values().find(|p| p.contains(ip))
    }

    /// A node's labels; empty when there is no Node document for it.
    pub fn node_labels(&self, node: &str) -> BTreeMap<String, String> {
        self.nodes.get(node).map(|n| n.labels.clone()).unwrap_or_default()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodResource> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }

    /// The BGP settings in effect on `node`: its `node.<node>` BGPConfiguration over `default`,
    /// over Calico's defaults.
    pub fn bgp_settings(&self, node: &str) -> BgpSettings {
        let global = self.bgp_configurations.get(bgpconfig::GLOBAL_CONFIG_NAME);
        let own = self
            .bgp_configurations
            .get(&format!("{}{node}", bgpconfig::NODE_CONFIG_PREFIX));
        BgpSettings::resolve(global, own)
    }

    /// The raw resources of one kind, e.g. `"NetworkAttachmentDefinition"`.
    pub fn others_of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a RawResource> {
        self.others.iter().filter(move |r| r.kind == kind)
    }

    /// Adds a resource, replacing one with the same key. No cross-document checks: those are
    /// the [`Loader`]'s.
    pub fn insert(&mut self, resource: Resource) {
        match resource {
            Resource::IpPool(p) => {
                self.pools.insert(p.name.clone(), p);
            }
            Resource::IpamConfig(c) => self.ipam_config = c,
            Resource::Node(n) => {
                self.nodes.insert(n.name.clone(), n);
            }
            Resource::Pod(p) => {
                self.pods.insert((p.namespace.clone(), p.name.clone()), p);
            }
            Resource::BgpConfiguration(c) => {
                self.bgp_configurations.insert(c.name.clone(), c);
            }
            Resource::BgpPeer(p) => {
                self.bgp_peers.insert(p.name.clone(), p);
            }
            Resource::Other(r) => {
                let (kind, meta) = (&r.kind, &r.metadata);
                self.others.retain(|o| {
                    !(&o.kind == kind && o.metadata.namespace == meta.namespace && o.metadata.name == meta.name)
                });
                self.others.push(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_lookups() {
        let text = "apiVersion: lanes.dev/v1\nkind: IPPool\nmetadata: {name: v4}\n\
                    spec: {cidr: 10.244.0.0/16}\n---\n\
                    apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {rack: r1}}\n---\n\
                    apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\n---\n\
                    apiVersion: crd.projectcalico.org/v1\nkind: BGPConfiguration\n\
                    metadata: {name: default}\nspec: {asNumber: 1111111}\n---\n\
                    apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
                    metadata: {name: fast}\nspec: {config: '{}'}\n";
        let (resources, rejections) = parse_documents("all.yaml", text);
        assert!(rejections.is_empty(), "{rejections:?}");
        let mut all = Resources::default();
        for r in resources {
            all.insert(r);
        }
        assert_eq!(all.pool_for("10.244.3.4".parse().unwrap()).unwrap().name, "v4");
        assert!(all.pool_for("10.245.0.1".parse().unwrap()).is_none());
        assert_eq!(all.node_labels("n1")["rack"], "r1");
        assert!(all.node_labels("n2").is_empty());
        assert!(all.pod("ns", "p").is_some() && all.pod("default", "p").is_none());
        assert_eq!(all.bgp_settings("n1").as_number, 1111111);
        assert_eq!(all.others_of_kind("NetworkAttachmentDefinition").count(), 1);
        assert_eq!(all.ipam_config, IpamConfig::default());
    }

    /// The seeds' BGP documents, pasted unchanged.
    const SEED_BGP: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: false, asNumber: 63400}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 1111111, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rack1-tor}
spec: {peerIP: 192.168.0.1, asNumber: 63400, nodeSelector: \"rack == 'rack-1'\"}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: \"route-reflector == 'true'\"}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rr-group-peer}
spec: {peerIP: 192.168.1.1, asNumber: 1111111, nodeSelector: \"rr-group == 'rr1'\"}
";

    #[test]
    fn seed_bgp_documents_load_unchanged() {
        let docs = parse_file("seed.yaml", SEED_BGP).unwrap();
        assert_eq!(docs.len(), 5);
        let mut seen = Vec::new();
        for doc in docs {
            let key = doc.key.clone().unwrap();
            match doc.result.unwrap_or_else(|r| panic!("{r}")) {
                Resource::BgpConfiguration(c) => {
                    assert_eq!((c.node_to_node_mesh_enabled, c.node.as_deref()), (Some(false), None));
                    seen.push(format!("{key} AS{}", c.as_number.unwrap()));
                }
                Resource::BgpPeer(p) => seen.push(format!("{key} {:?}", p.peer_address().map(|a| a.to_string()))),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                "BGPConfiguration default AS63400",
                "BGPConfiguration default AS1111111",
                "BGPPeer rack1-tor Some(\"192.168.0.1\")",
                "BGPPeer peer-with-route-reflectors None",
                "BGPPeer rr-group-peer Some(\"192.168.1.1\")",
            ]
        );
    }

    #[test]
    fn bgp_kinds_in_every_api_version() {
        for api in [API_LANES, API_CALICO_V3, API_CALICO_CRD] {
            let text = format!(
                "apiVersion: {api}\nkind: BGPPeer\nmetadata: {{name: tor}}\n\
                 spec: {{peerIP: '10.0.0.1:1790', asNumber: '1.10', node: node1}}\n---\n\
                 apiVersion: {api}\nkind: BGPConfiguration\nmetadata: {{name: node.node1}}\n\
                 spec: {{listenPort: 1790}}\n"
            );
            let (resources, rejections) = parse_documents("b.yaml", &text);
            assert!(rejections.is_empty(), "{api}: {rejections:?}");
            assert_eq!(resources[0].key().to_string(), "BGPPeer tor");
            assert_eq!(resources[1].key().to_string(), "BGPConfiguration node.node1");
        }
    }

    #[test]
    fn bad_bgp_documents_name_the_field() {
        let cases = [
            (
                "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 0}",
                "spec.asNumber",
            ),
            (
                "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: tor1, asNumber: 1}",
                "spec.peerIP",
            ),
            (
                "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerSelector: \"a = 'b'\"}",
                "spec.peerSelector",
            ),
        ];
        for (body, field) in cases {
            let r = parse_file("b.yaml", &format!("apiVersion: projectcalico.org/v3\n{body}"))
                .unwrap()
                .remove(0)
                .result
                .unwrap_err();
            assert_eq!(r.field, field, "{r}");
            assert!(r.to_string().contains(field), "{r}");
        }
    }
}
