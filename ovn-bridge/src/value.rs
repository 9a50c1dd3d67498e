//! OVSDB values (RFC 7047 §5.1) to and from JSON.
//!
//! Encoding uses the `ovsdb` crate's notation types ([`ovsdb::protocol::Map`],
//! [`ovsdb::protocol::Set`], [`ovsdb::protocol::Uuid`]), which serialize exactly as the RFC says.
//! Decoding uses `ovsdb`'s `Map`, `Uuid` and `UuidSet` too, but not its `Set<T>`: the server
//! writes a one-element set as the bare atom (`"addresses": "0a:58:.. 10.0.0.5"`), which
//! `Set<T>` rejects, and its deserializer panics on a malformed `["set"]`. [`Row::strings`]
//! accepts both forms.

use std::collections::BTreeMap;

use ovsdb::protocol::{Map, Set, Uuid, UuidSet};
use serde_json::{json, Value};

/// `["map", [[k, v], ...]]`
pub fn string_map(m: &BTreeMap<String, String>) -> Value {
    serde_json::to_value(Map::from(m.clone())).unwrap_or(Value::Null)
}

/// `["set", [a, b, ...]]`
pub fn string_set<S: AsRef<str>>(items: &[S]) -> Value {
    let v: Vec<String> = items.iter().map(|s| s.as_ref().to_string()).collect();
    serde_json::to_value(Set::from(v)).unwrap_or(Value::Null)
}

/// `["set", []]`: the empty value of any optional or set column.
pub fn empty_set() -> Value {
    json!(["set", []])
}

/// `["uuid", "…"]`
pub fn uuid(u: &Uuid) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

/// `["set", [["uuid", "…"], ...]]`
pub fn uuid_set(items: &[Uuid]) -> Value {
    serde_json::to_value(Set::from(items.to_vec())).unwrap_or(Value::Null)
}

/// `["named-uuid", name]`: refers to a row inserted earlier in the same transaction under
/// `uuid-name` = `name`. (`ovsdb`'s `Uuid` has no such variant.)
pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

/// Parses the text form `8-4-4-4-12` into the `ovsdb` type.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    uuid::Uuid::parse_str(s).ok().map(Uuid::from)
}

/// A canonical form for comparing values: one-element sets equal their atom, sets and maps
/// are sorted. Used to decide whether a row already has the wanted content.
pub(crate) fn canonical(v: &Value) -> Value {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(items)]) if tag == "set" => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            items.sort_by_key(|v| v.to_string());
            items.dedup();
            match items.len() {
                1 => items.remove(0),
                _ => json!(["set", items]),
            }
        }
        Some([tag, Value::Array(pairs)]) if tag == "map" => {
            let mut pairs = pairs.clone();
            pairs.sort_by_key(|v| v.to_string());
            json!(["map", pairs])
        }
        _ => v.clone(),
    }
}

/// One row as the server returned it (`select` result or monitor `new`/`old`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub serde_json::Map<String, Value>);

impl Row {
    /// The raw value of a column, if it was returned.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.0.get(column)
    }

    /// `_uuid`, when it was selected.
    pub fn uuid(&self) -> Option<Uuid> {
        self.uuid_of("_uuid")
    }

    /// A uuid-valued column (or an optional one holding a uuid).
    pub fn uuid_of(&self, column: &str) -> Option<Uuid> {
        self.uuids(column).into_iter().next()
    }

    /// A string column; for an optional string column, `None` when empty.
    pub fn string(&self, column: &str) -> Option<String> {
        self.strings(column).into_iter().next()
    }

    /// A boolean column; for an optional boolean column, `None` when empty.
    pub fn bool(&self, column: &str) -> Option<bool> {
        match self.get(column)? {
            Value::Bool(b) => Some(*b),
            Value::Array(a) => a.get(1)?.as_array()?.first()?.as_bool(),
            _ => None,
        }
    }

    /// A set of strings in either wire form; a plain string column gives one element.
    pub fn strings(&self, column: &str) -> Vec<String> {
        match self.get(column) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if a.first().and_then(Value::as_str) == Some("set") => a
                .get(1)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            _ => vec![],
        }
    }

    /// A set of uuids in either wire form (`["uuid", ..]` alone or inside `["set", [..]]`).
    pub fn uuids(&self, column: &str) -> Vec<Uuid> {
        self.tagged_pair(column)
            .and_then(|v| serde_json::from_value::<UuidSet>(v.clone()).ok())
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// A string-to-string map column; empty when missing or of another type.
    pub fn string_map(&self, column: &str) -> BTreeMap<String, String> {
        self.tagged_pair(column)
            .and_then(|v| serde_json::from_value::<Map<String, String>>(v.clone()).ok())
            .map(BTreeMap::from)
            .unwrap_or_default()
    }

    /// The column's value if it is a two-element array `[tag, x]`. `ovsdb`'s `UuidSet` and `Map`
    /// deserializers `expect()` both elements, so anything shorter must not reach them.
    fn tagged_pair(&self, column: &str) -> Option<&Value> {
        self.get(column).filter(|v| v.as_array().is_some_and(|a| a.len() == 2))
    }

    /// The value at `key` of a map column.
    pub fn map_get(&self, column: &str, key: &str) -> Option<String> {
        self.string_map(column).remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Value) -> Row {
        Row(v.as_object().unwrap().clone())
    }

    #[test]
    fn encodes_as_rfc7047() {
        let m = BTreeMap::from([("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]);
        assert_eq!(string_map(&m), json!(["map", [["a", "1"], ["b", "2"]]]));
        assert_eq!(string_set(&["x", "y"]), json!(["set", ["x", "y"]]));
        let u = parse_uuid("36bef046-7da7-43a5-905a-c17899216fcb").unwrap();
        assert_eq!(uuid(&u), json!(["uuid", "36bef046-7da7-43a5-905a-c17899216fcb"]));
        assert_eq!(
            uuid_set(&[u]),
            json!(["set", [["uuid", "36bef046-7da7-43a5-905a-c17899216fcb"]]])
        );
        assert_eq!(named_uuid("p"), json!(["named-uuid", "p"]));
        assert!(parse_uuid("nope").is_none());
    }

    #[test]
    fn decodes_both_set_forms() {
        let r = row(json!({
            "_uuid": ["uuid", "36bef046-7da7-43a5-905a-c17899216fcb"],
            "one": "0a:58:0a:00:00:05 10.0.0.5",
            "two": ["set", ["a", "b"]],
            "none": ["set", []],
            "ports": ["uuid", "36bef046-7da7-43a5-905a-c17899216fcb"],
            "ext": ["map", [["iface-id", "p1"]]],
            "up": ["set", [true]],
            "flag": false,
        }));
        assert_eq!(r.uuid().unwrap().to_string(), "36bef046-7da7-43a5-905a-c17899216fcb");
        assert_eq!(r.strings("one"), vec!["0a:58:0a:00:00:05 10.0.0.5"]);
        assert_eq!(r.strings("two"), vec!["a", "b"]);
        assert_eq!(r.string("none"), None);
        assert_eq!(r.uuids("ports").len(), 1);
        assert_eq!(r.map_get("ext", "iface-id").as_deref(), Some("p1"));
        assert_eq!(r.bool("up"), Some(true));
        assert_eq!(r.bool("flag"), Some(false));
        assert_eq!(r.bool("none"), None);
    }

    #[test]
    fn canonical_makes_equal_what_the_server_treats_as_equal() {
        assert_eq!(canonical(&json!(["set", ["a"]])), canonical(&json!("a")));
        assert_eq!(
            canonical(&json!(["set", ["b", "a"]])),
            canonical(&json!(["set", ["a", "b"]]))
        );
        assert_eq!(
            canonical(&json!(["map", [["b", "2"], ["a", "1"]]])),
            canonical(&json!(["map", [["a", "1"], ["b", "2"]]]))
        );
        assert_ne!(canonical(&json!(["set", []])), canonical(&json!("")));
    }
}
