//! The CNI error result: `{"cniVersion","code","msg","details"}` on stdout with a non-zero exit.
//!
//! Codes 0–99 are reserved by the spec; 100 and up are ours. `msg` is kept short, `details` names
//! the offending environment variable, config field or value.

use serde::Serialize;
use serde_json::Value;

/// The config's version is not one we support, or does not allow the verb.
pub const ERR_INCOMPATIBLE_VERSION: u32 = 1;
/// A config field is recognised but its value is not supported.
pub const ERR_UNSUPPORTED_FIELD: u32 = 2;
/// The container is unknown or gone; the runtime need not clean up.
pub const ERR_UNKNOWN_CONTAINER: u32 = 3;
/// A `CNI_*` environment variable is missing or invalid.
pub const ERR_INVALID_ENV: u32 = 4;
/// An I/O failure.
pub const ERR_IO: u32 = 5;
/// stdin (or a result) could not be decoded.
pub const ERR_DECODING: u32 = 6;
/// The network configuration is invalid.
pub const ERR_INVALID_CONFIG: u32 = 7;
/// The network namespace is invalid (libcni since 2022; not in the spec table, unused by default).
pub const ERR_INVALID_NETNS: u32 = 8;
/// A transient condition: the runtime should retry later.
pub const ERR_TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin is not available for ADD.
pub const ERR_NOT_AVAILABLE: u32 = 50;
/// STATUS: not available, and existing containers may have limited connectivity.
pub const ERR_LIMITED_CONNECTIVITY: u32 = 51;
/// Plugin-specific: the IP pool is exhausted or no address could be assigned.
pub const ERR_IPAM_EXHAUSTED: u32 = 100;
/// Plugin-specific: programming the dataplane (links, addresses, routes, flows) failed.
pub const ERR_DATAPLANE: u32 = 101;
/// Plugin-specific: the daemon's datastore failed.
pub const ERR_DATASTORE: u32 = 102;
/// An internal error (what Go skel plugins return for plain errors).
pub const ERR_INTERNAL: u32 = 999;

/// A CNI error, rendered with [`CniError::to_json`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: {details}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        impl CniError {
            $(
                $(#[$doc])*
                pub fn $name(msg: impl Into<String>, details: impl Into<String>) -> Self {
                    Self::new($code, msg, details)
                }
            )*
        }
    };
}

constructors! {
    /// Code 1.
    incompatible_version => ERR_INCOMPATIBLE_VERSION;
    /// Code 2.
    unsupported_field => ERR_UNSUPPORTED_FIELD;
    /// Code 3.
    unknown_container => ERR_UNKNOWN_CONTAINER;
    /// Code 4.
    invalid_env => ERR_INVALID_ENV;
    /// Code 5.
    io_failure => ERR_IO;
    /// Code 6.
    decoding => ERR_DECODING;
    /// Code 7.
    invalid_config => ERR_INVALID_CONFIG;
    /// Code 8.
    invalid_netns => ERR_INVALID_NETNS;
    /// Code 11.
    try_again_later => ERR_TRY_AGAIN_LATER;
    /// Code 50.
    not_available => ERR_NOT_AVAILABLE;
    /// Code 51.
    limited_connectivity => ERR_LIMITED_CONNECTIVITY;
    /// Code 100.
    ipam_exhausted => ERR_IPAM_EXHAUSTED;
    /// Code 101.
    dataplane => ERR_DATAPLANE;
    /// Code 102.
    datastore => ERR_DATASTORE;
    /// Code 999.
    internal => ERR_INTERNAL;
}

impl CniError {
    /// An error with any code.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error result as printed on stdout: `{"cniVersion":..,"code":N,"msg":..,"details":..}`,
    /// with `details` left out when empty.
    pub fn to_json(&self, cni_version: &str) -> Vec<u8> {
        let wire = Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_vec(&wire).expect("serializing strings and integers cannot fail")
    }
}

/// A JSON value's text, cut to about 100 characters, for error details.
pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// What kind of JSON value this is, for error details.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_fixed_key_order() {
        let e = CniError::invalid_config("Invalid Configuration", "Network 192.168.0.0/31 too small");
        assert_eq!(
            String::from_utf8(e.to_json("1.1.0")).unwrap(),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"Invalid Configuration","details":"Network 192.168.0.0/31 too small"}"#
        );
    }

    #[test]
    fn empty_details_omitted() {
        let e = CniError::try_again_later("daemon busy", "");
        assert_eq!(
            e.to_json("0.4.0"),
            br#"{"cniVersion":"0.4.0","code":11,"msg":"daemon busy"}"#.to_vec()
        );
    }

    #[test]
    fn strings_are_escaped() {
        let e = CniError::invalid_env("bad \"x\"", "line\nbreak");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["msg"], "bad \"x\"");
        assert_eq!(v["details"], "line\nbreak");
    }

    #[test]
    fn constructor_codes() {
        let cases = [
            (CniError::incompatible_version("", ""), 1),
            (CniError::unsupported_field("", ""), 2),
            (CniError::unknown_container("", ""), 3),
            (CniError::invalid_env("", ""), 4),
            (CniError::io_failure("", ""), 5),
            (CniError::decoding("", ""), 6),
            (CniError::invalid_config("", ""), 7),
            (CniError::invalid_netns("", ""), 8),
            (CniError::try_again_later("", ""), 11),
            (CniError::not_available("", ""), 50),
            (CniError::limited_connectivity("", ""), 51),
            (CniError::ipam_exhausted("", ""), 100),
            (CniError::dataplane("", ""), 101),
            (CniError::datastore("", ""), 102),
            (CniError::internal("", ""), 999),
        ];
        for (e, code) in cases {
            assert_eq!(e.code, code);
        }
    }

    #[test]
    fn display() {
        let e = CniError::invalid_env("invalid CNI_IFNAME", "too long");
        assert_eq!(e.to_string(), "invalid CNI_IFNAME: too long");
    }

    #[test]
    fn short_cuts_long_values() {
        let long = Value::from("é".repeat(300));
        let s = short(&long);
        assert_eq!(s.chars().count(), 101);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&serde_json::json!([])), "an array");
        assert_eq!(short(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
    }
}
