//! The `file` datastore: daemon state as one JSON file per key under
//! `<path>/state/`, safe for several lanesd processes on one host.
//!
//! - Every write happens under an exclusive `flock` on `state/.lock` (and an
//!   in-process mutex, because flock does not exclude two threads sharing
//!   one open file), so compare-and-swap is atomic across processes.
//! - A write goes to the key's spare file (`.<name>.spare`), which is fsync'd
//!   and atomically swapped with the key's file (`renameat2` with
//!   `RENAME_EXCHANGE`), then the directory is fsync'd: a crash (kill -9 or
//!   power loss) after `update` returns cannot lose the write, and a reader
//!   sees the old or the new value, never half of one.
//! - The swap leaves the previous version as the next write's spare. Files are
//!   padded with spaces (JSON ignores them) to whole pages, so overwriting the
//!   spare changes no file metadata and its fsync needs no journal commit:
//!   one commit per write instead of two (new file, then rename), which is
//!   most of an IPAM write on a CNI ADD. The first write of a key, or on a
//!   filesystem without `RENAME_EXCHANGE`, creates the spare and renames it.
//! - Because the swapped-out file is rewritten in place by the next write,
//!   lock-free readers could see it half-written: readers take the lock
//!   shared (writers hold it exclusively).
//! - Revisions are per key: `max(previous + 1, now in ns)`, so a key that is
//!   deleted and created again never repeats an old revision (no ABA).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use nix::fcntl::{renameat2, Flock, FlockArg, RenameFlags};
use serde::{Deserialize, Serialize};

use super::{Entry, Result, Revision, StateStore, StoreError, WatchEvent};

/// How often `watch` looks for changes made by other processes.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Stored files are padded to a multiple of this, so that a key's spare keeps its size.
const PAD: usize = 4096;

#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    lock: Mutex<File>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    revision: String,
    value: serde_json::Value,
}

/// What a write serializes: [`Stored`] without copying the value.
#[derive(Serialize)]
struct StoredRef<'a> {
    revision: &'a str,
    value: &'a serde_json::Value,
}

/// What compare-and-swap needs of the current file: its revision (the value is skipped, not
/// built: on the ADD path this read is under the lock).
#[derive(Deserialize)]
struct StoredRevision {
    revision: String,
}

impl FileStore {
    /// Open (creating if needed) the state folder `<store_path>/state`.
    pub fn open(store_path: &Path) -> Result<Self> {
        let root = store_path.join("state");
        fs::create_dir_all(&root).map_err(|e| io(format!("create {}", root.display()), e))?;
        let lock_path = root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(format!("open {}", lock_path.display()), e))?;
        Ok(FileStore {
            inner: Arc::new(Inner {
                root,
                lock: Mutex::new(lock),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

impl Inner {
    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let mut p = self.root.clone();
        let bad = |reason: &str| StoreError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        if key.is_empty() {
            return Err(bad("empty"));
        }
        for seg in key.split('/') {
            if seg.is_empty() || seg.starts_with('.') {
                return Err(bad("empty or hidden path segment"));
            }
            if !seg.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c)) {
                return Err(bad("only [A-Za-z0-9._:-] and '/' are allowed"));
            }
            p.push(seg);
        }
        Ok(p)
    }

    fn read(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.read_as::<Stored>(key)?.map(|stored| Entry {
            key: key.to_string(),
            value: stored.value,
            revision: stored.revision,
        }))
    }

    /// The key's current revision, or None when it does not exist.
    fn revision(&self, key: &str) -> Result<Option<Revision>> {
        Ok(self.read_as::<StoredRevision>(key)?.map(|s| s.revision))
    }

    /// The key's file decoded as `T` ([`Stored`], or only part of it), or None when absent.
    fn read_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let path = self.path_of(key)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let folder = prefix.trim_end_matches('/');
        let dir = if folder.is_empty() {
            self.root.clone()
        } else {
            self.path_of(folder)?
        };
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("list {}", dir.display()), e)),
        };
        let mut keys = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| io(format!("list {}", dir.display()), e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            // Dotfiles are our lock and in-flight temporaries.
            if name.starts_with('.') || !ent.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            keys.push(if folder.is_empty() {
                name
            } else {
                format!("{folder}/{name}")
            });
        }
        keys.sort();
        Ok(keys)
    }

    /// Run `f` with the lock held shared: no write runs meanwhile. Its own open file
    /// description, because flock locks belong to one (the writers' is shared by dup).
    fn shared<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.root.join(".lock");
        let file = File::open(&path).map_err(|e| io(format!("open {}", path.display()), e))?;
        let flock = Flock::lock(file, FlockArg::LockShared)
            .map_err(|(_, errno)| io("flock state/.lock".to_string(), errno.into()))?;
        let out = f();
        drop(flock);
        out
    }

    /// Run `f` under the cross-process write lock.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let file = guard
            .try_clone()
            .map_err(|e| io("clone lock file handle".to_string(), e))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io("flock state/.lock".to_string(), errno.into()))?;
        let out = f();
        drop(flock);
        drop(guard);
        out
    }

    fn write(&self, key: &str, value: &serde_json::Value, previous: Option<&str>) -> Result<Revision> {
        let path = self.path_of(key)?;
        let prev_num = previous.and_then(|r| r.parse::<u64>().ok()).unwrap_or(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let revision = now.max(prev_num + 1).to_string();
        let mut body = serde_json::to_vec(&StoredRef {
            revision: &revision,
            value,
        })
        .map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        body.resize(body.len().div_ceil(PAD) * PAD, b' ');
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
            sync_dir(dir.parent().unwrap_or(&self.root))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spare_name = spare_name(&name);
        let spare = dir.join(&spare_name);
        let dir_fd = File::open(&dir).map_err(|e| io(format!("open {}", dir.display()), e))?;
        fill_spare(&spare, &body).map_err(|e| io(format!("write {}", spare.display()), e))?;
        // Without a previous version there is nothing to swap with.
        let swapped = previous.is_some()
            && renameat2(
                &dir_fd,
                spare_name.as_str(),
                &dir_fd,
                name.as_str(),
                RenameFlags::RENAME_EXCHANGE,
            )
            .is_ok();
        if !swapped {
            fs::rename(&spare, &path).map_err(|e| io(format!("rename to {}", path.display()), e))?;
        }
        dir_fd
            .sync_all()
            .map_err(|e| io(format!("fsync {}", dir.display()), e))?;
        Ok(revision)
    }

    fn create(&self, key: &str, value: &serde_json::Value) -> Result<Revision> {
        self.locked(|| {
            if self.revision(key)?.is_some() {
                return Err(StoreError::AlreadyExists { key: key.to_string() });
            }
            self.write(key, value, None)
        })
    }

    fn update(&self, key: &str, value: &serde_json::Value, expected: &str) -> Result<Revision> {
        self.locked(|| match self.revision(key)? {
            None => Err(StoreError::NotFound { key: key.to_string() }),
            Some(cur) if cur != expected => Err(StoreError::Conflict { key: key.to_string() }),
            Some(cur) => self.write(key, value, Some(&cur)),
        })
    }

    fn delete(&self, key: &str, expected: &str) -> Result<()> {
        self.locked(|| match self.revision(key)? {
            None => Err(StoreError::NotFound { key: key.to_string() }),
            Some(cur) if cur != expected => Err(StoreError::Conflict { key: key.to_string() }),
            Some(_) => {
                let path = self.path_of(key)?;
                fs::remove_file(&path).map_err(|e| io(format!("remove {}", path.display()), e))?;
                let dir = path.parent().unwrap_or(&self.root);
                if let Some(name) = path.file_name() {
                    let spare = dir.join(spare_name(&name.to_string_lossy()));
                    match fs::remove_file(&spare) {
                        Err(e) if e.kind() != ErrorKind::NotFound => {
                            return Err(io(format!("remove {}", spare.display()), e))
                        }
                        _ => {}
                    }
                }
                sync_dir(dir)
            }
        })
    }
}

#[async_trait]
impl StateStore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        let key = key.to_string();
        self.blocking(move |s| s.shared(|| s.read(&key))).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let prefix = prefix.to_string();
        self.blocking(move |s| {
            s.shared(|| {
                let mut out = Vec::new();
                for k in s.keys(&prefix)? {
                    // A key deleted between listing and reading is simply gone.
                    if let Some(e) = s.read(&k)? {
                        out.push(e);
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.to_string();
        self.blocking(move |s| s.keys(&prefix)).await
    }

    async fn create(&self, key: &str, value: &serde_json::Value) -> Result<Revision> {
        let (key, value) = (key.to_string(), value.clone());
        self.blocking(move |s| s.create(&key, &value)).await
    }

    async fn update(&self, key: &str, value: &serde_json::Value, expected: &Revision) -> Result<Revision> {
        let (key, value, expected) = (key.to_string(), value.clone(), expected.clone());
        self.blocking(move |s| s.update(&key, &value, &expected)).await
    }

    async fn delete(&self, key: &str, expected: &Revision) -> Result<()> {
        let (key, expected) = (key.to_string(), expected.clone());
        self.blocking(move |s| s.delete(&key, &expected)).await
    }

    fn watch(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.clone();
        let prefix = prefix.to_string();
        // Other processes write these files, so polling the revisions is the
        // one signal that covers every writer.
        tokio::spawn(async move {
            let mut seen: std::collections::BTreeMap<String, Revision> = Default::default();
            let mut first = true;
            loop {
                if let Ok(entries) = store.list(&prefix).await {
                    let mut now = std::collections::BTreeMap::new();
                    for e in entries {
                        now.insert(e.key.clone(), e.revision.clone());
                        if !first && seen.get(&e.key) != Some(&e.revision) && tx.send(WatchEvent::Put(e)).await.is_err()
                        {
                            return;
                        }
                    }
                    for k in seen.keys().filter(|k| !now.contains_key(*k)) {
                        if tx.send(WatchEvent::Deleted { key: k.clone() }).await.is_err() {
                            return;
                        }
                    }
                    seen = now;
                    first = false;
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        });
        rx
    }
}

/// The file that holds a key's previous version, and its next one while it is written.
fn spare_name(name: &str) -> String {
    format!(".{name}.spare")
}

/// Puts `body` in the spare and on the disk: rewritten in place where the spare exists (only
/// the lock holder writes it), which changes no metadata when its length stays; else created.
fn fill_spare(spare: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut f = match OpenOptions::new().write(true).open(spare) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => File::create(spare)?,
        Err(e) => return Err(e),
    };
    f.write_all(body)?;
    if f.metadata()?.len() > body.len() as u64 {
        f.set_len(body.len() as u64)?;
    }
    f.sync_data()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(format!("fsync {}", dir.display()), e))
}

fn io(context: String, source: std::io::Error) -> StoreError {
    StoreError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    /// Two handles on one store, as two lanesd processes would have.
    fn two_handles() -> (tempfile::TempDir, FileStore, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            FileStore::open(dir.path()).unwrap(),
            FileStore::open(dir.path()).unwrap(),
        );
        (dir, a, b)
    }

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn create_get_update_delete_with_cas() {
        let (_d, s) = store();
        let r1 = s.create("ipam/blocks/a", &json!({"n": 1})).await.unwrap();
        assert!(matches!(
            s.create("ipam/blocks/a", &json!({})).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        let e = s.get("ipam/blocks/a").await.unwrap().unwrap();
        assert_eq!((e.value.clone(), e.revision.clone()), (json!({"n": 1}), r1.clone()));
        let r2 = s.update("ipam/blocks/a", &json!({"n": 2}), &r1).await.unwrap();
        assert_ne!(r1, r2);
        // A stale revision loses.
        assert!(matches!(
            s.update("ipam/blocks/a", &json!({"n": 3}), &r1).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            s.delete("ipam/blocks/a", &r1).await,
            Err(StoreError::Conflict { .. })
        ));
        s.delete("ipam/blocks/a", &r2).await.unwrap();
        assert!(s.get("ipam/blocks/a").await.unwrap().is_none());
        // Re-created keys never repeat an old revision.
        let r3 = s.create("ipam/blocks/a", &json!({})).await.unwrap();
        assert!(r3 != r1 && r3 != r2);
    }

    #[tokio::test]
    async fn list_and_keys_skip_temporaries() {
        let (_d, s) = store();
        s.create("x/b", &json!(2)).await.unwrap();
        s.create("x/a", &json!(1)).await.unwrap();
        s.create("y/c", &json!(3)).await.unwrap();
        fs::write(s.root().join("x/.a.tmp.1"), b"junk").unwrap();
        assert_eq!(s.list_keys("x/").await.unwrap(), vec!["x/a", "x/b"]);
        let vals: Vec<_> = s.list("x").await.unwrap().into_iter().map(|e| e.value).collect();
        assert_eq!(vals, vec![json!(1), json!(2)]);
        assert!(s.list("nothing/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn rejects_bad_keys() {
        let (_d, s) = store();
        for k in ["", "../x", "a//b", "a/.hidden", "a b", "a/ü"] {
            assert!(
                matches!(s.create(k, &json!(1)).await, Err(StoreError::InvalidKey { .. })),
                "{k}"
            );
        }
    }

    #[tokio::test]
    async fn corrupt_file_is_named() {
        let (_d, s) = store();
        fs::create_dir_all(s.root().join("k")).unwrap();
        fs::write(s.root().join("k/v"), b"{not json").unwrap();
        let err = s.get("k/v").await.unwrap_err().to_string();
        assert!(err.contains("k/v") && err.contains("corrupt"), "{err}");
    }

    /// Two independent handles (as two processes would have) racing CAS
    /// increments on one counter never lose an update.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_cas_loses_nothing() {
        let (_dir, a, b) = two_handles();
        a.create("c", &json!(0)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let e = s.get("c").await.unwrap().unwrap();
                        let n = e.value.as_u64().unwrap();
                        match s.update("c", &json!(n + 1), &e.revision).await {
                            Ok(_) => break,
                            Err(err) if err.is_conflict() => continue,
                            Err(err) => panic!("{err}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(a.get("c").await.unwrap().unwrap().value, json!(80));
    }

    #[tokio::test]
    async fn watch_sees_other_writers() {
        let (_dir, a, b) = two_handles();
        let mut rx = a.watch("w/");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = b.create("w/k", &json!("v")).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(ev, WatchEvent::Put(ref e) if e.key == "w/k"));
        b.delete("w/k", &r).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev, WatchEvent::Deleted { key: "w/k".into() });
    }

    fn inode(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(p).unwrap().ino()
    }

    /// An update swaps the key's file with its spare, so the next update rewrites the file
    /// the one before it replaced: two inodes take turns, and both stay whole pages.
    #[tokio::test]
    async fn updates_take_turns_with_the_spare() {
        let (_d, s) = store();
        let (key, spare) = (s.root().join("x/k"), s.root().join("x/.k.spare"));
        let r1 = s.create("x/k", &json!({"n": 1})).await.unwrap();
        assert!(!spare.exists(), "a new key has no spare yet");
        let first = inode(&key);
        let r2 = s.update("x/k", &json!({"n": 2}), &r1).await.unwrap();
        assert_eq!(inode(&spare), first, "the previous version became the spare");
        let second = inode(&key);
        let r3 = s.update("x/k", &json!({"n": 3}), &r2).await.unwrap();
        assert_eq!(
            (inode(&key), inode(&spare)),
            (first, second),
            "the spare was rewritten in place"
        );
        for p in [&key, &spare] {
            assert_eq!(fs::metadata(p).unwrap().len() % PAD as u64, 0, "{}", p.display());
        }
        let e = s.get("x/k").await.unwrap().unwrap();
        assert_eq!((e.value, e.revision), (json!({"n": 3}), r3.clone()));
        // The spare holds the previous version; only the key's name is ever read.
        let old: Stored = serde_json::from_slice(&fs::read(&spare).unwrap()).unwrap();
        assert_eq!((old.value, old.revision), (json!({"n": 2}), r2));
        assert_eq!(s.list_keys("x/").await.unwrap(), vec!["x/k"]);
        s.delete("x/k", &r3).await.unwrap();
        assert!(!spare.exists(), "delete removes the spare too");
    }

    /// A spare longer than the new value (a bigger earlier value, a crash mid-write) is cut
    /// to the new value's length, so no stale byte survives after it.
    #[tokio::test]
    async fn a_longer_spare_is_cut_to_the_new_value() {
        let (_d, s) = store();
        let r1 = s.create("x/k", &json!(1)).await.unwrap();
        fs::write(s.root().join("x/.k.spare"), vec![b'{'; 3 * PAD]).unwrap();
        s.update("x/k", &json!(2), &r1).await.unwrap();
        assert_eq!(fs::metadata(s.root().join("x/k")).unwrap().len(), PAD as u64);
        assert_eq!(s.get("x/k").await.unwrap().unwrap().value, json!(2));
    }

    /// A write rewrites in place the file the previous write swapped out, which a slow reader
    /// may still hold open: so a write waits for readers (they hold the lock shared).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_wait_for_readers() {
        let (_dir, w, r) = two_handles();
        let rev = w.create("x/k", &json!(1)).await.unwrap();
        let (reading, read_started) = std::sync::mpsc::channel();
        let slow_reader = tokio::task::spawn_blocking(move || {
            r.inner.shared(|| {
                reading.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                Ok(Instant::now())
            })
        });
        read_started.recv().unwrap();
        w.update("x/k", &json!(2), &rev).await.unwrap();
        let written = Instant::now();
        let read_done = slow_reader.await.unwrap().unwrap();
        assert!(written >= read_done, "the write finished while a reader held the lock");
        // Readers do not exclude each other.
        let start = Instant::now();
        let (a, b) = (w.clone(), w.clone());
        let (x, y) = tokio::join!(a.get("x/k"), b.list("x/"));
        assert!(x.unwrap().is_some() && y.unwrap().len() == 1);
        assert!(start.elapsed() < Duration::from_millis(300));
    }

    /// Readers in another process (here: another handle) never see a value half-written
    /// while writes swap and rewrite its files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_never_see_a_half_written_value() {
        let (_dir, w, r) = two_handles();
        let mut rev = w.create("x/k", &json!("zzz")).await.unwrap();
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reads.clone();
        let reader = tokio::spawn(async move {
            loop {
                let entries = r.list("x/").await.unwrap_or_else(|e| panic!("read failed: {e}"));
                let v = &entries[0].value;
                if v == "done" {
                    return;
                }
                // Every value is one letter repeated: a mix of two is a torn read.
                let text = v.as_str().unwrap();
                assert!(text.bytes().all(|b| b == text.as_bytes()[0]), "torn read: {v}");
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        // At least 300 writes, and on until the reader has read a good many of them.
        let mut i = 0;
        while i < 300 || (reads.load(std::sync::atomic::Ordering::Relaxed) < 100 && i < 5000) {
            let letter = (b'a' + (i % 26) as u8) as char;
            // Sizes straddle pages, so the in-place rewrites change length too.
            let value = letter.to_string().repeat(1000 + (i * 997) % 9000);
            rev = w.update("x/k", &json!(value), &rev).await.unwrap();
            i += 1;
        }
        w.update("x/k", &json!("done"), &rev).await.unwrap();
        reader.await.unwrap();
        assert!(reads.load(std::sync::atomic::Ordering::Relaxed) >= 100);
    }

    /// The shared datastore contract (the kubernetes backend runs the same suite).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        use crate::store::conformance as c;
        let (_d, s) = store();
        c::cas_lifecycle(&s).await;
        c::folders(&s).await;
        c::bad_keys(&s).await;
        c::watch_sees_changes(&s).await;
        c::concurrent_cas(std::sync::Arc::new(s)).await;
    }
}
