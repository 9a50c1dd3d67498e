//! Resource documents: the Kubernetes-style YAML that configures the primary network, parsed,
//! validated and defaulted into a [`Resources`] snapshot.
//!
//! # Layout
//! - [`meta`]: object metadata, [`Rejection`], and the field readers every kind uses.
//! - [`document`]: one YAML file to documents, each dispatched to its kind ([`parse_documents`]).
//! - [`ippool`], [`ipamconfig`], [`node`], [`pod`]: one kind each, parse + validate + default.
//! - [`selector`]: Calico label selectors (`rack == 'r1' && has(tor)`).
//! - [`loader`]: reading a store directory and keeping the last good state across reloads.
//!
//! This module holds the snapshot type and the [`Resource`] enum over the kinds. Parsing is
//! pure: only [`loader::load_dir`] touches the filesystem.
//!
//! Calico's documents (`projectcalico.org/v3`, `crd.projectcalico.org/v1`) are read with
//! Calico's field names and defaults, so a user can paste them unchanged.

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

pub use document::{parse_documents, parse_file, ParsedDocument};
pub use ipamconfig::IpamConfig;
pub use ippool::{AllowedUse, AssignmentMode, BgpExport, EncapMode, IpPool};
pub use loader::{load_dir, LoadedFile, LoadedFiles, Loader, ReloadOutcome};
pub use meta::{ObjectMeta, RawResource, Rejection};
pub use node::NodeResource;
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
    /// BGPConfiguration, BGPPeer, NetworkAttachmentDefinition: kept raw for their owners.
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
    /// BGPConfiguration, BGPPeer and NetworkAttachmentDefinition documents, in key order when
    /// built by the loader.
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

    /// The raw resources of one kind, e.g. `"BGPPeer"`.
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
                    metadata: {name: default}\nspec: {asNumber: 1111111}\n";
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
        assert_eq!(all.others_of_kind("BGPConfiguration").count(), 1);
        assert_eq!(all.ipam_config, IpamConfig::default());
    }
}
