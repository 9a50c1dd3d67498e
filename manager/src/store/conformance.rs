//! The datastore contract as tests every backend runs (file: `file.rs`; kubernetes against the
//! fake API server: `k8s/tests.rs`). Keys are ones both backends accept.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{StateStore, StoreError, WatchEvent};

/// create / get / update / delete, each refusing what it must.
pub async fn cas_lifecycle(s: &dyn StateStore) {
    let key = "ipam/blocks/10.9.0.0-26";
    assert_eq!(s.get(key).await.unwrap(), None);
    let r1 = s.create(key, &json!({"n": 1})).await.unwrap();
    assert!(matches!(
        s.create(key, &json!({})).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let e = s.get(key).await.unwrap().unwrap();
    assert_eq!(
        (e.key.as_str(), e.value.clone(), e.revision.clone()),
        (key, json!({"n": 1}), r1.clone())
    );
    let r2 = s.update(key, &json!({"n": 2}), &r1).await.unwrap();
    assert_ne!(r1, r2);
    assert!(matches!(
        s.update(key, &json!({"n": 3}), &r1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(s.delete(key, &r1).await, Err(StoreError::Conflict { .. })));
    assert_eq!(s.get(key).await.unwrap().unwrap().value, json!({"n": 2}));
    s.delete(key, &r2).await.unwrap();
    assert_eq!(s.get(key).await.unwrap(), None);
    assert!(s.list("ipam/blocks/").await.unwrap().is_empty());
    // The key can be made again after a delete.
    let r3 = s.create(key, &json!({"n": 4})).await.unwrap();
    assert_eq!(s.get(key).await.unwrap().unwrap().revision, r3);
    s.delete(key, &r3).await.unwrap();
}

/// Folders list only their own keys, in key order; `list_keys` agrees with `list`.
pub async fn folders(s: &dyn StateStore) {
    for k in [
        "secondary/n1/b.eth1",
        "secondary/n1/a.eth1",
        "secondary/n2/a.eth1",
        "nodes/n1",
    ] {
        s.create(k, &json!({"k": k})).await.unwrap();
    }
    let n1: Vec<String> = s
        .list("secondary/n1/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(n1, ["secondary/n1/a.eth1", "secondary/n1/b.eth1"]);
    assert_eq!(s.list_keys("secondary/n1/").await.unwrap(), n1);
    // A folder lists its own keys, not its sub-folders' (as a directory does).
    assert!(s.list("secondary/").await.unwrap().is_empty());
    assert_eq!(s.list_keys("nodes/").await.unwrap(), ["nodes/n1"]);
    assert_eq!(
        s.get("secondary/n1/a.eth1").await.unwrap().unwrap().value,
        json!({"k": "secondary/n1/a.eth1"})
    );
}

/// Read-modify-write from many tasks with retry on conflict loses no increment.
pub async fn concurrent_cas(s: Arc<dyn StateStore>) {
    let key = "nodes/counter";
    s.create(key, &json!({"n": 0})).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..8 {
                    loop {
                        let e = s.get(key).await.unwrap().unwrap();
                        let n = e.value["n"].as_i64().unwrap();
                        match s.update(key, &json!({"n": n + 1}), &e.revision).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get(key).await.unwrap().unwrap().value, json!({"n": 48}));
}

/// A watch sees a key appear, change and go.
pub async fn watch_sees_changes(s: &dyn StateStore) {
    let key = "secondary/w/x.eth1";
    let mut rx = s.watch("secondary/w/");
    // Both backends start watching asynchronously.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s.create(key, &json!({"v": 1})).await.unwrap();
    match next(&mut rx).await {
        WatchEvent::Put(e) => assert_eq!((e.key.as_str(), e.value), (key, json!({"v": 1}))),
        other => panic!("expected a put, got {other:?}"),
    }
    s.delete(key, &r).await.unwrap();
    loop {
        match next(&mut rx).await {
            WatchEvent::Deleted { key: k } => {
                assert_eq!(k, key);
                break;
            }
            // The kubernetes backend may show the soft-delete step as an update first.
            WatchEvent::Put(e) => assert_eq!(e.key, key),
        }
    }
}

/// Keys a backend cannot hold are refused by name.
pub async fn bad_keys(s: &dyn StateStore) {
    for bad in ["", "ipam/blocks/", "../x"] {
        match s.create(bad, &json!({})).await {
            Err(StoreError::InvalidKey { key, .. }) => assert_eq!(key, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a watch event within 5 s")
        .expect("watch open")
}
