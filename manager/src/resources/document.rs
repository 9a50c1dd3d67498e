//! From one YAML file to its documents, each checked against the kind table and handed to its
//! kind's parser. Pure: the caller reads the file.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::meta::{FieldError, Obj, ObjectMeta, RawResource, Rejection};
use super::{bgpconfig, bgppeer, ipamconfig, ippool, node, pod, Resource, ResourceKey};
use super::{API_CALICO_CRD, API_CALICO_V3, API_CORE, API_LANES, API_NAD};

const CALICO_FAMILY: &[&str] = &[API_LANES, API_CALICO_V3, API_CALICO_CRD];

/// A kind as written, the name it is filed under, who serves it, and whether it is namespaced.
struct KindInfo {
    written: &'static str,
    canonical: &'static str,
    api_versions: &'static [&'static str],
    namespaced: bool,
}

const KINDS: &[KindInfo] = &[
    kind("IPPool", "IPPool", CALICO_FAMILY, false),
    kind("IPAMConfig", "IPAMConfig", CALICO_FAMILY, false),
    // Calico's v3 API spells the kind out; its CRD does not. Same resource.
    kind("IPAMConfiguration", "IPAMConfig", CALICO_FAMILY, false),
    kind(
        "Node",
        "Node",
        &[API_LANES, API_CALICO_V3, API_CALICO_CRD, API_CORE],
        false,
    ),
    kind("Pod", "Pod", &[API_CORE, API_LANES], true),
    kind("BGPConfiguration", "BGPConfiguration", CALICO_FAMILY, false),
    kind("BGPPeer", "BGPPeer", CALICO_FAMILY, false),
    kind(
        "NetworkAttachmentDefinition",
        "NetworkAttachmentDefinition",
        &[API_NAD],
        true,
    ),
];

const fn kind(
    written: &'static str,
    canonical: &'static str,
    api_versions: &'static [&'static str],
    namespaced: bool,
) -> KindInfo {
    KindInfo {
        written,
        canonical,
        api_versions,
        namespaced,
    }
}

/// One document of a file, accepted or not. `key` is known whenever the kind and name could be
/// read, even if the document was rejected: the loader uses it to keep the previous version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedDocument {
    /// 1-based position in the file.
    pub index: usize,
    pub key: Option<ResourceKey>,
    pub result: Result<Resource, Rejection>,
}

/// Parses and validates each document of one file on its own. Cross-document rules
/// (duplicates, overlapping pools, immutable fields) are the [`Loader`](super::Loader)'s.
/// Invalid YAML anywhere rejects the whole file: a single rejection and no resources.
pub fn parse_documents(source: &str, text: &str) -> (Vec<Resource>, Vec<Rejection>) {
    match parse_file(source, text) {
        Err(rejection) => (Vec::new(), vec![rejection]),
        Ok(documents) => {
            let mut resources = Vec::new();
            let mut rejections = Vec::new();
            for doc in documents {
                match doc.result {
                    Ok(r) => resources.push(r),
                    Err(r) => rejections.push(r),
                }
            }
            (resources, rejections)
        }
    }
}

/// Like [`parse_documents`], keeping each document's position and key; `Err` when the file is
/// not valid YAML. Empty documents (a trailing `---`) are skipped but still counted.
// A Rejection is a plain report made at most once per file and reload: boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub fn parse_file(source: &str, text: &str) -> Result<Vec<ParsedDocument>, Rejection> {
    let mut documents = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        // Stop at the first error: after a syntax error the iterator may not end.
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|e| {
            FieldError::new("", "", format!("invalid YAML (whole file ignored): {e}")).reject(source, index, None, None)
        })?;
        if !value.is_null() {
            documents.push(parse_document(source, index, value));
        }
    }
    Ok(documents)
}

fn parse_document(source: &str, index: usize, mut yaml: serde_yaml_ng::Value) -> ParsedDocument {
    let json = yaml
        .apply_merge()
        .map_err(|e| FieldError::new("", "", format!("YAML merge key: {e}")))
        .and_then(|()| yaml_to_json(yaml, ""));
    match json {
        Ok(json) => parse_object(source, index, json),
        Err(e) => ParsedDocument {
            index,
            key: None,
            result: Err(e.reject(source, index, None, None)),
        },
    }
}

/// Parses and validates one object already in JSON form (e.g. from the Kubernetes API); `source`
/// and `index` name it in rejections.
pub fn parse_object(source: &str, index: usize, json: Value) -> ParsedDocument {
    let kind = json.get("kind").and_then(Value::as_str);
    let name = json.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str);
    let info = kind.and_then(|k| KINDS.iter().find(|i| i.written == k));
    let key = match (info, name) {
        (Some(info), Some(name)) => {
            let namespace = match info.namespaced {
                false => "",
                true => json["metadata"]
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default"),
            };
            Some(ResourceKey {
                kind: info.canonical.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        _ => None,
    };
    let result = to_resource(source, &json).map_err(|e| e.reject(source, index, kind, name));
    ParsedDocument { index, key, result }
}

fn to_resource(source: &str, json: &Value) -> Result<Resource, FieldError> {
    const SHAPE: &str = "a document must be a mapping with apiVersion, kind, metadata and spec";
    let top = Obj::new("", Some(json)).map_err(|e| FieldError {
        reason: SHAPE.into(),
        ..e
    })?;
    let kind = top
        .str("kind")?
        .ok_or_else(|| FieldError::new("kind", "", "required"))?;
    let Some(info) = KINDS.iter().find(|i| i.written == kind) else {
        let known: Vec<&str> = KINDS.iter().map(|i| i.written).collect();
        return Err(FieldError::new(
            "kind",
            kind,
            format!("unknown kind {kind}; expected one of {}", known.join(", ")),
        ));
    };
    let api_version = top
        .str("apiVersion")?
        .ok_or_else(|| FieldError::new("apiVersion", "", "required"))?;
    if !info.api_versions.contains(&api_version) {
        return Err(FieldError::new(
            "apiVersion",
            api_version,
            format!(
                "apiVersion {api_version} does not serve kind {kind}; expected one of {}",
                info.api_versions.join(", ")
            ),
        ));
    }
    // `status` is accepted and ignored so that `kubectl get -o yaml` output can be pasted.
    top.deny_unknown(&["apiVersion", "kind", "metadata", "spec", "status"])?;
    let meta = ObjectMeta::parse(&top, info.namespaced)?;
    Ok(match info.canonical {
        "IPPool" => Resource::IpPool(ippool::parse(api_version, meta, &top, source)?),
        "IPAMConfig" => Resource::IpamConfig(ipamconfig::parse(&meta, &top)?),
        "Node" => Resource::Node(node::parse(api_version, meta, &top, source)?),
        "Pod" => Resource::Pod(pod::from_meta(meta, source)),
        "BGPConfiguration" => Resource::BgpConfiguration(bgpconfig::parse(api_version, meta, &top, source)?),
        "BGPPeer" => Resource::BgpPeer(bgppeer::parse(api_version, meta, &top, source)?),
        canonical => {
            top.obj("spec")?;
            Resource::Other(RawResource {
                api_version: api_version.to_string(),
                kind: canonical.to_string(),
                metadata: meta,
                spec: top.get("spec").cloned().unwrap_or(Value::Null),
                source: source.to_string(),
            })
        }
    })
}

/// Converts one YAML document to JSON, the shape Kubernetes itself works in. Scalar keys become
/// strings (as `sigs.k8s.io/yaml` does); tags and non-scalar keys are refused with their path.
pub(crate) fn yaml_to_json(value: serde_yaml_ng::Value, path: &str) -> Result<Value, FieldError> {
    use serde_yaml_ng::Value as Y;
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::String(s) => Value::String(s),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| FieldError::new(path, n.to_string(), "not a finite number"))?
            }
        }
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| yaml_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => {
                        let shown = serde_yaml_ng::to_string(&other).unwrap_or_default();
                        return Err(FieldError::new(path, shown.trim(), "mapping keys must be strings"));
                    }
                };
                let value = yaml_to_json(v, &at(&key))?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            return Err(FieldError::new(
                path,
                tagged.tag.to_string(),
                "YAML tags are not supported",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::EncapMode;
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Resource {
        parse_one(text).result.expect("should be accepted")
    }

    fn rejected(text: &str) -> Rejection {
        parse_one(text).result.expect_err("should be rejected")
    }

    fn parse_one(text: &str) -> ParsedDocument {
        let mut docs = parse_file("test.yaml", text).expect("valid YAML");
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn dispatch_rejections_name_the_field() {
        let cases = [
            (
                "apiVersion: v1\nkind: Service\nmetadata: {name: a}",
                "kind",
                "unknown kind Service",
            ),
            ("apiVersion: v1\nmetadata: {name: a}", "kind", "required"),
            ("kind: IPPool\nmetadata: {name: a}", "apiVersion", "required"),
            (
                "apiVersion: v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.0.0.0/16}",
                "apiVersion",
                "apiVersion v1 does not serve kind IPPool; expected one of lanes.dev/v1, \
                 projectcalico.org/v3, crd.projectcalico.org/v1",
            ),
            (
                "apiVersion: projectcalico.org/v3\nkind: NetworkAttachmentDefinition\n\
                 metadata: {name: a}",
                "apiVersion",
                "expected one of k8s.cni.cncf.io/v1",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspce: {}",
                "spce",
                "did you mean spec?",
            ),
            ("- a\n- b", "", "must be a mapping"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: My_Pod}",
                "metadata.name",
                "DNS-1123",
            ),
            ("apiVersion: v1\nkind: Pod", "metadata", "required"),
            (
                "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
                 metadata: {name: a}\nspec: []",
                "spec",
                "expected a mapping",
            ),
        ];
        for (text, field, fragment) in cases {
            let r = rejected(text);
            assert_eq!(r.field, field, "{text}: {r}");
            assert!(r.reason.contains(fragment), "{text}: {r}");
            assert_eq!((r.source.as_str(), r.document), ("test.yaml", 1));
        }
    }

    #[test]
    fn rejected_documents_keep_their_key_and_labels() {
        let text = "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n\
                    metadata: {name: default}\nspec: {maxBlocksPerHost: -2}";
        let doc = parse_file("ipam.yaml", text).unwrap().remove(0);
        let key = doc.key.unwrap();
        assert_eq!((key.kind.as_str(), key.name.as_str()), ("IPAMConfig", "default"));
        let r = doc.result.unwrap_err();
        assert_eq!(
            r.to_string(),
            "ipam.yaml document 1 (IPAMConfiguration default): spec.maxBlocksPerHost = -2: \
             must be 0 (unlimited) or a positive number of blocks"
        );
    }

    #[test]
    fn documents_are_counted_including_empty_ones() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n\
                    ---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x}\n---\n";
        let docs = parse_file("p.yaml", text).unwrap();
        let found: Vec<(usize, String)> = docs
            .iter()
            .map(|d| (d.index, d.key.as_ref().unwrap().to_string()))
            .collect();
        assert_eq!(found, [(1, "Pod default/a".to_string()), (3, "Pod x/b".to_string())]);
    }

    #[test]
    fn invalid_yaml_rejects_the_whole_file_with_its_position() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: [unclosed\n";
        let (resources, rejections) = parse_documents("bad.yaml", text);
        assert!(resources.is_empty());
        assert_eq!(rejections.len(), 1);
        let r = &rejections[0];
        assert_eq!((r.field.as_str(), r.document), ("", 2));
        assert!(r.reason.contains("line") && r.reason.contains("column"), "{r}");
        assert!(r.to_string().starts_with("bad.yaml document 2: invalid YAML"), "{r}");
        assert!(parse_file("dup.yaml", "a: 1\na: 2\n").is_err());
    }

    #[test]
    fn raw_kinds_and_merge_keys() {
        let text = "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
                    metadata: {name: fast, namespace: team}\n\
                    spec:\n  config: '{\"type\": \"lanes\"}'\n\
                    ---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\n\
                    metadata: {name: tor}\nbase: &b {peerIP: 192.168.1.1}\n";
        let docs = parse_file("n.yaml", text).unwrap();
        let Ok(Resource::Other(nad)) = &docs[0].result else {
            panic!("{docs:?}")
        };
        assert_eq!(nad.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(nad.spec["config"], "{\"type\": \"lanes\"}");
        assert_eq!(docs[1].result.as_ref().unwrap_err().field, "base");

        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n\
                    spec:\n  <<: {peerIP: 192.168.1.1, asNumber: 64512}\n  asNumber: 65000\n";
        let Resource::BgpPeer(peer) = one(text) else { panic!() };
        assert!(matches!(
            peer.target,
            super::super::PeerTarget::Ip { as_number: 65000, .. }
        ));
    }

    #[test]
    fn crd_pool_with_deprecated_ipip() {
        let text = "\
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: legacy
spec:
  cidr: 10.250.0.0/16
  ipip:
    enabled: true
    mode: cross-subnet
  nat-outgoing: true
";
        let Resource::IpPool(p) = one(text) else { panic!() };
        assert_eq!(
            (p.ipip_mode, p.nat_outgoing, p.block_size),
            (EncapMode::CrossSubnet, true, 26)
        );
    }

    #[test]
    fn ipam_config_in_every_api_version() {
        for (api, kind) in [
            (API_LANES, "IPAMConfig"),
            (API_CALICO_V3, "IPAMConfiguration"),
            (API_CALICO_V3, "IPAMConfig"),
            (API_CALICO_CRD, "IPAMConfig"),
        ] {
            let text = format!(
                "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: default\nspec:\n  strictAffinity: true\n  \
                 maxBlocksPerHost: 4\n"
            );
            let doc = parse_file("ipam.yaml", &text).unwrap().remove(0);
            assert_eq!(doc.key.unwrap().kind, "IPAMConfig");
            let Ok(Resource::IpamConfig(c)) = doc.result else {
                panic!("{api}: {:?}", doc.result)
            };
            assert!(c.strict_affinity && c.auto_allocate_blocks, "{api}");
            assert_eq!(c.max_blocks_per_host, 4);
        }
    }

    #[test]
    fn yaml_converts_to_json_with_string_keys() {
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str("a: 1\n2: [x, 1.5]\ntrue: ~").unwrap();
        let j = yaml_to_json(y, "").unwrap();
        assert_eq!(j, json!({"a": 1, "2": ["x", 1.5], "true": null}));
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str("spec:\n  x: !custom 1").unwrap();
        assert_eq!(yaml_to_json(y, "").unwrap_err().field, "spec.x");
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str("? [a]\n: 1").unwrap();
        assert!(yaml_to_json(y, "").unwrap_err().reason.contains("keys must be strings"));
    }
}
