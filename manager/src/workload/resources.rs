//! The resource snapshot for the daemon: the store directory's YAML, re-read
//! when a file changes, published on a watch channel. A bad document is
//! logged (and sent as an event) and the last good state stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::resources::{Loader, Rejection, Resources};
use lanes_proto::v1 as pb;

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
}

impl ResourceWatcher {
    /// Load once now (so the daemon starts with the current state) and return
    /// the watcher plus receivers for the snapshot and the current rejections.
    pub fn start(dir: &Path) -> (Self, watch::Receiver<Arc<Resources>>, watch::Receiver<Vec<String>>) {
        let (tx, rx) = watch::channel(Arc::new(Resources::default()));
        let (rtx, rrx) = watch::channel(Vec::new());
        let mut w = ResourceWatcher {
            dir: dir.to_path_buf(),
            loader: Loader::new(),
            fingerprint: None,
            tx,
            rejected: rtx,
        };
        w.poll(None);
        (w, rx, rrx)
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
