//! The `lanes.dev/v1` custom resources, as Rust types from which `crdgen` generates the CRDs in
//! `examples/kubernetes/crds/` (CI checks the committed files equal the generated ones).
//!
//! Two families:
//! - **Resources people write** (`IPPool`, `IPAMConfig`, `BGPConfiguration`, `BGPPeer`): their spec
//!   types list Calico's field names so the API server keeps (does not prune) every field the
//!   `resources` parser understands. lanesd reads them as untyped objects and hands them to that
//!   parser, so validation and its error messages are the same as with the file datastore; the
//!   schema here only shapes what the API server accepts.
//! - **IPAM and node state lanesd writes** (`IPAMBlock`, `NodeState`, `SecondaryAttachment`): the
//!   spec *is* the record the file datastore stores (`ipam::Block`, `bgp::registry::NodeRecord`,
//!   `workload::secondary::SecondaryRecord`), so the schema cannot drift from the data.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bgp::registry::NodeRecord;
use crate::ipam::block::Block;
use crate::workload::secondary::SecondaryRecord;

pub const GROUP: &str = "lanes.dev";

/// `{cidr: ...}` entries (serviceClusterIPs, serviceExternalIPs, serviceLoadBalancerIPs).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct CidrEntry {
    pub cidr: String,
}

/// Calico's `ipip` of crd.projectcalico.org/v1 IPPools, kept for pasted objects.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct IpipSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// An IP pool, cut into node-affine blocks (Calico's IPPool plus `bgpExport`).
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "IPPool",
    root = "IpPoolObject",
    plural = "ippools"
)]
#[kube(shortname = "lpool", category = "lanes")]
#[kube(printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#)]
#[serde(rename_all = "camelCase")]
// The API server refuses changes to cidr and blockSize (CEL transition rules), as the file
// datastore does: the pool's blocks were cut with them.
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.cidr == oldSelf.cidr",
        "message": "spec.cidr is immutable: delete the IPPool, then create the new one"
    },
    {
        "rule": "has(self.blockSize) == has(oldSelf.blockSize) && (!has(self.blockSize) || self.blockSize == oldSelf.blockSize)",
        "message": "spec.blockSize is immutable: delete the IPPool, then create the new one"
    }
]))]
pub struct IPPoolSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, rename = "disableBGPExport", skip_serializing_if = "Option::is_none")]
    pub disable_bgp_export: Option<bool>,
    /// Calico selector over node labels; `all()` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_uses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<String>,
    /// `aggregate` (default), `aggregate+pods` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp_export: Option<String>,
}

/// Cluster-wide IPAM settings; the object named `default` counts.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "IPAMConfig",
    root = "IpamConfigObject",
    plural = "ipamconfigs"
)]
#[kube(category = "lanes")]
#[serde(rename_all = "camelCase")]
pub struct IPAMConfigSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_affinity: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
}

/// A BGP community by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Community {
    pub name: String,
    pub value: String,
}

/// Communities to attach to the routes of one CIDR.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PrefixAdvertisement {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A secret reference for a BGP password (Calico's form).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A BGP password: Calico's `secretKeyRef`, or lanes' `file` / `value`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Password {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Global (`default`) or per-node (`node.<name>`) BGP settings (Calico's BGPConfiguration).
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "BGPConfiguration",
    root = "BgpConfigurationObject",
    plural = "bgpconfigurations"
)]
#[kube(category = "lanes")]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    #[serde(default, rename = "serviceClusterIPs", skip_serializing_if = "Option::is_none")]
    pub service_cluster_ips: Option<Vec<CidrEntry>>,
    #[serde(default, rename = "serviceExternalIPs", skip_serializing_if = "Option::is_none")]
    pub service_external_ips: Option<Vec<CidrEntry>>,
    #[serde(default, rename = "serviceLoadBalancerIPs", skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_ips: Option<Vec<CidrEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<Vec<Community>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_advertisements: Option<Vec<PrefixAdvertisement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<Password>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_interfaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<String>,
}

/// A BGP peering (Calico's BGPPeer).
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "BGPPeer",
    root = "BgpPeerObject",
    plural = "bgppeers"
)]
#[kube(category = "lanes")]
#[kube(printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.peerIP"}"#)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// `ip` or `ip:port` (`[v6]:port`).
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    #[serde(default, rename = "localASNumber", skip_serializing_if = "Option::is_none")]
    pub local_as_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<String>,
}

/// An IPAM block: affinity, state and allocations (each allocation names its handle).
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "IPAMBlock",
    root = "IpamBlockObject",
    plural = "ipamblocks"
)]
#[kube(category = "lanes")]
#[kube(printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#)]
#[kube(printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.affinity"}"#)]
#[kube(printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#)]
pub struct IPAMBlockSpec {
    #[serde(flatten)]
    pub block: Block,
}

/// What a node's lanesd publishes about itself (address, AS, VXLAN endpoint).
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "NodeState",
    root = "NodeStateObject",
    plural = "nodestates"
)]
#[kube(category = "lanes")]
pub struct NodeStateSpec {
    #[serde(flatten)]
    pub record: NodeRecord,
}

/// One pod's attachment to a low-latency lane, kept so DEL and GC can undo it.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "lanes.dev",
    version = "v1",
    kind = "SecondaryAttachment",
    root = "SecondaryAttachmentObject",
    plural = "secondaryattachments"
)]
#[kube(category = "lanes")]
pub struct SecondaryAttachmentSpec {
    #[serde(flatten)]
    pub record: SecondaryRecord,
}

/// Multus' NetworkAttachmentDefinition (its CRD is Multus', not generated here).
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "k8s.cni.cncf.io",
    version = "v1",
    kind = "NetworkAttachmentDefinition",
    root = "NetworkAttachmentDefinition",
    plural = "network-attachment-definitions",
    namespaced
)]
pub struct NetworkAttachmentDefinitionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// Every CRD `crdgen` writes, with the file name it goes to.
pub fn generated() -> Vec<(
    String,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
)> {
    use kube::CustomResourceExt;
    let crds = [
        IpPoolObject::crd(),
        IpamConfigObject::crd(),
        BgpConfigurationObject::crd(),
        BgpPeerObject::crd(),
        IpamBlockObject::crd(),
        NodeStateObject::crd(),
        SecondaryAttachmentObject::crd(),
    ];
    crds.into_iter()
        .map(|crd| (format!("{GROUP}_{}.yaml", crd.spec.names.plural), crd))
        .collect()
}

/// One CRD as the YAML committed under `examples/kubernetes/crds/`.
pub fn to_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let body = serde_yaml_ng::to_string(crd).expect("a CRD always serialises");
    format!("# Generated by `cargo run -p lanes-manager --bin crdgen`; do not edit.\n{body}")
}

/// Unused-field guard for the state kinds: every key the record serialises must be in the
/// schema, else the API server would prune it and lanesd would lose state.
pub fn schema_keeps(schema: &serde_json::Value, value: &serde_json::Value) -> Result<(), String> {
    keeps(schema, value, "spec")
}

fn keeps(schema: &serde_json::Value, value: &serde_json::Value, path: &str) -> Result<(), String> {
    use serde_json::Value;
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                let sub = match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) => s,
                    (None, Some(s)) => s,
                    (None, None) => return Err(format!("{path}.{k}: not in the schema (would be pruned)")),
                };
                keeps(sub, v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        Value::Array(items) => match schema.get("items") {
            Some(s) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| keeps(s, v, &format!("{path}[{i}]"))),
            None => Err(format!("{path}: array without items schema")),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ippool_cidr_and_block_size_are_immutable_in_the_api_server() {
        let (_, crd) = generated()
            .into_iter()
            .find(|(file, _)| file == "lanes.dev_ippools.yaml")
            .expect("the IPPool CRD");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let rules: Vec<String> = schema["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
            .as_array()
            .expect("transition rules on spec")
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect();
        assert!(rules.iter().any(|r| r == "self.cidr == oldSelf.cidr"), "{rules:?}");
        assert!(
            rules.iter().any(|r| r.contains("self.blockSize == oldSelf.blockSize")),
            "{rules:?}"
        );
    }
}
