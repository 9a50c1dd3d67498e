//! The `kubernetes` datastore: [`StateStore`] on custom resources (see [`super::keys`]).
//!
//! - A revision is the object's `resourceVersion`; `update` is a PUT carrying the expected one,
//!   so the API server refuses it with 409 when someone wrote in between (compare-and-swap).
//! - `delete` is done as Calico's IPAM does it: a CAS update that marks the object deleted
//!   (the part that must be conditional on the revision), then a DELETE preconditioned on the
//!   object's UID. Readers treat a marked object as absent; if lanesd dies in between, the next
//!   `create` of the key (or `list`) finishes the delete, again by UID, so a newer object of the
//!   same name can never be removed by mistake.
//! - Every call except watches waits for the rate limiter and has a deadline.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{json, Value};

use super::keys::{self, StateKind, DELETED_ANNOTATION, DIR_LABEL, KEY_ANNOTATION};
use super::Limits;
use crate::store::{Entry, Revision, StateStore, StoreError, WatchEvent};

pub struct KubeStore {
    client: kube::Client,
    limits: Arc<Limits>,
}

impl KubeStore {
    pub fn new(client: kube::Client, limits: Arc<Limits>) -> Self {
        KubeStore { client, limits }
    }

    fn api(&self, kind: &StateKind) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &api_resource(kind))
    }

    /// One API call under the rate limit and deadline; kube errors become store errors for `key`.
    async fn call<T>(
        &self,
        key: &str,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, StoreError> {
        self.limits.run(fut).await.map_err(|e| store_error(key, e))
    }

    /// DELETE by UID: only the object we marked can go, never a newer one of the same name.
    async fn delete_by_uid(
        &self,
        kind: &StateKind,
        key: &str,
        name: &str,
        uid: Option<String>,
    ) -> Result<(), StoreError> {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.call(key, self.api(kind).delete(name, &dp)).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Finishes deletes that a crash interrupted (best effort; readers ignore them anyway).
    async fn reap(&self, kind: &StateKind, key: &str, objects: &[DynamicObject]) {
        for obj in objects.iter().filter(|o| is_deleted(o)) {
            let name = obj.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.delete_by_uid(kind, key, &name, obj.metadata.uid.clone()).await {
                tracing::debug!(%key, %name, error = %e, "soft-deleted object not removed yet");
            }
        }
    }

    async fn list_objects(&self, prefix: &str) -> Result<(&'static StateKind, Vec<DynamicObject>), StoreError> {
        let (kind, dir) = keys::folder(prefix)?;
        let lp = match dir {
            Some(dir) => ListParams::default().labels(&format!("{DIR_LABEL}={dir}")),
            None => ListParams::default(),
        };
        let list = self.call(prefix, self.api(kind).list(&lp)).await?;
        Ok((kind, list.items))
    }
}

/// The API resource of one state kind.
pub fn api_resource(kind: &StateKind) -> ApiResource {
    ApiResource {
        group: super::crds::GROUP.into(),
        version: "v1".into(),
        api_version: format!("{}/v1", super::crds::GROUP),
        kind: kind.kind.into(),
        plural: kind.plural.into(),
    }
}

fn store_error(key: &str, e: kube::Error) -> StoreError {
    match &e {
        kube::Error::Api(s) if s.is_already_exists() => StoreError::AlreadyExists { key: key.into() },
        kube::Error::Api(s) if s.is_conflict() => StoreError::Conflict { key: key.into() },
        kube::Error::Api(s) if s.is_not_found() => StoreError::NotFound { key: key.into() },
        _ => StoreError::Unavailable(format!("{key}: {e}")),
    }
}

fn is_deleted(obj: &DynamicObject) -> bool {
    obj.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(DELETED_ANNOTATION).is_some_and(|v| v == "true"))
}

fn key_of(obj: &DynamicObject) -> Option<&str> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(KEY_ANNOTATION)
        .map(String::as_str)
}

/// The entry an object holds, if it is a live object for a key under `prefix`.
fn entry_of(obj: DynamicObject, prefix: &str) -> Option<Entry> {
    if is_deleted(&obj) {
        return None;
    }
    let key = key_of(&obj)?.to_string();
    // A folder's own keys only, not its sub-folders' (what the file datastore's directories do).
    if key.strip_prefix(prefix).is_none_or(|rest| rest.contains('/')) {
        return None;
    }
    Some(Entry {
        key,
        revision: obj.metadata.resource_version.clone().unwrap_or_default(),
        value: obj.data.get("spec").cloned().unwrap_or(Value::Null),
    })
}

/// The object for `key` holding `value` (with `resource_version` for a CAS update).
fn object(key: &str, value: &Value, resource_version: Option<&str>) -> Result<DynamicObject, StoreError> {
    let loc = keys::locate(key)?;
    let mut obj = DynamicObject::new(&loc.name, &api_resource(loc.kind)).data(json!({ "spec": value }));
    obj.metadata.labels = Some([(DIR_LABEL.to_string(), loc.dir)].into());
    obj.metadata.annotations = Some([(KEY_ANNOTATION.to_string(), key.to_string())].into());
    obj.metadata.resource_version = resource_version.map(str::to_string);
    Ok(obj)
}

#[async_trait]
impl StateStore for KubeStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let loc = keys::locate(key)?;
        let obj = self.call(key, self.api(loc.kind).get_opt(&loc.name)).await?;
        // Another key that hashed to the same name would be a bug, not this key's value.
        Ok(obj.filter(|o| key_of(o) == Some(key)).and_then(|o| entry_of(o, key)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let (kind, objects) = self.list_objects(prefix).await?;
        self.reap(kind, prefix, &objects).await;
        let mut entries: Vec<Entry> = objects.into_iter().filter_map(|o| entry_of(o, prefix)).collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list(prefix).await?.into_iter().map(|e| e.key).collect())
    }

    async fn create(&self, key: &str, value: &Value) -> Result<Revision, StoreError> {
        let loc = keys::locate(key)?;
        let obj = object(key, value, None)?;
        let api = self.api(loc.kind);
        for _ in 0..2 {
            match self.call(key, api.create(&PostParams::default(), &obj)).await {
                Ok(made) => return Ok(made.metadata.resource_version.unwrap_or_default()),
                Err(StoreError::AlreadyExists { .. }) => {
                    // A soft-deleted leftover is no value: finish its delete and create again.
                    match self.call(key, api.get_opt(&loc.name)).await? {
                        Some(old) if is_deleted(&old) => {
                            self.delete_by_uid(loc.kind, key, &loc.name, old.metadata.uid.clone())
                                .await?
                        }
                        None => {}
                        Some(_) => return Err(StoreError::AlreadyExists { key: key.into() }),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::AlreadyExists { key: key.into() })
    }

    async fn update(&self, key: &str, value: &Value, expected: &Revision) -> Result<Revision, StoreError> {
        let loc = keys::locate(key)?;
        let obj = object(key, value, Some(expected))?;
        let done = self
            .call(key, self.api(loc.kind).replace(&loc.name, &PostParams::default(), &obj))
            .await?;
        Ok(done.metadata.resource_version.unwrap_or_default())
    }

    async fn delete(&self, key: &str, expected: &Revision) -> Result<(), StoreError> {
        let loc = keys::locate(key)?;
        let api = self.api(loc.kind);
        // The CAS part: only the revision we read may be marked.
        let current = self
            .call(key, api.get_opt(&loc.name))
            .await?
            .filter(|o| !is_deleted(o))
            .ok_or_else(|| StoreError::NotFound { key: key.into() })?;
        let mut marked = object(key, current.data.get("spec").unwrap_or(&Value::Null), Some(expected))?;
        if let Some(a) = marked.metadata.annotations.as_mut() {
            a.insert(DELETED_ANNOTATION.into(), "true".into());
        }
        let marked = self
            .call(key, api.replace(&loc.name, &PostParams::default(), &marked))
            .await?;
        self.delete_by_uid(loc.kind, key, &loc.name, marked.metadata.uid).await
    }

    fn watch(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let (kind, dir) = match keys::folder(prefix) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "cannot watch");
                return rx;
            }
        };
        let mut config = watcher::Config::default();
        if let Some(dir) = dir {
            config = config.labels(&format!("{DIR_LABEL}={dir}"));
        }
        let api = self.api(kind);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut events = watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                let out: Vec<WatchEvent> = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let key = key_of(&o).map(str::to_string);
                        match (entry_of(o, &prefix), key) {
                            (Some(e), _) => vec![WatchEvent::Put(e)],
                            (None, Some(key)) if key.starts_with(&prefix) => vec![WatchEvent::Deleted { key }],
                            _ => vec![],
                        }
                    }
                    Ok(watcher::Event::Delete(o)) => match key_of(&o) {
                        Some(key) if key.starts_with(&prefix) => vec![WatchEvent::Deleted { key: key.into() }],
                        _ => vec![],
                    },
                    Ok(_) => vec![],
                    Err(e) => {
                        tracing::debug!(%prefix, error = %e, "state watch error; the watcher retries");
                        vec![]
                    }
                };
                for ev in out {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}
