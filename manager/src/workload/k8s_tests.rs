//! Kubernetes mode through [`Workloads::handle`], on the fake API server with the real caches
//! (`with_cluster`): the CNI answers before the caches have synced, and a pod recreated under the
//! same name. Every case ends before the dataplane changes anything, so no root is needed (the
//! netlink socket is only opened).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;

use super::Workloads;
use crate::cni::error::{ERR_INVALID_ENV, ERR_LIMITED_CONNECTIVITY, ERR_NOT_AVAILABLE, ERR_TRY_AGAIN_LATER};
use crate::cni::Command;
use crate::dataplane::Dataplane;
use crate::ipam::{BlockHooks, Ipam};
use crate::k8s::caches::Caches;
use crate::k8s::fake::{wait, FakeApi};
use crate::k8s::store::KubeStore;
use crate::k8s::Limits;
use crate::metrics::Metrics;
use crate::store::StateStore;
use crate::workload::Cluster;

const CONF: &[u8] = br#"{"cniVersion":"1.1.0","name":"lanes","type":"lanes","socket":"/run/lanes/lanes.sock"}"#;
const BLOCKS: &str = "lanes.dev/v1/ipamblocks";

struct NoHooks;

#[async_trait::async_trait]
impl BlockHooks for NoHooks {
    async fn block_claimed(&self, _: ipnet::IpNet) -> Result<(), String> {
        Ok(())
    }
}

/// A pool, and the pod `default/busybox3` (UID `u-new`) on node1.
fn cluster() -> FakeApi {
    let api = FakeApi::new();
    api.put(
        "lanes.dev/v1/ippools",
        json!({"apiVersion": "lanes.dev/v1", "kind": "IPPool", "metadata": {"name": "pool1"},
               "spec": {"cidr": "10.244.0.0/16", "blockSize": 26}}),
    );
    api.put(
        "/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "busybox3", "namespace": "default", "uid": "u-new"},
               "spec": {"nodeName": "node1"}}),
    );
    api
}

/// node1's workloads on `api`; the API goes down before the caches start when `down`.
async fn workloads(api: &FakeApi, down: bool) -> (Workloads, Arc<Caches>) {
    let limits = Arc::new(Limits::new(0.0, 1, Duration::from_secs(5)));
    let store: Arc<dyn StateStore> = Arc::new(KubeStore::new(api.client(), limits.clone()));
    let ipam = Ipam::start("node1", store.clone(), Arc::new(NoHooks)).await.unwrap();
    api.set_down(down);
    let (events, _) = broadcast::channel(16);
    let started = Caches::start(api.client(), limits, "node1", false, events.clone());
    let w = Workloads::new(
        "node1".into(),
        Arc::new(ipam),
        Dataplane::new().await.expect("a netlink socket (no root needed)"),
        started.resources.clone(),
        events,
        Arc::new(Metrics::new()),
        1500,
        PathBuf::from("kubernetes"),
        store,
        None,
    )
    .with_cluster(started.caches.clone());
    (w, started.caches)
}

fn env(command: &str, cni_args: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", cni_args),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Until the caches have synced, STATUS answers 50 and ADD 11 (try again) without taking an
/// address; once synced, the same STATUS is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_caches_sync_status_is_50_and_add_is_11() {
    let api = cluster();
    let (w, caches) = workloads(&api, true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let status = w.handle(Command::Status, &env("STATUS", ""), CONF).await;
    let e = status.error.expect("STATUS fails while unsynced");
    assert_eq!(e.code, ERR_NOT_AVAILABLE, "{e:?}");
    assert!(e.details.contains("not synced"), "{e:?}");
    let out: serde_json::Value = serde_json::from_slice(&status.output).unwrap();
    assert_eq!(out["code"], 50);
    // With the node's BGP down as well, pods already running may have lost their routes: 51.
    w.set_routing(Arc::new(BgpDown));
    let status = w.handle(Command::Status, &env("STATUS", ""), CONF).await;
    let e = status.error.expect("STATUS fails while unsynced");
    assert_eq!(e.code, ERR_LIMITED_CONNECTIVITY, "{e:?}");
    assert!(
        e.details.contains("not synced") && e.details.contains("none of 2 sessions"),
        "{e:?}"
    );

    let pod = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=busybox3;K8S_POD_UID=u-new";
    let add = w.handle(Command::Add, &env("ADD", pod), CONF).await;
    let e = add.error.expect("ADD fails while unsynced");
    assert_eq!(e.code, ERR_TRY_AGAIN_LATER, "{e:?}");
    assert!(e.details.contains("not synced"), "{e:?}");
    assert!(api.all(BLOCKS).is_empty(), "no address was taken");

    api.set_down(false);
    wait(|| caches.not_synced().is_none(), "caches synced").await;
    wait(|| w.resources().pools.contains_key("pool1"), "the pool loaded").await;
    let status = w.handle(Command::Status, &env("STATUS", ""), CONF).await;
    assert!(status.error.is_none(), "ready whatever BGP says: {:?}", status.error);
}

/// A routing side whose sessions are all down.
struct BgpDown;

impl crate::workload::RoutingHealth for BgpDown {
    fn degraded(&self) -> Option<String> {
        Some("BGP: none of 2 sessions is established: routes to other nodes may be missing".into())
    }
}

/// K8S_POD_UID names an older pod than the one now under that name: ADD refuses, naming both
/// UIDs, after one GET (the cache's pod has the other UID), and takes no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_refuses_a_pod_whose_uid_differs() {
    let api = cluster();
    let (w, caches) = workloads(&api, false).await;
    wait(|| caches.not_synced().is_none(), "caches synced").await;
    wait(|| w.resources().pod("default", "busybox3").is_some(), "the pod cached").await;

    let before = api.requests().len();
    let pod = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=busybox3;K8S_POD_UID=u-old";
    let add = w.handle(Command::Add, &env("ADD", pod), CONF).await;
    let e = add.error.expect("ADD fails on a UID mismatch");
    assert_eq!(e.code, ERR_INVALID_ENV, "{e:?}");
    assert_eq!(e.msg, "pod UID mismatch");
    assert!(
        e.details.contains("K8S_POD_UID=u-old") && e.details.contains("UID u-new"),
        "{e:?}"
    );
    assert!(api.requests()[before..].contains(&"GET /api/v1/namespaces/default/pods/busybox3".to_string()));
    assert!(api.all(BLOCKS).is_empty(), "no address was taken");
}
