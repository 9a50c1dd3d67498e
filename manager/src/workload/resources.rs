//! The resource snapshot for the daemon: the store directory's YAML, re-read
//! when a file changes, published on a watch channel. A bad document is
//! logged (and sent as an event) and the last good state stays.
//!
//! Pools' `cidr` and `blockSize` ([`PoolPin`]s) are kept in the state store under
//! [`POOL_PINS_KEY`], so their immutability holds across restarts: a pool edited while
//! lanesd was down is refused when it starts, as it would have been while running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::resources::{Loader, PoolPin, Rejection, Resources};
use crate::store::{Revision, StateStore};
use lanes_proto::v1 as pb;

/// The state store key of the pools' pins.
pub const POOL_PINS_KEY: &str = "resources/pool-pins";

type Pins = BTreeMap<String, PoolPin>;

/// How often the store directory is looked at; a change is picked up within this.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// (name, mtime, size) of each YAML file: cheap to compare, changes on every write.
type Fingerprint = BTreeMap<String, (SystemTime, u64)>;

pub struct ResourceWatcher {
    dir: PathBuf,
    loader: Loader,
    fingerprint: Option<Fingerprint>,
    tx: watch::Sender<Arc<Resources>>,
    rejected: watch::Sender<Vec<String>>,
    store: Arc<dyn StateStore>,
    /// The pins as last written, and their revision (`None`: not in the store yet).
    saved: (Pins, Option<Revision>),
}

impl ResourceWatcher {
    /// Load once now (so the daemon starts with the current state) and return
    /// the watcher plus receivers for the snapshot and the current rejections.
    pub async fn start(
        dir: &Path,
        store: Arc<dyn StateStore>,
    ) -> (Self, watch::Receiver<Arc<Resources>>, watch::Receiver<Vec<String>>) {
        let (tx, rx) = watch::channel(Arc::new(Resources::default()));
        let (rtx, rrx) = watch::channel(Vec::new());
        let saved = read_pins(store.as_ref()).await;
        let mut w = ResourceWatcher {
            dir: dir.to_path_buf(),
            loader: Loader::with_pins(saved.0.clone()),
            fingerprint: None,
            tx,
            rejected: rtx,
            store,
            saved,
        };
        w.poll(None);
        w.save_pins().await;
        (w, rx, rrx)
    }

    /// Writes the loader's pins when they differ from the stored ones. A failure is logged
    /// and retried after the next poll.
    async fn save_pins(&mut self) {
        let pins = self.loader.pins();
        if *pins == self.saved.0 {
            return;
        }
        let value = match serde_json::to_value(pins) {
            Ok(v) => v,
            Err(e) => return tracing::error!(error = %e, "cannot encode the pool pins"),
        };
        let written = match &self.saved.1 {
            None => self.store.create(POOL_PINS_KEY, &value).await,
            Some(rev) => self.store.update(POOL_PINS_KEY, &value, rev).await,
        };
        match written {
            Ok(rev) => self.saved = (pins.clone(), Some(rev)),
            Err(e) => {
                // Another lanesd on this store may have written them: start from its version.
                tracing::warn!(error = %e, key = POOL_PINS_KEY, "pool pins not saved; retrying");
                self.saved = read_pins(self.store.as_ref()).await;
            }
        }
    }

    /// Re-read when the directory changed.
    pub fn poll(&mut self, events: Option<&broadcast::Sender<pb::Event>>) {
        let fp = fingerprint(&self.dir);
        if self.fingerprint.as_ref() == Some(&fp) {
            return;
        }
        self.fingerprint = Some(fp);
        match self.loader.reload(&self.dir) {
            Ok(out) => {
                let rejected: Vec<String> = out.rejections.iter().map(Rejection::to_string).collect();
                for r in &rejected {
                    tracing::warn!(rejection = %r, "resource rejected; keeping the last good state");
                    send(events, "resource-rejected", r.clone());
                }
                self.rejected.send_replace(rejected);
                if out.changed {
                    tracing::info!(
                        pools = out.resources.pools.len(),
                        nodes = out.resources.nodes.len(),
                        pods = out.resources.pods.len(),
                        "resources loaded"
                    );
                    send(
                        events,
                        "resources-reloaded",
                        format!("{} pool(s)", out.resources.pools.len()),
                    );
                    self.tx.send_replace(Arc::new(out.resources));
                }
            }
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the store directory"),
        }
    }

    pub async fn run(mut self, events: broadcast::Sender<pb::Event>) {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            self.poll(Some(&events));
            self.save_pins().await;
        }
    }
}

/// The stored pins and their revision; none when absent or unreadable (logged).
async fn read_pins(store: &dyn StateStore) -> (Pins, Option<Revision>) {
    match store.get(POOL_PINS_KEY).await {
        Ok(Some(entry)) => match entry.decode::<Pins>() {
            Ok(pins) => (pins, Some(entry.revision)),
            Err(e) => {
                tracing::warn!(error = %e, key = POOL_PINS_KEY, "pool pins unreadable; starting without them");
                (Pins::new(), Some(entry.revision))
            }
        },
        Ok(None) => (Pins::new(), None),
        Err(e) => {
            tracing::warn!(error = %e, key = POOL_PINS_KEY, "pool pins unreadable; starting without them");
            (Pins::new(), None)
        }
    }
}

fn send(events: Option<&broadcast::Sender<pb::Event>>, kind: &str, message: String) {
    if let Some(tx) = events {
        let _ = tx.send(pb::Event {
            time_unix_ms: super::now_unix_ms(),
            kind: kind.into(),
            message,
            ..Default::default()
        });
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut fp = Fingerprint::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            if let Ok(m) = e.metadata() {
                fp.insert(name, (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            }
        }
    }
    fp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::file::FileStore;

    fn pool(cidr: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: {cidr}}}\n")
    }

    #[tokio::test]
    async fn a_pool_edited_while_lanesd_was_down_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), pool("10.0.0.0/16")).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let (_first, resources, _) = ResourceWatcher::start(dir.path(), store.clone()).await;
        assert!(resources.borrow().pools.contains_key("p"));
        drop(_first);

        std::fs::write(dir.path().join("p.yaml"), pool("10.1.0.0/16")).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let (_second, resources, rejected) = ResourceWatcher::start(dir.path(), store).await;
        assert!(resources.borrow().pools.is_empty());
        let rejected = rejected.borrow().join("; ");
        assert!(
            rejected.contains("spec.cidr") && rejected.contains("immutable: was 10.0.0.0/16"),
            "{rejected}"
        );
    }

    #[tokio::test]
    async fn pins_follow_the_pools_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), pool("10.0.0.0/16")).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let (mut watcher, _, _) = ResourceWatcher::start(dir.path(), store.clone()).await;
        let stored = |store: Arc<dyn StateStore>| async move {
            store
                .get(POOL_PINS_KEY)
                .await
                .unwrap()
                .unwrap()
                .decode::<Pins>()
                .unwrap()
        };
        assert_eq!(stored(store.clone()).await["p"].cidr.to_string(), "10.0.0.0/16");
        std::fs::remove_file(dir.path().join("p.yaml")).unwrap();
        watcher.poll(None);
        watcher.save_pins().await;
        assert!(stored(store).await.is_empty(), "a deleted pool releases its pin");
    }
}
