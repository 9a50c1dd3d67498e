//! `Node`: a node's labels (for pool and peer selectors) and, raw for now, its spec (Calico's
//! `spec.bgp` is parsed by the BGP code). Core `v1` Nodes are accepted as well as Calico's.

use std::collections::BTreeMap;

use serde_json::Value;

use super::meta::{FieldError, Obj, ObjectMeta};

/// A node as the resources describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeResource {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec` as written (`Value::Null` when absent), e.g. `{"bgp": {"ipv4Address": ...}}`.
    pub spec: Value,
    pub api_version: String,
    pub source: String,
}

pub(crate) fn parse(
    api_version: &str,
    meta: ObjectMeta,
    top: &Obj<'_>,
    source: &str,
) -> Result<NodeResource, FieldError> {
    // Only the shape is checked here; the BGP code owns the meaning of the fields.
    top.obj("spec")?;
    Ok(NodeResource {
        name: meta.name,
        labels: meta.labels,
        annotations: meta.annotations,
        spec: top.get("spec").cloned().unwrap_or(Value::Null),
        api_version: api_version.to_string(),
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(doc: Value) -> Result<NodeResource, FieldError> {
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false)?;
        parse("projectcalico.org/v3", meta, &top, "nodes.yaml")
    }

    #[test]
    fn keeps_labels_and_raw_spec() {
        let n = node(json!({
            "metadata": {"name": "node1", "labels": {"rack": "r1"}},
            "spec": {"bgp": {"ipv4Address": "192.168.1.1/24", "asNumber": 1111111}}
        }))
        .unwrap();
        assert_eq!(n.labels["rack"], "r1");
        assert_eq!(n.spec["bgp"]["asNumber"], 1111111);
        let bare = node(json!({"metadata": {"name": "node2"}})).unwrap();
        assert_eq!(bare.spec, Value::Null);
    }

    #[test]
    fn spec_must_be_a_mapping_and_labels_strings() {
        let err = node(json!({"metadata": {"name": "n"}, "spec": [1]})).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("spec", "expected a mapping")
        );
        let err = node(json!({"metadata": {"name": "n", "labels": {"rack": 1}}})).unwrap_err();
        assert_eq!(err.field, "metadata.labels.rack");
    }
}
