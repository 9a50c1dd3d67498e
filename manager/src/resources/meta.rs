//! What every document shares: object metadata, the [`Rejection`] a bad document turns into, and
//! the typed readers the kind parsers use so that every error names the field path
//! (`spec.blockSize`), not a serde position.
//!
//! Documents are read as untyped JSON values first and then picked apart by hand. That is more
//! code than `#[derive(Deserialize)]`, but it is the only way to get "spec.blockSise: unknown field
//! (did you mean blockSize?)" and Calico's defaulting rules (empty string = default) exactly.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// Why a document, or a whole file, was not accepted.
///
/// `document` is the 1-based position of the document in its file (0 when the file as a whole
/// could not be read); `field` is a path like `spec.blockSize`, empty when the problem is not
/// about one field (invalid YAML, say).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub source: String,
    pub document: usize,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if self.document > 0 {
            write!(f, " document {}", self.document)?;
        }
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " ({kind} {name})")?,
            (Some(only), None) | (None, Some(only)) => write!(f, " ({only})")?,
            (None, None) => {}
        }
        f.write_str(": ")?;
        match (self.field.is_empty(), self.value.is_empty()) {
            (true, _) => {}
            (false, true) => write!(f, "{}: ", self.field)?,
            (false, false) => write!(f, "{} = {}: ", self.field, self.value)?,
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejection {}

/// A problem with one field of one document, before it is placed in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) value: String,
    pub(crate) reason: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn reject(self, source: &str, document: usize, kind: Option<&str>, name: Option<&str>) -> Rejection {
        Rejection {
            source: source.to_string(),
            document,
            kind: kind.map(str::to_string),
            name: name.map(str::to_string),
            field: self.field,
            value: self.value,
            reason: self.reason,
        }
    }
}

/// Kubernetes object metadata, the parts Lanes reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub name: String,
    /// Only kept for namespaced kinds (Pod, NetworkAttachmentDefinition), where it defaults to
    /// `default`; cluster-scoped kinds ignore it as the API server does.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub uid: Option<String>,
}

/// Fields of `metadata` that are read, plus the bookkeeping ones `kubectl get -o yaml` prints,
/// which are accepted and ignored so that such output can be pasted.
const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "generateName",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

impl ObjectMeta {
    pub(crate) fn parse(top: &Obj<'_>, namespaced: bool) -> Result<Self, FieldError> {
        let meta = top.obj("metadata")?;
        if !meta.is_present() {
            return Err(FieldError::new("metadata", "", "required"));
        }
        meta.deny_unknown(METADATA_FIELDS)?;
        let name = meta
            .str("name")?
            .ok_or_else(|| FieldError::new("metadata.name", "", "required"))?;
        check_dns_subdomain("metadata.name", name)?;
        let namespace = match (namespaced, meta.str("namespace")?) {
            (false, _) => None,
            (true, None) => Some("default".to_string()),
            (true, Some(ns)) => {
                check_dns_label("metadata.namespace", ns)?;
                Some(ns.to_string())
            }
        };
        Ok(Self {
            name: name.to_string(),
            namespace,
            labels: meta.string_map("labels")?,
            annotations: meta.string_map("annotations")?,
            uid: meta.str("uid")?.map(str::to_string),
        })
    }
}

/// A document of a kind that is accepted now and parsed by its owner later
/// (NetworkAttachmentDefinition): only its metadata has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawResource {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    /// `spec` as written; `Value::Null` when absent.
    pub spec: Value,
    pub source: String,
}

/// Renders a value for [`Rejection::value`]: strings bare, anything else as compact JSON, cut
/// short so one enormous field does not flood the log.
pub(crate) fn show(value: &Value) -> String {
    const MAX: usize = 100;
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// A mapping at a known path in a document, with readers whose errors carry that path.
/// `null` and absent both read as an empty mapping (`spec:` with nothing under it).
pub(crate) struct Obj<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(path: &str, value: Option<&'a Value>) -> Result<Self, FieldError> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => return Err(FieldError::new(path, show(other), "expected a mapping")),
        };
        Ok(Self {
            path: path.to_string(),
            map,
        })
    }

    /// The path of `key` under this mapping: `spec.cidr`, or `kind` at the top.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn is_present(&self) -> bool {
        self.map.is_some()
    }

    /// The value of `key`, treating an explicit `null` as absent (as Kubernetes does).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    /// Fails on the first key not in `allowed`, suggesting a near miss when there is one.
    pub(crate) fn deny_unknown(&self, allowed: &[&str]) -> Result<(), FieldError> {
        let Some(map) = self.map else { return Ok(()) };
        match map.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some((key, value)) => {
                let reason = match closest(key, allowed) {
                    Some(near) => format!("unknown field (did you mean {near}?)"),
                    None => format!("unknown field; known fields: {}", allowed.join(", ")),
                };
                Err(FieldError::new(self.path_of(key), show(value), reason))
            }
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, other, "a string")),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, other, "true or false")),
        }
    }

    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, v, "an integer")),
            Some(other) => Err(self.wrong_type(key, other, "an integer")),
        }
    }

    pub(crate) fn obj(&self, key: &str) -> Result<Obj<'a>, FieldError> {
        Obj::new(&self.path_of(key), self.get(key))
    }

    /// A list, each item paired with its own path (`spec.allowedUses[1]`).
    pub(crate) fn list(&self, key: &str) -> Result<Vec<(String, &'a Value)>, FieldError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{}[{i}]", self.path_of(key)), v))
                .collect()),
            Some(other) => Err(self.wrong_type(key, other, "a list")),
        }
    }

    /// A string-to-string mapping such as labels or annotations. Kubernetes rejects `rack: 1`
    /// in labels, and so does this: the value must be quoted.
    pub(crate) fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, FieldError> {
        let entries = self.obj(key)?;
        let Some(map) = entries.map else {
            return Ok(BTreeMap::new());
        };
        map.iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(FieldError::new(
                    entries.path_of(k),
                    show(other),
                    "expected a string (quote the value)",
                )),
            })
            .collect()
    }

    fn wrong_type(&self, key: &str, value: &Value, expected: &str) -> FieldError {
        FieldError::new(self.path_of(key), show(value), format!("expected {expected}"))
    }
}

/// The allowed name closest to `key`, if it is a plausible typo (edit distance at most 2,
/// ignoring case).
fn closest<'n>(key: &str, allowed: &[&'n str]) -> Option<&'n str> {
    let key = key.to_ascii_lowercase();
    allowed
        .iter()
        .map(|name| (edit_distance(&key, &name.to_ascii_lowercase()), *name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            row.push(substitute.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

/// Kubernetes' DNS-1123 subdomain rule, which object names follow.
pub(crate) fn check_dns_subdomain(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            name,
            "must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit",
        ))
    }
}

/// Kubernetes' DNS-1123 label rule, which namespaces follow.
pub(crate) fn check_dns_label(field: &str, name: &str) -> Result<(), FieldError> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            name,
            "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit",
        ))
    }
}

fn is_dns_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 63 && alnum(first) && alnum(last) && bytes.iter().all(|&c| alnum(c) || c == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejection_display_names_file_document_object_and_field() {
        let r = FieldError::new("spec.blockSize", "33", "must be between 20 and 32").reject(
            "pools.yaml",
            2,
            Some("IPPool"),
            Some("default-ipv4-ippool"),
        );
        assert_eq!(
            r.to_string(),
            "pools.yaml document 2 (IPPool default-ipv4-ippool): spec.blockSize = 33: \
             must be between 20 and 32"
        );
        let whole_file = FieldError::new("", "", "invalid YAML").reject("a.yaml", 0, None, None);
        assert_eq!(whole_file.to_string(), "a.yaml: invalid YAML");
        let no_value = FieldError::new("metadata.name", "", "required").reject("a.yaml", 1, Some("IPPool"), None);
        assert_eq!(
            no_value.to_string(),
            "a.yaml document 1 (IPPool): metadata.name: required"
        );
    }

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let doc = json!({"spec": {"cidr": "10.0.0.0/16", "blockSise": 26}});
        let top = Obj::new("", Some(&doc)).unwrap();
        let spec = top.obj("spec").unwrap();
        let err = spec.deny_unknown(&["cidr", "blockSize"]).unwrap_err();
        assert_eq!(err.field, "spec.blockSise");
        assert_eq!(err.value, "26");
        assert!(err.reason.contains("did you mean blockSize?"), "{}", err.reason);
        let err = spec.deny_unknown(&["cidr", "zzzzzzzzz"]).unwrap_err();
        assert!(err.reason.contains("known fields: cidr, zzzzzzzzz"));
    }

    #[test]
    fn typed_readers_name_the_path_and_treat_null_as_absent() {
        let doc = json!({"a": "x", "b": "true", "c": 1.5, "d": null, "e": [1], "l": {"rack": 1}});
        let o = Obj::new("spec", Some(&doc)).unwrap();
        assert_eq!(o.str("a").unwrap(), Some("x"));
        let err = o.bool("b").unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("spec.b", "expected true or false")
        );
        assert_eq!(o.int("c").unwrap_err().reason, "expected an integer");
        assert_eq!(o.int("d").unwrap(), None);
        assert_eq!(o.list("e").unwrap()[0].0, "spec.e[0]");
        let err = o.string_map("l").unwrap_err();
        assert_eq!(err.field, "spec.l.rack");
        assert!(err.reason.contains("quote"));
        assert!(Obj::new("spec", Some(&json!([1]))).is_err());
    }

    #[test]
    fn metadata_requires_a_dns_name_and_defaults_the_namespace() {
        let doc = json!({"metadata": {"name": "web-1", "labels": {"app": "web"}}});
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, true).unwrap();
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        assert_eq!(meta.labels["app"], "web");
        assert_eq!(ObjectMeta::parse(&top, false).unwrap().namespace, None);

        for (doc, field, fragment) in [
            (json!({}), "metadata", "required"),
            (json!({"metadata": {}}), "metadata.name", "required"),
            (json!({"metadata": {"name": "Web"}}), "metadata.name", "DNS-1123"),
            (json!({"metadata": {"name": "a_b"}}), "metadata.name", "DNS-1123"),
            (
                json!({"metadata": {"name": "a", "nmespace": "x"}}),
                "metadata.nmespace",
                "namespace",
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "a.b"}}),
                "metadata.namespace",
                "label",
            ),
        ] {
            let top = Obj::new("", Some(&doc)).unwrap();
            let err = ObjectMeta::parse(&top, true).unwrap_err();
            assert_eq!(err.field, field, "{doc}");
            assert!(err.reason.contains(fragment), "{doc}: {}", err.reason);
        }
    }

    #[test]
    fn dns_rules() {
        assert!(check_dns_subdomain("f", "default-ipv4-ippool").is_ok());
        assert!(check_dns_subdomain("f", "my.ippool-1").is_ok());
        assert!(check_dns_subdomain("f", &"a".repeat(254)).is_err());
        assert!(check_dns_subdomain("f", "-a").is_err());
        assert!(check_dns_subdomain("f", "a..b").is_err());
        assert!(check_dns_label("f", &"a".repeat(63)).is_ok());
        assert!(check_dns_label("f", &"a".repeat(64)).is_err());
    }

    #[test]
    fn long_values_are_cut() {
        let shown = show(&Value::String("x".repeat(500)));
        assert_eq!(shown.len(), 103);
    }
}
