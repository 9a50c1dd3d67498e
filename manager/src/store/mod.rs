//! Datastores: where daemon state (IPAM blocks, affinities, allocations)
//! lives, behind one small trait with revisions and compare-and-swap.
//!
//! Backends: `file` (this module's [`file::FileStore`], the embedded default)
//! and `kubernetes` ([`crate::k8s::store::KubeStore`], custom resources). Values
//! are JSON documents; a revision is an
//! opaque string that changes on every write of a key, so `update` and
//! `delete` can refuse to overwrite what someone else wrote since we read it.

#[cfg(test)]
pub(crate) mod conformance;
pub mod file;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};

/// Opaque version of one key's value (file: a number; kubernetes: resourceVersion).
pub type Revision = String;

/// One stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: serde_json::Value,
    pub revision: Revision,
}

impl Entry {
    /// Decode the value into a typed record, naming the key when it doesn't fit.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_value(self.value.clone()).map_err(|e| StoreError::Corrupt {
            key: self.key.clone(),
            reason: e.to_string(),
        })
    }
}

/// What a watcher sees.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Put(Entry),
    Deleted { key: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key}: revision conflict (changed since it was read)")]
    Conflict { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: invalid key: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("{key}: stored value is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The datastore contract every backend implements (`conformance.rs` is the one
/// suite both backends pass).
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The key's value and revision, or None.
    async fn get(&self, key: &str) -> Result<Option<Entry>>;
    /// Every key under `prefix` (a `/`-separated folder, e.g. `ipam/blocks/`).
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>>;
    /// The keys under `prefix`, without reading values (cheap existence scans).
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>>;
    /// Create the key; `AlreadyExists` if it is there.
    async fn create(&self, key: &str, value: &serde_json::Value) -> Result<Revision>;
    /// Replace the value only if the stored revision is still `expected`.
    async fn update(&self, key: &str, value: &serde_json::Value, expected: &Revision) -> Result<Revision>;
    /// Delete only if the stored revision is still `expected`.
    async fn delete(&self, key: &str, expected: &Revision) -> Result<()>;
    /// Changes under `prefix` from now on (best effort; resync with `list`).
    fn watch(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent>;
}

/// Serialize a typed record for the store.
pub fn to_value<T: Serialize>(key: &str, v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}
