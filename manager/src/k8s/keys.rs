//! Store keys ↔ Kubernetes objects, for the state lanesd writes (pure).
//!
//! A key is `<folder>/<rest>`: the folder picks the kind (`ipam/blocks/` → `IPAMBlock`), `rest`
//! becomes the object name when it is already a valid one (`10.244.1.64-26`, `node1`), else a
//! readable, DNS-safe form plus a hash of the key, so distinct keys never share a name. The key
//! itself rides in an annotation (the name is not always reversible), and the folder below the
//! kind's (`secondary/<node>/`) in a label, so `list("secondary/node1/")` is one labelled LIST.

use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// Annotation holding the store key of a state object.
pub const KEY_ANNOTATION: &str = "lanes.dev/key";
/// Label holding the sub-folder of a state object ("" for none).
pub const DIR_LABEL: &str = "lanes.dev/dir";
/// Annotation of a soft-deleted object: gone for readers, deleted by UID next.
pub const DELETED_ANNOTATION: &str = "lanes.dev/deleted";

/// One kind of state object and the key folder it holds.
#[derive(Debug, PartialEq, Eq)]
pub struct StateKind {
    pub prefix: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

pub const STATE_KINDS: &[StateKind] = &[
    StateKind {
        prefix: "ipam/blocks/",
        kind: "IPAMBlock",
        plural: "ipamblocks",
    },
    StateKind {
        prefix: "nodes/",
        kind: "NodeState",
        plural: "nodestates",
    },
    StateKind {
        prefix: "secondary/",
        kind: "SecondaryAttachment",
        plural: "secondaryattachments",
    },
];

/// Where one key lives.
#[derive(Debug, PartialEq, Eq)]
pub struct Located {
    pub kind: &'static StateKind,
    pub name: String,
    /// Value of [`DIR_LABEL`].
    pub dir: String,
}

/// The object for `key`.
pub fn locate(key: &str) -> Result<Located, StoreError> {
    let (kind, rest) = split(key)?;
    if rest.is_empty() || rest.ends_with('/') {
        return Err(invalid(key, "names a folder, not a key"));
    }
    let dir = rest.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    Ok(Located {
        kind,
        name: object_name(key, rest),
        dir: label_value(dir),
    })
}

/// The kind and [`DIR_LABEL`] value (None: the whole kind) that a folder prefix lists.
pub fn folder(prefix: &str) -> Result<(&'static StateKind, Option<String>), StoreError> {
    let (kind, rest) = split(prefix)?;
    match rest {
        "" => Ok((kind, None)),
        dir if dir.ends_with('/') && !dir[..dir.len() - 1].contains('/') => {
            Ok((kind, Some(label_value(&dir[..dir.len() - 1]))))
        }
        _ => Err(invalid(
            prefix,
            "list takes a folder: `<kind folder>/` or `<kind folder>/<dir>/`",
        )),
    }
}

fn split(key: &str) -> Result<(&'static StateKind, &str), StoreError> {
    STATE_KINDS
        .iter()
        .find_map(|k| key.strip_prefix(k.prefix).map(|rest| (k, rest)))
        .ok_or_else(|| {
            let known: Vec<&str> = STATE_KINDS.iter().map(|k| k.prefix).collect();
            invalid(
                key,
                &format!("no Kubernetes kind holds it; folders: {}", known.join(", ")),
            )
        })
}

fn invalid(key: &str, reason: &str) -> StoreError {
    StoreError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// `rest` itself when it is a DNS subdomain, else a readable form with a hash of the whole key.
fn object_name(key: &str, rest: &str) -> String {
    if is_dns_subdomain(rest) {
        return rest.to_string();
    }
    let readable: String = rest
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.') => c,
            _ => '-',
        })
        .take(200)
        .collect();
    let readable = readable.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = hex(&Sha256::digest(key.as_bytes())[..5]);
    match readable {
        "" => format!("k-{hash}"),
        r => format!("{r}-{hash}"),
    }
}

/// A label value: the text itself when valid (≤ 63 of `[A-Za-z0-9._-]`, alphanumeric ends),
/// else a hash of it (a label only narrows a LIST; the key annotation is checked after).
fn label_value(dir: &str) -> String {
    let valid = dir.is_empty()
        || (dir.len() <= 63
            && dir.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && dir.as_bytes()[0].is_ascii_alphanumeric()
            && dir.as_bytes()[dir.len() - 1].is_ascii_alphanumeric());
    if valid {
        dir.to_string()
    } else {
        format!("h{}", hex(&Sha256::digest(dir.as_bytes())[..12]))
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_keys_keep_their_name() {
        let b = locate("ipam/blocks/10.244.1.64-26").unwrap();
        assert_eq!(
            (b.kind.kind, b.name.as_str(), b.dir.as_str()),
            ("IPAMBlock", "10.244.1.64-26", "")
        );
        let n = locate("nodes/node1").unwrap();
        assert_eq!((n.kind.plural, n.name.as_str()), ("nodestates", "node1"));
    }

    #[test]
    fn other_keys_get_a_safe_unique_name_and_a_dir_label() {
        let a = locate("secondary/node1/ctr-A_1.eth1").unwrap();
        assert_eq!(a.kind.kind, "SecondaryAttachment");
        assert_eq!(a.dir, "node1");
        assert!(a.name.starts_with("node1-ctr-a-1.eth1-"), "{}", a.name);
        assert!(is_dns_subdomain(&a.name), "{}", a.name);
        // Same readable form, different keys: different names.
        let b = locate("secondary/node1/ctr-a_1.eth1").unwrap();
        assert_ne!(a.name, b.name);
        let v6 = locate("ipam/blocks/fd00::40-122").unwrap();
        assert!(
            is_dns_subdomain(&v6.name) && v6.name.starts_with("fd00--40-122-"),
            "{}",
            v6.name
        );
        let odd = locate("secondary/n/___").unwrap();
        assert!(
            odd.name.starts_with("n-") && is_dns_subdomain(&odd.name),
            "{}",
            odd.name
        );
    }

    #[test]
    fn long_or_odd_dirs_are_hashed_into_a_label() {
        let long = "n".repeat(100);
        let a = locate(&format!("secondary/{long}/c.eth1")).unwrap();
        assert!(a.dir.len() <= 63 && a.dir.starts_with('h'));
        let (kind, dir) = folder(&format!("secondary/{long}/")).unwrap();
        assert_eq!((kind.kind, dir), ("SecondaryAttachment", Some(a.dir)));
    }

    #[test]
    fn folders_and_bad_keys() {
        assert_eq!(folder("ipam/blocks/").unwrap().1, None);
        assert_eq!(folder("secondary/node1/").unwrap().1.as_deref(), Some("node1"));
        for bad in ["pods/x", "ipam/blocks/", "secondary/a/b/", "", "ipam/x"] {
            assert!(matches!(locate(bad), Err(StoreError::InvalidKey { .. })), "{bad}");
        }
        for bad in ["secondary/a/b/", "nodes/x", "other/"] {
            assert!(folder(bad).is_err(), "{bad}");
        }
    }
}
