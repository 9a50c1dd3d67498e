//! `IPAMConfig` (Calico's v3 API calls the kind `IPAMConfiguration`; both names are accepted):
//! the cluster-wide IPAM knobs. A singleton named `default`; when no document exists the
//! defaults apply.

use super::meta::{FieldError, Obj, ObjectMeta};

/// Cluster-wide IPAM settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// Never borrow addresses from another node's blocks.
    pub strict_affinity: bool,
    /// Blocks one node may hold; 0 means no limit.
    pub max_blocks_per_host: u32,
    /// Claim new blocks when a node's blocks are full.
    pub auto_allocate_blocks: bool,
}

impl Default for IpamConfig {
    fn default() -> Self {
        Self {
            strict_affinity: false,
            max_blocks_per_host: 0,
            auto_allocate_blocks: true,
        }
    }
}

impl IpamConfig {
    /// The block limit per node, `None` when unlimited.
    pub fn max_blocks(&self) -> Option<u32> {
        (self.max_blocks_per_host > 0).then_some(self.max_blocks_per_host)
    }
}

/// The one name Calico allows for this singleton.
pub const IPAM_CONFIG_NAME: &str = "default";

pub(crate) fn parse(meta: &ObjectMeta, top: &Obj<'_>) -> Result<IpamConfig, FieldError> {
    if meta.name != IPAM_CONFIG_NAME {
        return Err(FieldError::new(
            "metadata.name",
            meta.name.as_str(),
            "IPAMConfig is a singleton: its name must be \"default\"",
        ));
    }
    let spec = top.obj("spec")?;
    spec.deny_unknown(&["strictAffinity", "maxBlocksPerHost", "autoAllocateBlocks"])?;
    let max_blocks_per_host = match spec.int("maxBlocksPerHost")? {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| {
            FieldError::new(
                "spec.maxBlocksPerHost",
                n.to_string(),
                "must be 0 (unlimited) or a positive number of blocks",
            )
        })?,
    };
    let defaults = IpamConfig::default();
    Ok(IpamConfig {
        strict_affinity: spec.bool("strictAffinity")?.unwrap_or(defaults.strict_affinity),
        max_blocks_per_host,
        auto_allocate_blocks: spec
            .bool("autoAllocateBlocks")?
            .unwrap_or(defaults.auto_allocate_blocks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config(name: &str, spec: Value) -> Result<IpamConfig, FieldError> {
        let doc = json!({"metadata": {"name": name}, "spec": spec});
        let top = Obj::new("", Some(&doc)).unwrap();
        let meta = ObjectMeta::parse(&top, false).unwrap();
        parse(&meta, &top)
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(config("default", Value::Null).unwrap(), IpamConfig::default());
        assert_eq!(IpamConfig::default().max_blocks(), None);
        let c = config(
            "default",
            json!({"strictAffinity": true, "maxBlocksPerHost": 4, "autoAllocateBlocks": false}),
        )
        .unwrap();
        assert!(c.strict_affinity && !c.auto_allocate_blocks);
        assert_eq!(c.max_blocks(), Some(4));
    }

    #[test]
    fn rejections() {
        let cases = [
            ("cluster", json!({}), "metadata.name", "singleton"),
            (
                "default",
                json!({"maxBlocksPerHost": -1}),
                "spec.maxBlocksPerHost",
                "positive",
            ),
            (
                "default",
                json!({"maxBlocksPerHost": 1.5}),
                "spec.maxBlocksPerHost",
                "integer",
            ),
            (
                "default",
                json!({"strictAffinity": "true"}),
                "spec.strictAffinity",
                "true or false",
            ),
            (
                "default",
                json!({"strictAffinty": true}),
                "spec.strictAffinty",
                "strictAffinity",
            ),
        ];
        for (name, spec, field, fragment) in cases {
            let err = config(name, spec.clone()).unwrap_err();
            assert_eq!(err.field, field, "{spec}");
            assert!(err.reason.contains(fragment), "{spec}: {}", err.reason);
        }
    }
}
