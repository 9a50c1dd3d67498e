//! The kubernetes datastore against a mocked API: the fake server for behaviour (conformance,
//! two nodes, caches, outages), `tower_test` for exact request sequences.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, Request, Response};
use serde_json::{json, Value};

use super::fake::{wait, FakeApi};
use super::store::KubeStore;
use super::Limits;
use crate::store::{conformance, StateStore, StoreError};

fn limits() -> Arc<Limits> {
    Arc::new(Limits::new(0.0, 1, Duration::from_secs(5)))
}

fn kube_store(api: &FakeApi) -> KubeStore {
    KubeStore::new(api.client(), limits())
}

const BLOCKS: &str = "lanes.dev/v1/ipamblocks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let api = FakeApi::new();
    let s = kube_store(&api);
    conformance::cas_lifecycle(&s).await;
    conformance::folders(&s).await;
    conformance::bad_keys(&s).await;
    conformance::watch_sees_changes(&s).await;
    conformance::concurrent_cas(Arc::new(s)).await;
}

#[tokio::test]
async fn objects_are_named_labelled_and_keyed() {
    let api = FakeApi::new();
    let s = kube_store(&api);
    s.create("secondary/node1/ctr_1.eth1", &json!({"containerId": "ctr_1"}))
        .await
        .unwrap();
    let objs = api.all("lanes.dev/v1/secondaryattachments");
    assert_eq!(objs.len(), 1);
    let o = &objs[0];
    assert_eq!(o["kind"], "SecondaryAttachment");
    assert_eq!(o["metadata"]["labels"]["lanes.dev/dir"], "node1");
    assert_eq!(
        o["metadata"]["annotations"]["lanes.dev/key"],
        "secondary/node1/ctr_1.eth1"
    );
    assert_eq!(o["spec"]["containerId"], "ctr_1");
    assert!(o["metadata"]["name"].as_str().unwrap().starts_with("node1-ctr-1.eth1-"));
}

/// A delete interrupted after its soft-delete step: readers do not see the key, and creating it
/// again finishes the old delete (by UID) first.
#[tokio::test]
async fn soft_deleted_leftovers_are_invisible_and_replaced() {
    let api = FakeApi::new();
    let s = kube_store(&api);
    let key = "ipam/blocks/10.1.0.0-26";
    let rev = s.create(key, &json!({"n": 1})).await.unwrap();
    // The DELETE after the mark fails, as if lanesd died in between.
    api.fail_next(Method::DELETE, "ipamblocks/10.1.0.0-26", 500);
    assert!(s.delete(key, &rev).await.is_err());
    let left = api.get(BLOCKS, "", "10.1.0.0-26").expect("still stored");
    assert_eq!(left["metadata"]["annotations"]["lanes.dev/deleted"], "true");
    assert_eq!(s.get(key).await.unwrap(), None);
    assert!(s.list_keys("ipam/blocks/").await.unwrap().is_empty());
    // list() finished it off.
    assert!(api.get(BLOCKS, "", "10.1.0.0-26").is_none());

    let rev = s.create(key, &json!({"n": 2})).await.unwrap();
    api.fail_next(Method::DELETE, "ipamblocks/10.1.0.0-26", 500);
    assert!(s.delete(key, &rev).await.is_err());
    s.create(key, &json!({"n": 3})).await.unwrap();
    assert_eq!(s.get(key).await.unwrap().unwrap().value, json!({"n": 3}));
}

/// Two nodes' IPAM on one API server: every address handed out once, blocks split by affinity,
/// and the 409s met on the way (at least one stale write, forced) were retried, not turned into
/// failed ADDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_share_an_address() {
    use crate::ipam::{Allocation, BlockHooks, Ipam, Policy, PoolChoice};
    struct NoHooks;
    #[async_trait::async_trait]
    impl BlockHooks for NoHooks {
        async fn block_claimed(&self, _: ipnet::IpNet) -> Result<(), String> {
            Ok(())
        }
    }
    let api = FakeApi::new();
    let mut nodes = Vec::new();
    for name in ["node1", "node2"] {
        let store: Arc<dyn StateStore> = Arc::new(kube_store(&api));
        nodes.push(Arc::new(Ipam::start(name, store, Arc::new(NoHooks)).await.unwrap()));
    }
    let pool = PoolChoice {
        name: "p".into(),
        cidr: "10.20.0.0/24".parse().unwrap(),
        block_size: 28,
    };
    // A real CAS conflict on every run (the nodes' blocks rarely collide by chance): node1 holds
    // its block at one resourceVersion, another writer bumps it, and node1's next allocation PUT
    // carries the stale one.
    let first = Allocation {
        container_id: "c0-first".into(),
        ifname: "eth0".into(),
        node: "node1".into(),
        ..Default::default()
    };
    let first = nodes[0]
        .assign(first, std::slice::from_ref(&pool), Policy::default())
        .await
        .unwrap()
        .ip;
    let block = api.all(BLOCKS).pop().expect("node1's block");
    api.put(BLOCKS, block);
    assert_eq!(api.conflicts(), 0);
    let mut tasks = Vec::new();
    for (n, ipam) in nodes.iter().enumerate() {
        for i in 0..40 {
            let (ipam, pool) = (ipam.clone(), pool.clone());
            tasks.push(tokio::spawn(async move {
                let alloc = Allocation {
                    container_id: format!("c{n}-{i}"),
                    ifname: "eth0".into(),
                    node: format!("node{}", n + 1),
                    ..Default::default()
                };
                ipam.assign(alloc, &[pool], Policy::default()).await.map(|a| a.ip)
            }));
        }
    }
    let mut ips = std::collections::BTreeSet::from([first]);
    for t in tasks {
        let ip = t.await.unwrap().expect("an address");
        assert!(ips.insert(ip), "{ip} handed out twice");
    }
    assert_eq!(ips.len(), 81);
    assert!(api.conflicts() >= 1, "no 409 was answered");
    let blocks = api.all(BLOCKS);
    for b in &blocks {
        let aff = b["spec"]["affinity"].as_str().unwrap();
        for (_, a) in b["spec"]["allocations"].as_object().unwrap() {
            // 16-address blocks, 41 pods at most a node: nobody needed to borrow.
            assert_eq!(a["node"].as_str(), Some(aff), "{b}");
        }
    }
}

/// Exact sequences (tower-test): what lanesd sends, in order, and how it reads the answers.
mod sequences {
    use super::*;
    use http_body_util::BodyExt;
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn mock() -> (kube::Client, Handle) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(svc, "default"), handle)
    }

    async fn expect(h: &mut Handle, method: Method, path: &str, code: u16, reply: Value) -> Value {
        let (req, send) = tokio::time::timeout(Duration::from_secs(2), h.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
            .expect("client alive");
        assert_eq!((req.method(), req.uri().path()), (&method, path));
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut resp = Response::new(Body::from(serde_json::to_vec(&reply).unwrap()));
        *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        send.send_response(resp);
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    fn conflict() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
               "message": "the object has been modified"})
    }

    fn block(rv: &str, uid: &str, deleted: bool) -> Value {
        let mut annotations = json!({"lanes.dev/key": "ipam/blocks/10.1.0.0-26"});
        if deleted {
            annotations["lanes.dev/deleted"] = json!("true");
        }
        json!({"apiVersion": "lanes.dev/v1", "kind": "IPAMBlock",
               "metadata": {"name": "10.1.0.0-26", "resourceVersion": rv, "uid": uid, "annotations": annotations},
               "spec": {"n": 1}})
    }

    /// A stale update is a PUT carrying the revision read; the 409 is a conflict, not an error.
    #[tokio::test]
    async fn update_sends_the_revision_and_maps_409() {
        let (client, mut h) = mock();
        let s = KubeStore::new(client, limits());
        let call = tokio::spawn(async move {
            s.update("ipam/blocks/10.1.0.0-26", &json!({"n": 2}), &"41".into())
                .await
        });
        let sent = expect(
            &mut h,
            Method::PUT,
            "/apis/lanes.dev/v1/ipamblocks/10.1.0.0-26",
            409,
            conflict(),
        )
        .await;
        assert_eq!(sent["metadata"]["resourceVersion"], "41");
        assert_eq!(sent["spec"], json!({"n": 2}));
        assert!(matches!(call.await.unwrap(), Err(StoreError::Conflict { .. })));
    }

    /// delete = GET, CAS-mark (PUT with the expected revision), DELETE preconditioned on the UID.
    #[tokio::test]
    async fn delete_is_a_soft_delete_then_a_delete_by_uid() {
        let (client, mut h) = mock();
        let s = KubeStore::new(client, limits());
        let call = tokio::spawn(async move { s.delete("ipam/blocks/10.1.0.0-26", &"7".into()).await });
        let path = "/apis/lanes.dev/v1/ipamblocks/10.1.0.0-26";
        expect(&mut h, Method::GET, path, 200, block("7", "u-1", false)).await;
        let marked = expect(&mut h, Method::PUT, path, 200, block("8", "u-1", true)).await;
        assert_eq!(marked["metadata"]["resourceVersion"], "7");
        assert_eq!(marked["metadata"]["annotations"]["lanes.dev/deleted"], "true");
        let del = expect(&mut h, Method::DELETE, path, 200, block("8", "u-1", true)).await;
        assert_eq!(del["preconditions"]["uid"], "u-1");
        call.await.unwrap().unwrap();
    }

    /// A mark refused for a stale revision deletes nothing.
    #[tokio::test]
    async fn a_stale_delete_stops_at_the_mark() {
        let (client, mut h) = mock();
        let s = KubeStore::new(client, limits());
        let call = tokio::spawn(async move { s.delete("ipam/blocks/10.1.0.0-26", &"6".into()).await });
        let path = "/apis/lanes.dev/v1/ipamblocks/10.1.0.0-26";
        expect(&mut h, Method::GET, path, 200, block("7", "u-1", false)).await;
        expect(&mut h, Method::PUT, path, 409, conflict()).await;
        assert!(matches!(call.await.unwrap(), Err(StoreError::Conflict { .. })));
    }

    fn pod(rv: &str, uid: &str, status: Option<&str>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "busybox3", "namespace": "default", "uid": uid, "resourceVersion": rv}});
        if let Some(s) = status {
            p["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/network-status": s});
        }
        p
    }

    /// network-status: GET, PATCH /status with the revision read; on 409 read again and retry.
    #[tokio::test]
    async fn status_patch_retries_on_conflict() {
        let (client, mut h) = mock();
        let call = tokio::spawn(async move {
            super::super::status::write(&client, &limits(), "default", "busybox3", "u-9", "[]", None).await
        });
        let get = "/api/v1/namespaces/default/pods/busybox3";
        let status = "/api/v1/namespaces/default/pods/busybox3/status";
        expect(&mut h, Method::GET, get, 200, pod("10", "u-9", None)).await;
        let first = expect(&mut h, Method::PATCH, status, 409, conflict()).await;
        assert_eq!(first["metadata"]["resourceVersion"], "10");
        expect(&mut h, Method::GET, get, 200, pod("11", "u-9", None)).await;
        let second = expect(&mut h, Method::PATCH, status, 200, pod("12", "u-9", Some("[]"))).await;
        assert_eq!(second["metadata"]["resourceVersion"], "11");
        assert_eq!(
            second["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"],
            "[]"
        );
        call.await.unwrap().unwrap();
    }

    /// With the watch cache's copy the first attempt is the PATCH alone; a stale copy (409)
    /// falls back to a read.
    #[tokio::test]
    async fn status_patch_starts_from_the_cached_pod() {
        let (client, mut h) = mock();
        let cached: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod("10", "u-9", None)).unwrap();
        let call = tokio::spawn(async move {
            super::super::status::write(&client, &limits(), "default", "busybox3", "u-9", "[]", Some(cached)).await
        });
        let get = "/api/v1/namespaces/default/pods/busybox3";
        let status = "/api/v1/namespaces/default/pods/busybox3/status";
        let first = expect(&mut h, Method::PATCH, status, 409, conflict()).await;
        assert_eq!(first["metadata"]["resourceVersion"], "10");
        expect(&mut h, Method::GET, get, 200, pod("11", "u-9", None)).await;
        let second = expect(&mut h, Method::PATCH, status, 200, pod("12", "u-9", Some("[]"))).await;
        assert_eq!(second["metadata"]["resourceVersion"], "11");
        call.await.unwrap().unwrap();
    }

    /// Another pod of the same name (other UID) never gets the status.
    #[tokio::test]
    async fn status_is_not_written_on_uid_mismatch() {
        let (client, mut h) = mock();
        let call = tokio::spawn(async move {
            super::super::status::write(&client, &limits(), "default", "busybox3", "u-old", "[]", None).await
        });
        expect(
            &mut h,
            Method::GET,
            "/api/v1/namespaces/default/pods/busybox3",
            200,
            pod("10", "u-new", None),
        )
        .await;
        let err = call.await.unwrap().unwrap_err();
        assert!(err.contains("u-new") && err.contains("K8S_POD_UID u-old"), "{err}");
        // No PATCH followed (the client is gone or silent).
        let next = tokio::time::timeout(Duration::from_millis(200), h.next_request()).await;
        assert!(matches!(next, Err(_) | Ok(None)), "unexpected request");
    }
}

/// The reflector caches: not synced while the API is down, then the snapshot follows NADs and
/// pods as they change; a pod the cache lacks costs one GET; an outage later fails the lookups
/// that need the API, and the watches catch up once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_sync_follow_changes_and_fall_back_to_a_get() {
    use crate::workload::Cluster;
    let api = FakeApi::new();
    api.put(
        "lanes.dev/v1/ippools",
        json!({"apiVersion": "lanes.dev/v1", "kind": "IPPool",
        "metadata": {"name": "pool1"}, "spec": {"cidr": "10.244.0.0/16", "blockSize": 26}}),
    );
    api.put(
        "/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node1", "labels": {"rack": "rack-1"}}}),
    );
    api.put(
        "/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "here", "namespace": "default", "uid": "u-here"}, "spec": {"nodeName": "node1"}}),
    );
    api.put(
        "/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other", "namespace": "default", "uid": "u-o"}, "spec": {"nodeName": "node2"}}),
    );
    api.set_down(true);
    let (events, _) = tokio::sync::broadcast::channel(16);
    let started = super::caches::Caches::start(api.client(), limits(), "node1", false, events);
    let caches = started.caches.clone();
    let mut resources = started.resources.clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(caches.not_synced().is_some(), "API down: not synced");

    api.set_down(false);
    wait(
        || caches.not_synced().is_none(),
        "caches synced after the API came back",
    )
    .await;
    let snap = resources
        .wait_for(|r| r.pools.contains_key("pool1"))
        .await
        .unwrap()
        .clone();
    assert_eq!(
        snap.node_labels("node1").get("rack").map(String::as_str),
        Some("rack-1")
    );
    assert!(snap.pod("default", "here").is_some(), "this node's pod is cached");
    assert!(
        snap.pod("default", "other").is_none(),
        "other nodes' pods are not (field selector)"
    );

    // A NAD appears, changes and goes while pods run.
    let nad = |subnet: &str| {
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "fast", "namespace": "default"},
        "spec": {"config": format!(r#"{{"cniVersion":"1.0.0","name":"fast","type":"lanes","topology":"layer2","subnets":"{subnet}","netAttachDefName":"default/fast"}}"#)}})
    };
    let subnet_of = |r: &crate::resources::Resources| {
        r.others
            .iter()
            .find(|o| o.metadata.name == "fast")
            .map(|o| o.spec["config"].as_str().unwrap_or("").to_string())
    };
    api.put("k8s.cni.cncf.io/v1/network-attachment-definitions", nad("10.50.0.0/24"));
    resources
        .wait_for(|r| subnet_of(r).is_some_and(|c| c.contains("10.50.0.0/24")))
        .await
        .unwrap();
    api.put("k8s.cni.cncf.io/v1/network-attachment-definitions", nad("10.60.0.0/24"));
    resources
        .wait_for(|r| subnet_of(r).is_some_and(|c| c.contains("10.60.0.0/24")))
        .await
        .unwrap();
    api.remove("k8s.cni.cncf.io/v1/network-attachment-definitions", "default", "fast");
    resources.wait_for(|r| subnet_of(r).is_none()).await.unwrap();

    // A bad pool is rejected by name and the good one stays.
    api.put(
        "lanes.dev/v1/ippools",
        json!({"apiVersion": "lanes.dev/v1", "kind": "IPPool",
        "metadata": {"name": "pool1"}, "spec": {"cidr": "10.244.0.0/16", "blockSize": 99}}),
    );
    let mut rejected = started.rejected.clone();
    let r = rejected.wait_for(|r| !r.is_empty()).await.unwrap().clone();
    assert!(
        r[0].contains("kubernetes:IPPool/pool1") && r[0].contains("blockSize"),
        "{r:?}"
    );
    assert!(resources.borrow().pools.contains_key("pool1"));

    // Cache hit: no request.
    let before = api.requests().len();
    let here = caches.pod("default", "here", Some("u-here")).await.unwrap().unwrap();
    assert_eq!(here.uid.as_deref(), Some("u-here"));
    assert_eq!(api.requests().len(), before, "served from the cache");

    // Cache miss: the kubelet's pod is in the API, its watch event not here yet. One GET finds it.
    api.pause_watches(true);
    api.put(
        "/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "new", "namespace": "default", "uid": "u-new"}, "spec": {"nodeName": "node1"}}),
    );
    let before = api.requests().len();
    let new = caches.pod("default", "new", Some("u-new")).await.unwrap();
    assert_eq!(new.and_then(|p| p.uid).as_deref(), Some("u-new"), "found by the GET");
    assert_eq!(
        api.requests()[before..],
        ["GET /api/v1/namespaces/default/pods/new".to_string()],
        "exactly one GET"
    );
    assert!(resources.borrow().pod("default", "new").is_none(), "not cached yet");
    api.pause_watches(false);
    timeout(
        resources.wait_for(|r| r.pod("default", "new").is_some()),
        "the held event",
    )
    .await
    .unwrap();
    let before = api.requests().len();
    caches.pod("default", "new", Some("u-new")).await.unwrap().unwrap();
    assert_eq!(api.requests().len(), before, "cached once the watch caught up");
    // A pod nobody has: one GET, and None.
    assert!(caches.pod("default", "missing", None).await.unwrap().is_none());
    assert_eq!(
        api.requests().last().map(String::as_str),
        Some("GET /api/v1/namespaces/default/pods/missing")
    );

    // The API goes down later: a lookup that needs the API fails naming the pod, cached pods
    // are still served, and nothing claims to be unsynced (the last snapshot stays good).
    api.set_down(true);
    let err = caches.pod("default", "ghost", None).await.unwrap_err();
    assert!(err.contains("get pod default/ghost"), "{err}");
    assert!(caches.pod("default", "here", Some("u-here")).await.unwrap().is_some());
    assert!(caches.not_synced().is_none());
    // What changes during the outage reaches the caches once the API is back (watches resume).
    api.put(
        "/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "during", "namespace": "default", "uid": "u-d"}, "spec": {"nodeName": "node1"}}),
    );
    api.remove("/v1/pods", "default", "here");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(resources.borrow().pod("default", "during").is_none(), "down: no news");
    api.set_down(false);
    timeout(
        resources.wait_for(|r| r.pod("default", "during").is_some() && r.pod("default", "here").is_none()),
        "the caches resynced after the outage",
    )
    .await
    .unwrap();
    let before = api.requests().len();
    caches.pod("default", "during", Some("u-d")).await.unwrap().unwrap();
    assert_eq!(api.requests().len(), before, "served from the resynced cache");
}

/// Calico migration (`calicoResources`): Calico's crd.projectcalico.org/v1 objects, pasted as the
/// seed has them, are the pools and BGP setup; ours of those kinds are not read, and nothing at
/// all is written to the API (Calico can be switched back on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_resources_are_read_and_never_written() {
    const CALICO: &str = "crd.projectcalico.org/v1";
    let api = FakeApi::new();
    api.put(
        &format!("{CALICO}/ippools"),
        json!({"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
               "spec": {"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Never",
                        "natOutgoing": true, "nodeSelector": "all()", "vxlanMode": "Never"}}),
    );
    api.put(
        &format!("{CALICO}/bgpconfigurations"),
        json!({"apiVersion": CALICO, "kind": "BGPConfiguration", "metadata": {"name": "default"},
               "spec": {"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": false, "asNumber": 63400}}),
    );
    api.put(
        &format!("{CALICO}/bgppeers"),
        json!({"apiVersion": CALICO, "kind": "BGPPeer", "metadata": {"name": "rack1-tor"},
               "spec": {"peerIP": "192.168.0.1", "asNumber": 63400, "nodeSelector": "rack == 'rack-1'"}}),
    );
    // Ours, of a kind Calico's replace: not read.
    api.put(
        "lanes.dev/v1/ippools",
        json!({"apiVersion": "lanes.dev/v1", "kind": "IPPool", "metadata": {"name": "ours"},
               "spec": {"cidr": "10.99.0.0/16", "blockSize": 26}}),
    );
    let (events, _) = tokio::sync::broadcast::channel(16);
    let started = super::caches::Caches::start(api.client(), limits(), "node1", true, events);
    let mut resources = started.resources.clone();
    let snap = timeout(
        resources.wait_for(|r| !r.pools.is_empty() && !r.bgp_peers.is_empty()),
        "Calico's resources loaded",
    )
    .await
    .unwrap()
    .clone();
    assert!(started.rejected.borrow().is_empty(), "{:?}", started.rejected.borrow());
    let pool = &snap.pools["default-ipv4-ippool"];
    assert_eq!(
        (pool.cidr.to_string(), pool.block_size),
        ("10.244.0.0/16".to_string(), 26)
    );
    assert!(!snap.pools.contains_key("ours"), "lanes.dev IPPools are not read");
    let bgp = &snap.bgp_configurations["default"];
    assert_eq!(
        (bgp.as_number, bgp.node_to_node_mesh_enabled),
        (Some(63400), Some(false))
    );
    assert!(snap.bgp_peers.contains_key("rack1-tor"));

    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /apis/crd.projectcalico.org/v1/bgppeers")),
        "{requests:?}"
    );
    let writes: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET ")).collect();
    assert!(writes.is_empty(), "the caches wrote: {writes:?}");
}

/// Least privilege: every call site of lanesd runs against the fake server (caches with our
/// resources and with Calico's, the pod GET fallback, network-status, and each state kind's
/// create/get/update/list/watch/delete), and the ClusterRole in examples/kubernetes/rbac.yaml
/// must grant exactly the (group, resource, verb)s those requests need: nothing missing, nothing
/// unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_exactly_the_calls_lanesd_makes() {
    use crate::workload::Cluster;
    use serde::Deserialize;
    use std::collections::BTreeSet;

    let api = FakeApi::new();
    api.put(
        "/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "busybox3", "namespace": "default", "uid": "u-1"}, "spec": {"nodeName": "node1"}}),
    );
    for calico in [false, true] {
        let (events, _) = tokio::sync::broadcast::channel(16);
        let started = super::caches::Caches::start(api.client(), limits(), "node1", calico, events);
        wait(|| started.caches.not_synced().is_none(), "caches synced").await;
        started.caches.pod("default", "not-cached", None).await.unwrap();
    }
    super::status::write(&api.client(), &limits(), "default", "busybox3", "u-1", "[]", None)
        .await
        .unwrap();
    let s = kube_store(&api);
    for (folder, key, plural) in [
        ("ipam/blocks/", "ipam/blocks/10.1.0.0-26", "ipamblocks"),
        ("nodes/", "nodes/node1", "nodestates"),
        ("secondary/node1/", "secondary/node1/ctr_1.eth1", "secondaryattachments"),
    ] {
        let _events = s.watch(folder);
        let rev = s.create(key, &json!({"n": 1})).await.unwrap();
        s.get(key).await.unwrap().expect("created");
        let rev = s.update(key, &json!({"n": 2}), &rev).await.unwrap();
        s.list(folder).await.unwrap();
        s.delete(key, &rev).await.unwrap();
        let watched = |r: &String| r.contains(&format!("/{plural}?")) && r.contains("watch=true");
        wait(|| api.requests().iter().any(watched), "the state watch").await;
    }

    let used: BTreeSet<(String, String, String)> = api.requests().iter().map(|r| rbac_need(r)).collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kubernetes/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut granted = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc = Value::deserialize(doc).unwrap();
        if doc["kind"] != "ClusterRole" {
            continue;
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        for rule in doc["rules"].as_array().unwrap() {
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    for v in strings(&rule["verbs"]) {
                        granted.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "rbac.yaml lacks {missing:?}");
    assert!(
        unused.is_empty(),
        "rbac.yaml grants what lanesd never calls: {unused:?}"
    );
}

/// What RBAC must allow for one logged request (`METHOD path?query`): (group, resource, verb).
fn rbac_need(request: &str) -> (String, String, String) {
    let (method, rest) = request.split_once(' ').unwrap();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", group, _, rest @ ..] => (*group, rest),
        _ => panic!("{request}"),
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _] => (plural.to_string(), true),
        [plural, _, sub] => (format!("{plural}/{sub}"), true),
        _ => panic!("{request}"),
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if query.split('&').any(|kv| kv == "watch=true") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => panic!("{request}"),
    };
    (group.to_string(), resource, verb.to_string())
}

/// Fails the test after 10 s instead of hanging it.
async fn timeout<F: std::future::Future>(f: F, what: &str) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
