//! The request configuration on stdin (one plugin's config as the runtime derived it).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::env::{is_valid_identifier, Command};
use super::error::{kind, short, CniError};
use super::result::CniResult;
use super::version::{select_version, SpecVersion};

/// The only `type` this plugin answers to.
pub const PLUGIN_TYPE: &str = "lanes";
/// The GC key for the attachments still in use (spec 1.1 after the tag).
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The same, as spelled in the `spec-v1.1.0` tag; libcni ≥1.2.3 sets both.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// One container attachment, as listed for GC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// A parsed and validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The version selected from `cniVersion` and `cniVersions`.
    pub cni_version: SpecVersion,
    pub name: String,
    pub plugin_type: String,
    /// `socket`: the daemon socket the shim talks to.
    pub socket: Option<String>,
    /// `mtu`, 68..=65535.
    pub mtu: Option<u32>,
    /// `ipPools`: pool names or CIDRs.
    pub ip_pools: Vec<String>,
    /// `multus`: Multus runs this config as its cluster network, so it owns the pod's
    /// `k8s.v1.cni.cncf.io/networks` (it calls each NAD's plugin itself) and network-status;
    /// lanesd then wires eth0 only.
    pub multus: bool,
    pub prev_result: Option<Value>,
    pub runtime_config: Map<String, Value>,
    pub args: Map<String, Value>,
    /// GC: `cni.dev/valid-attachments`, else `cni.dev/attachments`.
    pub valid_attachments: Option<Vec<AttachmentKey>>,
    /// Every other key (`ipam`, `dns`, unknown ones), unvalidated.
    pub extra: Map<String, Value>,
}

impl NetConf {
    /// `prevResult` parsed into the version-independent model (errors name `prevResult.…`).
    pub fn parsed_prev_result(&self) -> Result<Option<CniResult>, CniError> {
        self.prev_result.as_ref().map(CniResult::parse).transpose()
    }
}

/// Parses stdin for `command`.
///
/// Bad JSON or a non-object is code 6; invalid fields are code 7 naming the field; no supported
/// version, or a verb the selected version does not have, is code 1. `capabilities`, `disableGC`
/// and `disableCheck` are accepted and dropped. A JSON `null` counts as an absent field.
///
/// For VERSION nothing is required: an unusable version falls back to 1.1.0 and `name`/`type`
/// may be absent (libcni probes with `{"cniVersion":..}` alone); fields present are still checked.
pub fn parse_netconf(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
    let value: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::decoding("failed to decode network config", e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(CniError::decoding(
            "failed to decode network config",
            format!("expected a JSON object, found {}", kind(&value)),
        ));
    };
    let is_version = command == Command::Version;

    let cni_version = take_string(&mut obj, "cniVersion")?;
    let cni_versions = take_string_list(&mut obj, "cniVersions")?;
    let cni_version = match select_version(cni_version.as_deref(), &cni_versions) {
        Ok(v) => v,
        Err(_) if is_version => SpecVersion::LATEST,
        Err(e) => return Err(e),
    };
    let verb_allowed = match command {
        Command::Check => cni_version.allows_check(),
        Command::Status | Command::Gc => cni_version.allows_status_gc(),
        _ => true,
    };
    if !verb_allowed {
        return Err(CniError::incompatible_version(
            format!("config version does not allow {command}"),
            format!("cniVersion {cni_version} does not have {command}"),
        ));
    }

    let name = match take_string(&mut obj, "name")? {
        Some(name) if is_valid_identifier(&name) => name,
        Some(name) => {
            return Err(CniError::invalid_config(
                "invalid network name",
                format!("`name` {name:?} must match [a-zA-Z0-9][a-zA-Z0-9_.\\-]*"),
            ))
        }
        None if is_version => String::new(),
        None => return Err(missing_field("name", command)),
    };
    let plugin_type = match take_string(&mut obj, "type")? {
        Some(t) if t == PLUGIN_TYPE => t,
        Some(t) => {
            return Err(CniError::invalid_config(
                "unsupported plugin type",
                format!("`type` is {t:?}, this plugin is {PLUGIN_TYPE:?}"),
            ))
        }
        None if is_version => String::new(),
        None => return Err(missing_field("type", command)),
    };

    let socket = take_string(&mut obj, "socket")?;
    if socket.as_deref() == Some("") {
        return Err(field_error("socket", &Value::from(""), "must not be empty"));
    }
    let mtu = match take(&mut obj, "mtu") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (68..=65535).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| field_error("mtu", &v, "must be an integer in 68..=65535"))?,
        ),
    };
    let ip_pools = take_string_list(&mut obj, "ipPools")?;
    for (i, pool) in ip_pools.iter().enumerate() {
        let why = if pool.is_empty() {
            "must not be empty"
        } else if pool.contains('/') && pool.parse::<ipnet::IpNet>().is_err() {
            "is not a valid CIDR"
        } else {
            continue;
        };
        return Err(field_error(&format!("ipPools[{i}]"), &Value::from(pool.as_str()), why));
    }
    let multus = match take(&mut obj, "multus") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(v) => return Err(field_error("multus", &v, "must be true or false")),
    };
    let prev_result = match take(&mut obj, "prevResult") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(v) => return Err(field_error("prevResult", &v, "must be an object")),
    };
    let runtime_config = take_object(&mut obj, "runtimeConfig")?;
    let args = take_object(&mut obj, "args")?;

    let valid = take(&mut obj, VALID_ATTACHMENTS_KEY);
    let legacy = take(&mut obj, LEGACY_ATTACHMENTS_KEY);
    let valid_attachments = match (valid, legacy) {
        (Some(v), _) => Some(parse_attachments(VALID_ATTACHMENTS_KEY, &v)?),
        (None, Some(v)) => Some(parse_attachments(LEGACY_ATTACHMENTS_KEY, &v)?),
        (None, None) => None,
    };
    for ignored in ["capabilities", "disableGC", "disableCheck"] {
        obj.remove(ignored);
    }

    Ok(NetConf {
        cni_version,
        name,
        plugin_type,
        socket,
        mtu,
        ip_pools,
        multus,
        prev_result,
        runtime_config,
        args,
        valid_attachments,
        extra: obj,
    })
}

fn missing_field(field: &str, command: Command) -> CniError {
    CniError::invalid_config(
        format!("network config field `{field}` missing"),
        format!("`{field}` is required for {command}"),
    )
}

fn field_error(field: &str, value: &Value, why: &str) -> CniError {
    CniError::invalid_config(
        format!("invalid network config field `{field}`"),
        format!("`{field}` = {}: {why}", short(value)),
    )
}

fn take(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    obj.remove(key).filter(|v| !v.is_null())
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match take(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(field_error(key, &v, "must be a string")),
    }
}

fn take_string_list(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<String>, CniError> {
    match take(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                v => Err(field_error(&format!("{key}[{i}]"), &v, "must be a string")),
            })
            .collect(),
        Some(v) => Err(field_error(key, &v, "must be a list of strings")),
    }
}

fn take_object(obj: &mut Map<String, Value>, key: &str) -> Result<Map<String, Value>, CniError> {
    match take(obj, key) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(v) => Err(field_error(key, &v, "must be an object")),
    }
}

fn parse_attachments(key: &str, value: &Value) -> Result<Vec<AttachmentKey>, CniError> {
    // Go marshals an empty (nil) slice as null: no attachment is valid.
    if value.is_null() {
        return Ok(Vec::new());
    }
    let Value::Array(items) = value else {
        return Err(field_error(
            key,
            value,
            "must be a list of {\"containerID\",\"ifname\"}",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            match (field("containerID"), field("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(AttachmentKey { container_id, ifname }),
                _ => Err(field_error(
                    &format!("{key}[{i}]"),
                    item,
                    "must be an object with non-empty string fields `containerID` and `ifname`",
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::error::{ERR_DECODING, ERR_INCOMPATIBLE_VERSION, ERR_INVALID_CONFIG};
    use super::*;
    use serde_json::json;

    fn parse(v: Value, cmd: Command) -> Result<NetConf, CniError> {
        parse_netconf(v.to_string().as_bytes(), cmd)
    }

    fn base() -> Value {
        json!({"cniVersion": "1.0.0", "name": "lanes-net", "type": "lanes"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = base();
        v[key] = value;
        v
    }

    fn config_err(v: Value, cmd: Command) -> CniError {
        let e = parse(v, cmd).unwrap_err();
        assert_eq!(e.code, ERR_INVALID_CONFIG, "{e:?}");
        e
    }

    #[test]
    fn full_config() {
        let v = json!({
            "cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.1.0", "7.0.0"],
            "name": "lanes-net", "type": "lanes", "socket": "/run/lanes/cni.sock", "mtu": 1450,
            "ipPools": ["default", "10.1.0.0/16", "fd00::/64"],
            "prevResult": {"cniVersion": "1.1.0", "ips": []},
            "runtimeConfig": {"portMappings": []}, "args": {"cni": {"x": 1}},
            "capabilities": {"portMappings": true}, "disableGC": false, "disableCheck": true,
            "ipam": {"type": "none"}, "cni.dev/other": 1, "custom": null,
        });
        let c = parse(v, Command::Add).unwrap();
        assert_eq!(c.cni_version, SpecVersion::V1_1_0);
        assert_eq!((c.name.as_str(), c.plugin_type.as_str()), ("lanes-net", "lanes"));
        assert_eq!(c.socket.as_deref(), Some("/run/lanes/cni.sock"));
        assert_eq!(c.mtu, Some(1450));
        assert_eq!(c.ip_pools, ["default", "10.1.0.0/16", "fd00::/64"]);
        assert_eq!(c.prev_result, Some(json!({"cniVersion": "1.1.0", "ips": []})));
        assert_eq!(c.parsed_prev_result().unwrap(), Some(CniResult::default()));
        assert_eq!(Value::Object(c.runtime_config), json!({"portMappings": []}));
        assert_eq!(Value::Object(c.args), json!({"cni": {"x": 1}}));
        assert_eq!(c.valid_attachments, None);
        assert_eq!(
            Value::Object(c.extra),
            json!({"ipam": {"type": "none"}, "cni.dev/other": 1, "custom": null})
        );
    }

    #[test]
    fn bad_json_has_position() {
        let e = parse_netconf(b"{\n  \"name\": ,\n}", Command::Add).unwrap_err();
        assert_eq!(e.code, ERR_DECODING);
        assert!(e.details.contains("line 2 column"), "{}", e.details);
        let e = parse_netconf(b"[1]", Command::Add).unwrap_err();
        assert_eq!(
            (e.code, e.details.as_str()),
            (ERR_DECODING, "expected a JSON object, found an array")
        );
    }

    #[test]
    fn version_selection_and_verbs() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(config_err(v.clone(), Command::Add).msg, "cniVersion missing");
        let e = parse(with("cniVersion", json!("0.2.0")), Command::Add).unwrap_err();
        assert_eq!(e.code, ERR_INCOMPATIBLE_VERSION);
        let e = parse(with("cniVersion", json!("0.3.1")), Command::Check).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ERR_INCOMPATIBLE_VERSION, "config version does not allow CHECK")
        );
        assert!(e.details.contains("0.3.1"));
        parse(with("cniVersion", json!("0.4.0")), Command::Check).unwrap();
        for cmd in [Command::Status, Command::Gc] {
            let e = parse(base(), cmd).unwrap_err();
            assert_eq!(e.code, ERR_INCOMPATIBLE_VERSION);
            assert!(e.msg.contains(cmd.as_str()) && e.details.contains("1.0.0"));
            parse(with("cniVersion", json!("1.1.0")), cmd).unwrap();
        }
        // cniVersions can lift an old cniVersion to one that allows the verb.
        parse(with("cniVersions", json!(["1.1.0"])), Command::Gc).unwrap();
        let e = config_err(with("cniVersions", json!("1.1.0")), Command::Add);
        assert!(e.details.contains("`cniVersions`"));
        let e = config_err(with("cniVersions", json!(["1.1.0", 2])), Command::Add);
        assert!(e.details.contains("`cniVersions[1]` = 2"));
    }

    #[test]
    fn version_probe_is_lenient() {
        let c = parse(json!({"cniVersion": "1.0.0"}), Command::Version).unwrap();
        assert_eq!((c.cni_version, c.name.as_str()), (SpecVersion::V1_0_0, ""));
        let c = parse(json!({}), Command::Version).unwrap();
        assert_eq!(c.cni_version, SpecVersion::LATEST);
    }

    #[test]
    fn name_and_type() {
        for cmd in [Command::Add, Command::Del, Command::Check] {
            let mut v = base();
            v.as_object_mut().unwrap().remove("name");
            assert_eq!(config_err(v, cmd).msg, "network config field `name` missing");
            let mut v = base();
            v.as_object_mut().unwrap().remove("type");
            assert_eq!(config_err(v, cmd).msg, "network config field `type` missing");
        }
        let e = config_err(with("name", json!("bad name")), Command::Add);
        assert!(e.details.contains("`name` \"bad name\""));
        let e = config_err(with("name", json!(5)), Command::Add);
        assert!(e.details.contains("`name` = 5"));
        let e = config_err(with("type", json!("bridge")), Command::Add);
        assert!(e.details.contains("`type` is \"bridge\""));
        // STATUS/GC: type still required, name injected by libcni.
        let v = json!({"cniVersion": "1.1.0", "name": "n"});
        assert!(config_err(v, Command::Status).msg.contains("`type`"));
    }

    #[test]
    fn mtu_socket_pools() {
        for bad in [json!(67), json!(65536), json!(-1), json!("1500"), json!(1500.5)] {
            let e = config_err(with("mtu", bad.clone()), Command::Add);
            assert!(e.details.starts_with(&format!("`mtu` = {bad}")), "{e:?}");
        }
        assert_eq!(parse(with("mtu", json!(68)), Command::Add).unwrap().mtu, Some(68));
        assert_eq!(parse(with("mtu", json!(null)), Command::Add).unwrap().mtu, None);
        config_err(with("socket", json!("")), Command::Add);
        config_err(with("socket", json!(1)), Command::Add);
        let e = config_err(with("ipPools", json!(["ok", "10.0.0.0/33"])), Command::Add);
        assert_eq!(e.details, "`ipPools[1]` = \"10.0.0.0/33\": is not a valid CIDR");
        let e = config_err(with("ipPools", json!([""])), Command::Add);
        assert!(e.details.starts_with("`ipPools[0]`"));
        config_err(with("ipPools", json!([1])), Command::Add);
        config_err(with("ipPools", json!("default")), Command::Add);
        assert!(parse(with("multus", json!(true)), Command::Add).unwrap().multus);
        assert!(!parse(with("multus", json!(null)), Command::Add).unwrap().multus);
        let e = config_err(with("multus", json!("yes")), Command::Add);
        assert!(e.details.starts_with("`multus`"), "{e:?}");
    }

    #[test]
    fn object_fields() {
        for key in ["prevResult", "runtimeConfig", "args"] {
            let e = config_err(with(key, json!([1])), Command::Add);
            assert!(e.details.starts_with(&format!("`{key}` = [1]")), "{e:?}");
        }
        let e = parse(with("prevResult", json!({"ips": [{"address": "x"}]})), Command::Del).unwrap();
        let e = e.parsed_prev_result().unwrap_err();
        assert!(e.details.contains("`prevResult.ips[0].address`"), "{e:?}");
    }

    #[test]
    fn attachments() {
        let list = json!([{"containerID": "b", "ifname": "eth0"}, {"containerID": "a", "ifname": "net1", "x": 1}]);
        let mut v = with("cniVersion", json!("1.1.0"));
        v[LEGACY_ATTACHMENTS_KEY] = json!([]);
        v[VALID_ATTACHMENTS_KEY] = list.clone();
        let c = parse(v, Command::Gc).unwrap();
        let got = c.valid_attachments.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            AttachmentKey {
                container_id: "a".into(),
                ifname: "net1".into()
            }
        );
        assert!(got[1] < got[0]);
        assert!(c.extra.is_empty());
        // The older key alone is used.
        let mut v = with("cniVersion", json!("1.1.0"));
        v[LEGACY_ATTACHMENTS_KEY] = list;
        assert_eq!(parse(v, Command::Gc).unwrap().valid_attachments.unwrap().len(), 2);
        // Malformed entries name the key and index.
        for (key, bad) in [
            (
                VALID_ATTACHMENTS_KEY,
                json!([{"containerID": "a", "ifname": "e"}, {"containerID": "a"}]),
            ),
            (
                LEGACY_ATTACHMENTS_KEY,
                json!([{"containerID": "a", "ifname": "e"}, "x"]),
            ),
        ] {
            let e = config_err(with(key, bad), Command::Add);
            assert!(e.details.starts_with(&format!("`{key}[1]`")), "{e:?}");
        }
        let e = config_err(with(VALID_ATTACHMENTS_KEY, json!({})), Command::Add);
        assert!(e.details.starts_with("`cni.dev/valid-attachments` = {}"));
    }
}
