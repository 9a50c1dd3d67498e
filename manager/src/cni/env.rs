//! The `CNI_*` environment of a call: the verb, the container and its validation.
//!
//! Required variables per verb (spec §"Parameters"):
//!
//! | verb | required | optional |
//! |---|---|---|
//! | ADD, CHECK | `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` | `CNI_ARGS`, `CNI_PATH` |
//! | DEL | `CNI_CONTAINERID`, `CNI_IFNAME` | `CNI_NETNS`, `CNI_ARGS`, `CNI_PATH` |
//! | STATUS, GC, VERSION | — | `CNI_PATH` |
//!
//! An empty variable counts as missing. For STATUS, GC and VERSION the container variables and
//! `CNI_ARGS` are not part of the call (libcni unsets them, and its VERSION probe sets dummy values),
//! so they are ignored. `CNI_PATH` is kept but never required: the daemon execs no delegates.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::error::CniError;

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
        Command::Version,
    ];

    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// ADD, DEL and CHECK act on one container attachment.
    pub fn is_per_container(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, CniError> {
        Command::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            CniError::invalid_env(
                "unknown CNI_COMMAND",
                format!("CNI_COMMAND={s:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
            )
        })
    }
}

/// The validated `CNI_*` environment of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// `CNI_CONTAINERID`; `Some` for ADD, DEL and CHECK.
    pub container_id: Option<String>,
    /// `CNI_NETNS`, an absolute path; `Some` for ADD and CHECK, optional for DEL.
    pub netns: Option<String>,
    /// `CNI_IFNAME`; `Some` for ADD, DEL and CHECK.
    pub ifname: Option<String>,
    /// `CNI_ARGS` pairs in order; unknown keys are kept (the `IgnoreUnknown` convention is implied).
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`.
    pub path: Option<String>,
}

/// The Kubernetes pod a call is for, from the `K8S_POD_*` keys of `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub infra_container_id: Option<String>,
}

impl CniEnv {
    /// The value of a `CNI_ARGS` key (the last one if repeated).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn nonempty_arg(&self, key: &str) -> Option<String> {
        self.arg(key).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// The pod identity, if `K8S_POD_NAMESPACE` and `K8S_POD_NAME` are both set and non-empty.
    ///
    /// The namespace must be a DNS-1123 label and the name a DNS-1123 subdomain (code 4 otherwise).
    pub fn pod_identity(&self) -> Result<Option<PodIdentity>, CniError> {
        let (Some(namespace), Some(name)) = (
            self.nonempty_arg("K8S_POD_NAMESPACE"),
            self.nonempty_arg("K8S_POD_NAME"),
        ) else {
            return Ok(None);
        };
        if !is_dns1123_label(&namespace) {
            return Err(CniError::invalid_env(
                "invalid K8S_POD_NAMESPACE",
                format!("CNI_ARGS K8S_POD_NAMESPACE={namespace:?} is not a DNS-1123 label"),
            ));
        }
        if !is_dns1123_subdomain(&name) {
            return Err(CniError::invalid_env(
                "invalid K8S_POD_NAME",
                format!("CNI_ARGS K8S_POD_NAME={name:?} is not a DNS-1123 subdomain"),
            ));
        }
        Ok(Some(PodIdentity {
            namespace,
            name,
            uid: self.nonempty_arg("K8S_POD_UID"),
            infra_container_id: self.nonempty_arg("K8S_POD_INFRA_CONTAINER_ID"),
        }))
    }
}

/// Parses and validates the `CNI_*` environment for its verb.
pub fn parse_env(env: &HashMap<String, String>) -> Result<CniEnv, CniError> {
    let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let command: Command = get("CNI_COMMAND")
        .ok_or_else(|| CniError::invalid_env("required env variables missing", "CNI_COMMAND"))?
        .parse()?;
    let path = get("CNI_PATH").map(str::to_owned);
    if !command.is_per_container() {
        return Ok(CniEnv {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: Vec::new(),
            path,
        });
    }

    let (container_id, netns, ifname) = (get("CNI_CONTAINERID"), get("CNI_NETNS"), get("CNI_IFNAME"));
    let netns_required = command != Command::Del;
    let missing: Vec<&str> = [
        ("CNI_CONTAINERID", container_id.is_none()),
        ("CNI_NETNS", netns_required && netns.is_none()),
        ("CNI_IFNAME", ifname.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    let (Some(container_id), Some(ifname), []) = (container_id, ifname, missing.as_slice()) else {
        return Err(CniError::invalid_env(
            "required env variables missing",
            format!("{} (required for {command})", missing.join(", ")),
        ));
    };
    validate_container_id(container_id)?;
    validate_ifname(ifname)?;
    if let Some(netns) = netns {
        validate_netns(netns)?;
    }
    Ok(CniEnv {
        command,
        container_id: Some(container_id.to_owned()),
        netns: netns.map(str::to_owned),
        ifname: Some(ifname.to_owned()),
        args: parse_cni_args(get("CNI_ARGS").unwrap_or(""))?,
        path,
    })
}

/// Whether `s` matches `[a-zA-Z0-9][a-zA-Z0-9_.\-]*` (container IDs and network names).
pub fn is_valid_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `CNI_CONTAINERID`: non-empty, `[a-zA-Z0-9][a-zA-Z0-9_.\-]*` (code 4).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if is_valid_identifier(id) {
        Ok(())
    } else {
        Err(CniError::invalid_env(
            "invalid CNI_CONTAINERID",
            format!("CNI_CONTAINERID={id:?} must match [a-zA-Z0-9][a-zA-Z0-9_.\\-]*"),
        ))
    }
}

/// `CNI_IFNAME`: 1..=15 bytes, not `.` or `..`, no `/`, `:` or whitespace (code 4), as libcni.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > 15 {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "must not be . or .."
    } else if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        "must not contain '/', ':' or whitespace"
    } else {
        return Ok(());
    };
    Err(CniError::invalid_env(
        "invalid CNI_IFNAME",
        format!("CNI_IFNAME={name:?} {why}"),
    ))
}

/// `CNI_NETNS`: an absolute path (code 4). Whether it exists is checked elsewhere.
pub fn validate_netns(netns: &str) -> Result<(), CniError> {
    if netns.starts_with('/') {
        Ok(())
    } else {
        Err(CniError::invalid_env(
            "invalid CNI_NETNS",
            format!("CNI_NETNS={netns:?} is not an absolute path"),
        ))
    }
}

/// `CNI_ARGS`: `K=V;K2=V2`. Empty segments are skipped; the value runs to the end of the pair
/// (it may contain `=`); a pair without `=` or with an empty key is an error (code 4).
pub fn parse_cni_args(raw: &str) -> Result<Vec<(String, String)>, CniError> {
    raw.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(CniError::invalid_env(
                "invalid CNI_ARGS",
                format!("CNI_ARGS pair {pair:?} is not of the form KEY=VALUE"),
            )),
        })
        .collect()
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 bytes in all (as Kubernetes checks it).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            b.first().is_some_and(edge) && b.last().is_some_and(edge) && b.iter().all(|c| edge(c) || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::super::error::ERR_INVALID_ENV;
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn add_env() -> HashMap<String, String> {
        env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0.a;K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=abc123"),
        ])
    }

    fn err(e: HashMap<String, String>) -> CniError {
        let err = parse_env(&e).unwrap_err();
        assert_eq!(err.code, ERR_INVALID_ENV, "{err:?}");
        err
    }

    #[test]
    fn commands_round_trip() {
        for c in Command::ALL {
            assert_eq!(c.as_str().parse::<Command>().unwrap(), c);
            assert_eq!(c.to_string(), c.as_str());
        }
        let e = "add".parse::<Command>().unwrap_err();
        assert_eq!(e.code, ERR_INVALID_ENV);
        assert!(e.details.contains("CNI_COMMAND=\"add\""));
    }

    #[test]
    fn full_add() {
        let e = parse_env(&add_env()).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id.as_deref(), Some("abc123"));
        assert_eq!(e.netns.as_deref(), Some("/var/run/netns/x"));
        assert_eq!(e.ifname.as_deref(), Some("eth0"));
        assert_eq!(e.path.as_deref(), Some("/opt/cni/bin"));
        assert_eq!(e.args.len(), 5);
        assert_eq!(e.arg("IgnoreUnknown"), Some("1"));
        let pod = e.pod_identity().unwrap().unwrap();
        assert_eq!(
            pod,
            PodIdentity {
                namespace: "default".into(),
                name: "web-0.a".into(),
                uid: Some("u-1".into()),
                infra_container_id: Some("abc123".into()),
            }
        );
    }

    #[test]
    fn missing_and_unknown_command() {
        let e = err(env(&[]));
        assert!(e.details.contains("CNI_COMMAND"));
        let e = err(env(&[("CNI_COMMAND", "")]));
        assert!(e.details.contains("CNI_COMMAND"));
        let e = err(env(&[("CNI_COMMAND", "FROB")]));
        assert!(e.details.contains("CNI_COMMAND=\"FROB\""));
    }

    #[test]
    fn required_per_verb() {
        for cmd in ["ADD", "CHECK"] {
            let e = err(env(&[("CNI_COMMAND", cmd), ("CNI_IFNAME", "eth0")]));
            assert_eq!(e.details, format!("CNI_CONTAINERID, CNI_NETNS (required for {cmd})"));
        }
        let e = err(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", ""),
        ]));
        assert_eq!(e.details, "CNI_IFNAME (required for DEL)");
        // DEL: netns optional and may be empty.
        let d = parse_env(&env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ""),
        ]))
        .unwrap();
        assert_eq!(d.netns, None);
        // STATUS/GC/VERSION need nothing and ignore container vars (libcni's VERSION probe sends dummies).
        for cmd in ["STATUS", "GC", "VERSION"] {
            let e = parse_env(&env(&[
                ("CNI_COMMAND", cmd),
                ("CNI_NETNS", "dummy"),
                ("CNI_IFNAME", "dummy"),
                ("CNI_ARGS", "broken"),
                ("CNI_PATH", "dummy"),
            ]))
            .unwrap();
            assert_eq!((e.container_id, e.netns, e.ifname), (None, None, None));
            assert!(e.args.is_empty());
            assert_eq!(e.path.as_deref(), Some("dummy"));
        }
    }

    #[test]
    fn container_id_validation() {
        for bad in ["-abc", "a b", "a/b", "_x", "ä"] {
            let mut e = add_env();
            e.insert("CNI_CONTAINERID".into(), bad.into());
            let e = err(e);
            assert!(e.details.contains("CNI_CONTAINERID") && e.details.contains(&format!("{bad:?}")));
        }
        for good in ["a", "0", "a.b-c_d", "ABC.."] {
            validate_container_id(good).unwrap();
        }
    }

    #[test]
    fn ifname_validation() {
        for (bad, why) in [
            ("eth0123456789012", "longer than 15"),
            (".", ". or .."),
            ("..", ". or .."),
            ("a/b", "whitespace"),
            ("a:b", "whitespace"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("", "empty"),
        ] {
            let e = validate_ifname(bad).unwrap_err();
            assert_eq!(e.code, ERR_INVALID_ENV);
            assert!(e.details.starts_with(&format!("CNI_IFNAME={bad:?}")), "{e:?}");
            assert!(e.details.contains(why), "{e:?}");
        }
        validate_ifname("eth01234567890a").unwrap(); // exactly 15
        validate_ifname("...").unwrap();
        let mut e = add_env();
        e.insert("CNI_IFNAME".into(), "bad/name".into());
        assert!(err(e).details.contains("CNI_IFNAME"));
    }

    #[test]
    fn netns_must_be_absolute() {
        let mut e = add_env();
        e.insert("CNI_NETNS".into(), "var/run/netns/x".into());
        assert!(err(e).details.contains("CNI_NETNS=\"var/run/netns/x\""));
    }

    #[test]
    fn cni_args() {
        assert_eq!(
            parse_cni_args("A=1;;B=;C=x=y;").unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), String::new()),
                ("C".into(), "x=y".into()),
            ]
        );
        for bad in ["A=1;novalue", "=v"] {
            let e = parse_cni_args(bad).unwrap_err();
            assert_eq!(e.code, ERR_INVALID_ENV);
            assert!(e.details.contains("CNI_ARGS"));
        }
        let mut e = add_env();
        e.insert("CNI_ARGS".into(), "K=V;oops".into());
        assert!(err(e).details.contains("\"oops\""));
    }

    #[test]
    fn pod_identity_rules() {
        let with_args = |args: &str| {
            let mut e = add_env();
            e.insert("CNI_ARGS".into(), args.into());
            parse_env(&e).unwrap()
        };
        assert_eq!(with_args("K8S_POD_NAME=x").pod_identity().unwrap(), None);
        assert_eq!(
            with_args("K8S_POD_NAMESPACE=x;K8S_POD_NAME=").pod_identity().unwrap(),
            None
        );
        let p = with_args("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=")
            .pod_identity()
            .unwrap()
            .unwrap();
        assert_eq!((p.uid, p.infra_container_id), (None, None));
        let e = with_args("K8S_POD_NAMESPACE=Bad;K8S_POD_NAME=p")
            .pod_identity()
            .unwrap_err();
        assert_eq!(e.code, ERR_INVALID_ENV);
        assert!(e.details.contains("K8S_POD_NAMESPACE=\"Bad\""));
        let e = with_args("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=a..b")
            .pod_identity()
            .unwrap_err();
        assert!(e.details.contains("K8S_POD_NAME=\"a..b\""));
    }

    #[test]
    fn dns1123() {
        assert!(is_dns1123_label("a-1"));
        assert!(is_dns1123_label(&"a".repeat(63)));
        for bad in ["", "-a", "a-", "A", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("web-0.svc.x"));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        for bad in ["", ".a", "a.", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
    }
}
