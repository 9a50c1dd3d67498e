//! CNI spec versions: which ones we speak, how one is selected, and the VERSION answer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::CniError;

/// The spec versions this plugin speaks, oldest first (the VERSION answer's `supportedVersions`).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A spec version `major.minor.patch`, ordered numerically.
///
/// Any `x.y.z` parses; [`SpecVersion::is_supported`] tells whether we speak it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

const SUPPORTED: [SpecVersion; 5] = [
    SpecVersion::V0_3_0,
    SpecVersion::V0_3_1,
    SpecVersion::V0_4_0,
    SpecVersion::V1_0_0,
    SpecVersion::V1_1_0,
];

impl SpecVersion {
    pub const V0_3_0: Self = Self::new(0, 3, 0);
    pub const V0_3_1: Self = Self::new(0, 3, 1);
    pub const V0_4_0: Self = Self::new(0, 4, 0);
    pub const V1_0_0: Self = Self::new(1, 0, 0);
    pub const V1_1_0: Self = Self::new(1, 1, 0);
    /// The newest version we speak.
    pub const LATEST: Self = Self::V1_1_0;

    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Parses exactly three dot-separated decimal numbers.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse::<u32>().ok()
            }
        });
        let v = Self::new(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }

    /// Whether this is one of [`SUPPORTED_VERSIONS`].
    pub fn is_supported(self) -> bool {
        SUPPORTED.contains(&self)
    }

    /// CHECK exists from 0.4.0 on.
    pub fn allows_check(self) -> bool {
        self >= Self::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn allows_status_gc(self) -> bool {
        self >= Self::V1_1_0
    }

    /// Results carry `ips[].version` before 1.0.0.
    pub fn has_ip_version_field(self) -> bool {
        self < Self::V1_0_0
    }

    /// Results may carry `interfaces[].mtu/socketPath/pciID` and `routes[].mtu/advmss/priority/table/scope`.
    pub fn has_1_1_fields(self) -> bool {
        self >= Self::V1_1_0
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for SpecVersion {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, CniError> {
        Self::parse(s).ok_or_else(|| {
            CniError::incompatible_version(
                "invalid CNI version",
                format!("{s:?} is not a version of the form x.y.z"),
            )
        })
    }
}

impl Serialize for SpecVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid CNI version {s:?}")))
    }
}

/// Spec 1.1 selection: the highest supported version among `cniVersion` and `cniVersions`.
///
/// Unknown or malformed entries are ignored as long as one entry is supported. An empty
/// `cniVersion` counts as missing.
pub fn select_version(cni_version: Option<&str>, cni_versions: &[String]) -> Result<SpecVersion, CniError> {
    let cni_version = cni_version.filter(|v| !v.is_empty());
    if cni_version.is_none() && cni_versions.is_empty() {
        return Err(CniError::invalid_config(
            "cniVersion missing",
            "network config has neither `cniVersion` nor `cniVersions`",
        ));
    }
    let requested = cni_version.into_iter().chain(cni_versions.iter().map(String::as_str));
    if let Some(v) = requested
        .clone()
        .filter_map(SpecVersion::parse)
        .filter(|v| v.is_supported())
        .max()
    {
        return Ok(v);
    }
    let asked: Vec<String> = requested.map(|v| format!("{v:?}")).collect();
    Err(CniError::incompatible_version(
        "incompatible CNI versions",
        format!(
            "config requests {}; this plugin supports {}",
            asked.join(", "),
            SUPPORTED_VERSIONS.join(", ")
        ),
    ))
}

/// The `cniVersion` of a request as given, for echoing in VERSION answers and error results:
/// the input's value if it is a string of the form `x.y.z`, otherwise `"1.1.0"`.
pub fn input_cni_version(input: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| match v.get("cniVersion") {
            Some(serde_json::Value::String(s)) if SpecVersion::parse(s).is_some() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| SpecVersion::LATEST.to_string())
}

/// The VERSION answer: `{"cniVersion":<input's cniVersion or "1.1.0">,"supportedVersions":[..]}`.
pub fn version_output(input: &[u8]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Answer {
        #[serde(rename = "cniVersion")]
        cni_version: String,
        #[serde(rename = "supportedVersions")]
        supported_versions: &'static [&'static str],
    }
    let answer = Answer {
        cni_version: input_cni_version(input),
        supported_versions: SUPPORTED_VERSIONS,
    };
    serde_json::to_vec(&answer).expect("serializing strings cannot fail")
}

#[cfg(test)]
mod tests {
    use super::super::error::{ERR_INCOMPATIBLE_VERSION, ERR_INVALID_CONFIG};
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn supported_list_matches_constants() {
        let parsed: Vec<SpecVersion> = SUPPORTED_VERSIONS.iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(parsed, SUPPORTED);
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*parsed.last().unwrap(), SpecVersion::LATEST);
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(SpecVersion::parse("0.3.1"), Some(SpecVersion::V0_3_1));
        assert_eq!(SpecVersion::parse("10.20.30").unwrap().to_string(), "10.20.30");
        for bad in ["", "1", "1.0", "1.0.0.0", "1..0", "a.b.c", "+1.0.0", "1.0.0 ", "1.-1.0"] {
            assert_eq!(SpecVersion::parse(bad), None, "{bad:?}");
            assert_eq!(bad.parse::<SpecVersion>().unwrap_err().code, ERR_INCOMPATIBLE_VERSION);
        }
        assert!(SpecVersion::parse("0.10.0").unwrap() > SpecVersion::V0_4_0);
        assert!(!SpecVersion::parse("0.2.0").unwrap().is_supported());
    }

    #[test]
    fn helpers() {
        assert!(!SpecVersion::V0_3_1.allows_check());
        assert!(SpecVersion::V0_4_0.allows_check());
        assert!(!SpecVersion::V1_0_0.allows_status_gc());
        assert!(SpecVersion::V1_1_0.allows_status_gc());
        assert!(SpecVersion::V0_4_0.has_ip_version_field());
        assert!(!SpecVersion::V1_0_0.has_ip_version_field());
        assert!(!SpecVersion::V1_0_0.has_1_1_fields());
        assert!(SpecVersion::V1_1_0.has_1_1_fields());
    }

    #[test]
    fn serde_as_string() {
        assert_eq!(serde_json::to_string(&SpecVersion::V0_4_0).unwrap(), "\"0.4.0\"");
        let v: SpecVersion = serde_json::from_str("\"1.1.0\"").unwrap();
        assert_eq!(v, SpecVersion::V1_1_0);
        assert!(serde_json::from_str::<SpecVersion>("\"x\"").is_err());
    }

    #[test]
    fn select_highest_supported() {
        assert_eq!(select_version(Some("0.4.0"), &[]).unwrap(), SpecVersion::V0_4_0);
        let list = strings(&["0.3.1", "1.1.0", "1.0.0"]);
        assert_eq!(select_version(Some("0.4.0"), &list).unwrap(), SpecVersion::V1_1_0);
        assert_eq!(select_version(None, &list).unwrap(), SpecVersion::V1_1_0);
        // Unknown versions are ignored when another one is supported.
        let list = strings(&["2.0.0", "garbage", "1.0.0"]);
        assert_eq!(select_version(Some("1.2.0"), &list).unwrap(), SpecVersion::V1_0_0);
    }

    #[test]
    fn select_none_supported() {
        let e = select_version(Some("0.2.0"), &strings(&["9.9.9"])).unwrap_err();
        assert_eq!(e.code, ERR_INCOMPATIBLE_VERSION);
        assert!(e.details.contains("\"0.2.0\", \"9.9.9\""), "{}", e.details);
        assert!(e.details.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"), "{}", e.details);
    }

    #[test]
    fn select_missing() {
        for v in [None, Some("")] {
            let e = select_version(v, &[]).unwrap_err();
            assert_eq!(e.code, ERR_INVALID_CONFIG);
            assert_eq!(e.msg, "cniVersion missing");
        }
    }

    #[test]
    fn version_answer() {
        let out = version_output(br#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
        // Echoes unsupported but well-formed versions, as the spec asks.
        let v: serde_json::Value = serde_json::from_slice(&version_output(br#"{"cniVersion":"0.2.0"}"#)).unwrap();
        assert_eq!(v["cniVersion"], "0.2.0");
        for input in [
            &b""[..],
            b"{}",
            b"not json",
            br#"{"cniVersion":7}"#,
            br#"{"cniVersion":"x"}"#,
            b"[]",
            br#"["1.0.0"]"#,
        ] {
            let v: serde_json::Value = serde_json::from_slice(&version_output(input)).unwrap();
            assert_eq!(v["cniVersion"], "1.1.0", "{input:?}");
        }
    }
}
