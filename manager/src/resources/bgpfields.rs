//! Field types and readers shared by the BGP kinds (`BGPConfiguration`, `BGPPeer`, `Node.spec.bgp`):
//! AS numbers, Go durations, passwords, communities, CIDR lists and optional selectors. Every
//! reader names the field path on error, like the rest of [`super::meta`].

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::meta::{show, FieldError, Obj};
use super::selector::Selector;
use super::API_LANES;

/// Calico's default AS number when neither the Node nor the BGPConfiguration sets one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// The BGP port when `listenPort` is not set.
pub const DEFAULT_BGP_PORT: u16 = 179;
/// Longest TCP MD5 key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_PASSWORD_BYTES: usize = 80;

/// Where a BGP (TCP MD5) password comes from. Only the reference is kept here: the daemon
/// resolves it (reads the Secret or the file) and hands the result to the BGP code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PasswordSource {
    /// Calico's `secretKeyRef`: one key of a Kubernetes Secret in lanesd's namespace.
    SecretKeyRef { name: String, key: String, optional: bool },
    /// lanes.dev/v1 `{file: /path}`: the file's content, without one trailing newline.
    File(PathBuf),
    /// lanes.dev/v1 `{value: "..."}`: the password itself.
    Value(String),
}

impl fmt::Display for PasswordSource {
    /// Never shows a literal password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::SecretKeyRef { name, key, .. } => write!(f, "secret {name} key {key}"),
            PasswordSource::File(path) => write!(f, "file {}", path.display()),
            PasswordSource::Value(_) => f.write_str("literal value"),
        }
    }
}

/// Why a password cannot be used, or `None` when it can: BIRD 2 strings have no escapes (a `"` or
/// a newline cannot be written in one), and Linux caps MD5 keys at 80 bytes.
pub fn password_problem(password: &str) -> Option<String> {
    if password.is_empty() {
        Some("must not be empty".into())
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some(format!(
            "is {} bytes; TCP MD5 keys are at most {MAX_PASSWORD_BYTES}",
            password.len()
        ))
    } else if password.contains(['"', '\n', '\r', '\0']) {
        Some("must not contain a double quote, a newline or a NUL: BIRD cannot quote them".into())
    } else {
        None
    }
}

/// A BGP community value: standard `aa:nn` (16-bit parts, RFC 1997) or large `aa:nn:mm`
/// (32-bit parts, RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommunityValue {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard(a, n) => write!(f, "{a}:{n}"),
            CommunityValue::Large(a, n, m) => write!(f, "{a}:{n}:{m}"),
        }
    }
}

impl FromStr for CommunityValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let digits = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(digits) {
            return Err("expected aa:nn (standard) or aa:nn:mm (large community)".into());
        }
        if parts.len() == 2 {
            let part = |p: &str| {
                p.parse::<u16>()
                    .map_err(|_| "standard community parts are 0..=65535".to_string())
            };
            Ok(CommunityValue::Standard(part(parts[0])?, part(parts[1])?))
        } else {
            let part = |p: &str| {
                p.parse::<u32>()
                    .map_err(|_| "large community parts are 0..=4294967295".to_string())
            };
            Ok(CommunityValue::Large(part(parts[0])?, part(parts[1])?, part(parts[2])?))
        }
    }
}

/// An AS number as Calico writes it: an integer, or a string holding an integer or the dotted
/// `high.low` (asdot) form. 0 is refused; 4-octet numbers are fine.
pub(crate) fn as_number(obj: &Obj<'_>, key: &str) -> Result<Option<u32>, FieldError> {
    let Some(value) = obj.get(key) else { return Ok(None) };
    let bad = |reason: &str| FieldError::new(obj.path_of(key), show(value), reason);
    const RANGE: &str = "must be an AS number from 1 to 4294967295 (or asdot high.low)";
    let number: u64 = match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| bad(RANGE))?,
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => match s.split_once('.') {
            None => s.parse().map_err(|_| bad(RANGE))?,
            Some((high, low)) => {
                let high: u16 = high.parse().map_err(|_| bad("asdot parts are 0..=65535"))?;
                let low: u16 = low.parse().map_err(|_| bad("asdot parts are 0..=65535"))?;
                (u64::from(high) << 16) | u64::from(low)
            }
        },
        _ => return Err(bad("expected an AS number (integer or string)")),
    };
    match u32::try_from(number) {
        Ok(0) | Err(_) => Err(bad(RANGE)),
        Ok(n) => Ok(Some(n)),
    }
}

/// A Kubernetes `metav1.Duration`: Go's `time.ParseDuration` syntax (`120s`, `2m`, `1h30m`,
/// `1.5s`, `0`). Negative durations are refused.
pub(crate) fn duration(obj: &Obj<'_>, key: &str) -> Result<Option<Duration>, FieldError> {
    let Some(text) = obj.str(key)?.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    parse_go_duration(text)
        .map(Some)
        .map_err(|reason| FieldError::new(obj.path_of(key), text, reason))
}

/// [`duration`] in whole seconds from `min` to `max` (BIRD's timers are whole seconds).
pub(crate) fn seconds(obj: &Obj<'_>, key: &str, min: u64, max: u64) -> Result<Option<u32>, FieldError> {
    let Some(d) = duration(obj, key)? else { return Ok(None) };
    let text = obj.str(key)?.unwrap_or_default();
    if d.subsec_nanos() != 0 {
        return Err(FieldError::new(
            obj.path_of(key),
            text,
            "must be whole seconds (BIRD's timers are)",
        ));
    }
    if !(min..=max).contains(&d.as_secs()) {
        let reason = format!("must be from {min}s to {max}s");
        return Err(FieldError::new(obj.path_of(key), text, reason));
    }
    Ok(Some(u32::try_from(d.as_secs()).expect("range-checked")))
}

pub(crate) fn parse_go_duration(text: &str) -> Result<Duration, String> {
    const SYNTAX: &str = "expected a duration such as 120s, 2m or 1h30m";
    if text.starts_with('-') {
        return Err("must not be negative".into());
    }
    let s = text.strip_prefix('+').unwrap_or(text);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(SYNTAX.into());
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or(SYNTAX)?;
        let (number, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("{SYNTAX} (unknown unit {unit:?}; use ns, us, ms, s, m or h)")),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(SYNTAX.into());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| SYNTAX)?
        };
        let mut nanos = whole.checked_mul(scale).ok_or("too long")?;
        // Fractions: digits beyond nanosecond precision are dropped, as Go does.
        let mut place = scale;
        for digit in frac.bytes() {
            place /= 10;
            nanos += u128::from(digit - b'0') * place;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or("too long")?;
        rest = tail;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| "too long")?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// `password:` as Calico writes it (`secretKeyRef: {name, key, optional}`), or under lanes.dev/v1
/// also `{file: /path}` or `{value: "..."}`. Exactly one of them.
pub(crate) fn password(obj: &Obj<'_>, key: &str, api_version: &str) -> Result<Option<PasswordSource>, FieldError> {
    let pw = obj.obj(key)?;
    if !pw.is_present() {
        return Ok(None);
    }
    const CALICO: &[&str] = &["secretKeyRef"];
    const LANES: &[&str] = &["secretKeyRef", "file", "value"];
    if api_version == API_LANES {
        pw.deny_unknown(LANES)?;
    } else if let Some(extension) = ["file", "value"].iter().find(|k| pw.get(k).is_some()) {
        return Err(FieldError::new(
            pw.path_of(extension),
            pw.get(extension).map(show).unwrap_or_default(),
            format!("unknown field: Calico's password ({api_version}) has only secretKeyRef; {extension} is a {API_LANES} extension"),
        ));
    } else {
        pw.deny_unknown(CALICO)?;
    }
    let given: Vec<&str> = LANES.iter().copied().filter(|k| pw.get(k).is_some()).collect();
    let source = match given.as_slice() {
        ["secretKeyRef"] => {
            let secret = pw.obj("secretKeyRef")?;
            secret.deny_unknown(&["name", "key", "optional"])?;
            let required = |k: &str| {
                secret
                    .str(k)?
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| FieldError::new(secret.path_of(k), "", "required"))
            };
            PasswordSource::SecretKeyRef {
                name: required("name")?,
                key: required("key")?,
                optional: secret.bool("optional")?.unwrap_or(false),
            }
        }
        ["file"] => {
            let path = pw.str("file")?.unwrap_or_default();
            if !path.starts_with('/') {
                return Err(FieldError::new(pw.path_of("file"), path, "must be an absolute path"));
            }
            PasswordSource::File(PathBuf::from(path))
        }
        ["value"] => {
            let value = pw.str("value")?.unwrap_or_default();
            if let Some(problem) = password_problem(value) {
                // The value itself is a secret: never echo it.
                return Err(FieldError::new(pw.path_of("value"), "", format!("password {problem}")));
            }
            PasswordSource::Value(value.to_string())
        }
        [] => {
            return Err(FieldError::new(
                obj.path_of(key),
                "{}",
                "expected secretKeyRef (or file / value)",
            ))
        }
        several => {
            let reason = format!("give only one of {}", several.join(", "));
            return Err(FieldError::new(obj.path_of(key), "", reason));
        }
    };
    Ok(Some(source))
}

/// Calico's `[{cidr: ...}]` lists (`serviceClusterIPs`, ...). Host bits are cleared.
pub(crate) fn cidr_list(obj: &Obj<'_>, key: &str) -> Result<Vec<IpNet>, FieldError> {
    let mut out = Vec::new();
    for (path, item) in obj.list(key)? {
        let entry = Obj::new(&path, Some(item))?;
        entry.deny_unknown(&["cidr"])?;
        let cidr = entry
            .str("cidr")?
            .ok_or_else(|| FieldError::new(entry.path_of("cidr"), "", "required"))?;
        let net = parse_cidr(cidr).map_err(|r| FieldError::new(entry.path_of("cidr"), cidr, r))?;
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

/// A CIDR, normalised; a bare address reads as a host route (/32, /128).
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err("expected a CIDR such as 10.96.0.0/12 or fd00:96::/112".into()),
    }
}

/// A selector that may be absent (`None`), unlike pool selectors whose absence means `all()`.
/// Parse errors carry the column.
pub(crate) fn opt_selector(obj: &Obj<'_>, key: &str) -> Result<Option<Selector>, FieldError> {
    let Some(text) = obj.str(key)?.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    Selector::parse(text)
        .map(Some)
        .map_err(|e| FieldError::new(obj.path_of(key), text, format!("invalid selector: {e}")))
}

/// Reads one of `choices`, case-sensitively; absent or "" is `None`.
pub(crate) fn choice<T: Copy>(obj: &Obj<'_>, key: &str, choices: &[(&str, T)]) -> Result<Option<T>, FieldError> {
    let Some(text) = obj.str(key)?.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            let reason = format!("expected one of {}", names.join(", "));
            Err(FieldError::new(obj.path_of(key), text, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_numbers_in_every_form() {
        let doc = json!({"a": 64512, "b": "1111111", "c": "1.10", "d": 4294967295u64, "e": ""});
        let o = Obj::new("spec", Some(&doc)).unwrap();
        assert_eq!(as_number(&o, "a").unwrap(), Some(64512));
        assert_eq!(as_number(&o, "b").unwrap(), Some(1111111));
        assert_eq!(as_number(&o, "c").unwrap(), Some(65546));
        assert_eq!(as_number(&o, "d").unwrap(), Some(u32::MAX));
        assert_eq!(as_number(&o, "e").unwrap(), None);
        assert_eq!(as_number(&o, "zz").unwrap(), None);
        for bad in [
            json!(0),
            json!(-1),
            json!(4294967296u64),
            json!("x"),
            json!("1.70000"),
            json!(1.5),
            json!(true),
        ] {
            let doc = json!({ "asNumber": bad });
            let o = Obj::new("spec", Some(&doc)).unwrap();
            let err = as_number(&o, "asNumber").unwrap_err();
            assert_eq!(err.field, "spec.asNumber", "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("120s", 120_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("300ms", 300),
            ("0", 0),
            ("+5s", 5_000),
            (".5m", 30_000),
        ];
        for (text, millis) in ok {
            assert_eq!(parse_go_duration(text).unwrap().as_millis(), millis, "{text}");
        }
        for bad in ["", "5", "-5s", "5x", "s", "1..5s", "5 s", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        let doc = json!({"t": "90s", "f": "1500ms", "big": "5000s", "none": ""});
        let o = Obj::new("spec", Some(&doc)).unwrap();
        assert_eq!(seconds(&o, "t", 1, 4095).unwrap(), Some(90));
        assert_eq!(seconds(&o, "none", 1, 4095).unwrap(), None);
        assert!(seconds(&o, "f", 1, 4095).unwrap_err().reason.contains("whole seconds"));
        assert!(seconds(&o, "big", 1, 4095).unwrap_err().reason.contains("1s to 4095s"));
    }

    #[test]
    fn communities() {
        assert_eq!("63400:120".parse(), Ok(CommunityValue::Standard(63400, 120)));
        assert_eq!("63400:300:100".parse(), Ok(CommunityValue::Large(63400, 300, 100)));
        assert_eq!(CommunityValue::Large(1, 2, 3).to_string(), "1:2:3");
        for bad in ["1", "1:2:3:4", "65536:1", "a:b", "1:", "4294967296:1:1", "-1:2"] {
            assert!(bad.parse::<CommunityValue>().is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_by_api_version() {
        let read = |api: &str, pw: Value| {
            let doc = json!({ "password": pw });
            let o = Obj::new("spec", Some(&doc)).unwrap();
            password(&o, "password", api)
        };
        let calico = "projectcalico.org/v3";
        let secret = read(calico, json!({"secretKeyRef": {"name": "bgp", "key": "tor"}})).unwrap();
        assert_eq!(
            secret,
            Some(PasswordSource::SecretKeyRef {
                name: "bgp".into(),
                key: "tor".into(),
                optional: false
            })
        );
        assert_eq!(secret.unwrap().to_string(), "secret bgp key tor");
        let file = read(API_LANES, json!({"file": "/etc/lanes/pw"})).unwrap().unwrap();
        assert_eq!(file, PasswordSource::File("/etc/lanes/pw".into()));
        let value = read(API_LANES, json!({"value": "it's"})).unwrap().unwrap();
        assert_eq!(value.to_string(), "literal value");

        let cases = [
            (
                calico,
                json!({"file": "/x"}),
                "spec.password.file",
                "lanes.dev/v1 extension",
            ),
            (
                calico,
                json!({"secretKeyRef": {"name": "a"}}),
                "spec.password.secretKeyRef.key",
                "required",
            ),
            (
                API_LANES,
                json!({"value": "a\"b"}),
                "spec.password.value",
                "double quote",
            ),
            (
                API_LANES,
                json!({"value": "x".repeat(81)}),
                "spec.password.value",
                "at most 80",
            ),
            (API_LANES, json!({"file": "rel/path"}), "spec.password.file", "absolute"),
            (
                API_LANES,
                json!({"file": "/a", "value": "b"}),
                "spec.password",
                "only one of",
            ),
            (API_LANES, json!({}), "spec.password", "expected secretKeyRef"),
            (
                API_LANES,
                json!({"secretKeyRf": {}}),
                "spec.password.secretKeyRf",
                "did you mean",
            ),
        ];
        for (api, pw, field, fragment) in cases {
            let err = read(api, pw.clone()).unwrap_err();
            assert_eq!(err.field, field, "{pw}");
            assert!(err.reason.contains(fragment), "{pw}: {}", err.reason);
            assert!(!err.value.contains("a\"b"), "a literal password must not be echoed");
        }
    }

    #[test]
    fn cidr_lists_and_selectors() {
        let doc = json!({"ips": [{"cidr": "10.96.0.0/12"}, {"cidr": "10.96.1.1/12"}, {"cidr": "104.244.42.129"}],
                         "bad": [{"cidr": "nope"}], "typo": [{"cdr": "1.2.3.4/32"}],
                         "sel": "rack == 'r1'", "badsel": "rack == r1", "empty": " "});
        let o = Obj::new("spec", Some(&doc)).unwrap();
        let ips: Vec<String> = cidr_list(&o, "ips").unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.96.0.0/12", "104.244.42.129/32"]);
        assert_eq!(cidr_list(&o, "bad").unwrap_err().field, "spec.bad[0].cidr");
        assert_eq!(cidr_list(&o, "typo").unwrap_err().field, "spec.typo[0].cdr");
        assert!(opt_selector(&o, "sel").unwrap().is_some());
        assert_eq!(opt_selector(&o, "empty").unwrap(), None);
        let err = opt_selector(&o, "badsel").unwrap_err();
        assert_eq!(err.field, "spec.badsel");
        assert!(err.reason.contains("column 9"), "{}", err.reason);
    }

    #[test]
    fn password_problems() {
        assert_eq!(password_problem("s3cret'\\"), None);
        assert!(password_problem("").is_some());
        assert!(password_problem("a\nb").is_some());
    }
}
