//! Reflector caches: what ADD, STATUS, BGP and the lanes read comes from watches, never from a GET
//! per call.
//!
//! One reflector per kind — our resource CRDs (or Calico's, read-only, with
//! `datastore.calicoResources`), NADs in every namespace, the Pods of this node (field selector
//! `spec.nodeName`), and Nodes (labels for selectors, Calico's BGP annotations, the InternalIP). Any change
//! rebuilds the same [`Resources`] snapshot the file datastore makes, through the same parser and
//! [`Loader`] (so a bad object is rejected, named, and the last good version stays). The snapshot
//! is published once every reflector has listed ("synced"); until then STATUS answers 50 and ADD
//! 11. A pod the cache does not have yet (or has with another UID) costs one GET.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, watch, Notify};

use super::Limits;
use crate::resources::loader::{LoadedFile, LoadedFiles};
use crate::resources::{parse_object, Loader, PodResource, Rejection, Resources};
use crate::workload::Cluster;
use lanes_proto::v1 as pb;

/// The resource kinds read as untyped objects: (kind, plural).
const RESOURCE_KINDS: &[(&str, &str)] = &[
    ("IPPool", "ippools"),
    ("IPAMConfig", "ipamconfigs"),
    ("BGPConfiguration", "bgpconfigurations"),
    ("BGPPeer", "bgppeers"),
];
/// The kinds `calicoResources` takes from Calico instead (IPAMConfig stays ours).
const CALICO_KINDS: &[&str] = &["IPPool", "BGPConfiguration", "BGPPeer"];
pub const CALICO_GROUP: &str = "crd.projectcalico.org";
const NAD_GROUP: &str = "k8s.cni.cncf.io";

/// Calico's (Kubernetes datastore) node annotations for BGP, and ours, which win.
const NODE_BGP_ANNOTATIONS: &[(&str, &str)] = &[
    ("projectcalico.org/IPv4Address", "ipv4Address"),
    ("projectcalico.org/ASNumber", "asNumber"),
    ("projectcalico.org/RouteReflectorClusterID", "routeReflectorClusterID"),
    ("lanes.dev/ipv4-address", "ipv4Address"),
    ("lanes.dev/as-number", "asNumber"),
    ("lanes.dev/route-reflector-cluster-id", "routeReflectorClusterID"),
];

/// Which API serves each untyped kind, for `calicoResources` on or off.
pub fn resource_apis(calico: bool) -> Vec<ApiResource> {
    let mut apis: Vec<ApiResource> = RESOURCE_KINDS
        .iter()
        .map(|(kind, plural)| {
            let group = if calico && CALICO_KINDS.contains(kind) {
                CALICO_GROUP
            } else {
                super::crds::GROUP
            };
            api_resource(group, kind, plural)
        })
        .collect();
    apis.push(api_resource(
        NAD_GROUP,
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
    ));
    apis
}

fn api_resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The caches, and the [`Cluster`] view of them that workloads use.
pub struct Caches {
    node: String,
    client: kube::Client,
    limits: Arc<Limits>,
    objects: Vec<(ApiResource, Store<DynamicObject>)>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    synced: watch::Receiver<bool>,
    changed: Arc<Notify>,
}

/// What [`Caches::start`] hands the daemon.
pub struct Started {
    pub caches: Arc<Caches>,
    pub resources: watch::Receiver<Arc<Resources>>,
    pub rejected: watch::Receiver<Vec<String>>,
}

impl Caches {
    /// Starts every reflector; the snapshot is rebuilt on each change from then on.
    pub fn start(
        client: kube::Client,
        limits: Arc<Limits>,
        node: &str,
        calico: bool,
        events: broadcast::Sender<pb::Event>,
    ) -> Started {
        let changed = Arc::new(Notify::new());
        let mut pending = Vec::new();
        let mut objects = Vec::new();
        for ar in resource_apis(calico) {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
            let store = writer.as_reader();
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
            pending.push(spawn_driver(&ar.kind, stream, changed.clone()));
            objects.push((ar, store));
        }
        let pods_api: Api<Pod> = Api::all(client.clone());
        let (pods, writer) = reflector::store::<Pod>();
        let pod_cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        pending.push(spawn_driver(
            "Pod",
            reflector::reflector(writer, watcher(pods_api, pod_cfg).default_backoff()),
            changed.clone(),
        ));
        let nodes_api: Api<Node> = Api::all(client.clone());
        let (nodes, writer) = reflector::store::<Node>();
        pending.push(spawn_driver(
            "Node",
            reflector::reflector(writer, watcher(nodes_api, watcher::Config::default()).default_backoff()),
            changed.clone(),
        ));

        let (synced_tx, synced) = watch::channel(false);
        tokio::spawn(async move {
            for ready in pending {
                let _ = ready.await;
            }
            synced_tx.send_replace(true);
            tracing::info!("kubernetes caches synced");
        });
        let (tx, resources) = watch::channel(Arc::new(Resources::default()));
        let (rtx, rejected) = watch::channel(Vec::new());
        let caches = Arc::new(Caches {
            node: node.to_string(),
            client,
            limits,
            objects,
            pods,
            nodes,
            synced,
            changed,
        });
        tokio::spawn(caches.clone().publish(tx, rtx, events));
        Started {
            caches,
            resources,
            rejected,
        }
    }

    /// Rebuilds and publishes the snapshot after each change (coalesced), once synced.
    async fn publish(
        self: Arc<Self>,
        tx: watch::Sender<Arc<Resources>>,
        rejected: watch::Sender<Vec<String>>,
        events: broadcast::Sender<pb::Event>,
    ) {
        let mut loader = Loader::new();
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
        loop {
            let out = loader.apply(self.documents());
            let texts: Vec<String> = out.rejections.iter().map(Rejection::to_string).collect();
            for r in &texts {
                tracing::warn!(rejection = %r, "resource rejected; keeping the last good state");
                let _ = events.send(pb::Event {
                    time_unix_ms: crate::workload::now_unix_ms(),
                    kind: "resource-rejected".into(),
                    message: r.clone(),
                    ..Default::default()
                });
            }
            rejected.send_replace(texts);
            if out.changed {
                tracing::info!(
                    pools = out.resources.pools.len(),
                    nodes = out.resources.nodes.len(),
                    pods = out.resources.pods.len(),
                    "resources loaded from kubernetes"
                );
                tx.send_replace(Arc::new(out.resources));
            }
            self.changed.notified().await;
            // Events come in bursts (a LIST, a rollout): one rebuild per burst.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every cached object as a parsed document, in a stable order.
    fn documents(&self) -> LoadedFiles {
        let mut docs: Vec<(String, Value)> = Vec::new();
        for (ar, store) in &self.objects {
            for obj in store.state() {
                docs.push(object_doc(ar, &obj));
            }
        }
        for pod in self.pods.state() {
            docs.push(pod_doc(&pod));
        }
        for node in self.nodes.state() {
            docs.push(node_doc(&node));
        }
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        loaded_files(docs)
    }

    fn cached_pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }
}

/// Drives one reflector stream forever; the returned receiver fires once it has listed.
fn spawn_driver<K, S>(what: &str, stream: S, changed: Arc<Notify>) -> tokio::sync::oneshot::Receiver<()>
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let what = what.to_string();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    changed.notify_one();
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(kind = %what, error = %e, "watch failed; retrying with backoff"),
            }
        }
    });
    ready
}

/// Source names for rejections: `kubernetes:IPPool/default-pool`.
fn source_of(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("kubernetes:{kind}/{ns}/{name}"),
        None => format!("kubernetes:{kind}/{name}"),
    }
}

fn parsed(source: String, doc: Value) -> LoadedFile {
    LoadedFile {
        path: source.clone().into(),
        documents: Ok(vec![parse_object(&source, 1, doc)]),
        source,
    }
}

fn loaded_files(docs: Vec<(String, Value)>) -> LoadedFiles {
    LoadedFiles {
        files: docs.into_iter().map(|(source, doc)| parsed(source, doc)).collect(),
    }
}

/// What the resource parser needs of an object's metadata (server-set fields dropped).
fn meta_doc(
    name: Option<&str>,
    namespace: Option<&str>,
    uid: Option<&str>,
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name.unwrap_or_default()));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    if let Some(uid) = uid {
        m.insert("uid".into(), json!(uid));
    }
    if let Some(l) = labels.filter(|l| !l.is_empty()) {
        m.insert("labels".into(), json!(l));
    }
    // kubectl's last-applied copy is a second copy of the object, not an annotation to act on.
    let annotations: BTreeMap<&String, &String> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
        .collect();
    if !annotations.is_empty() {
        m.insert("annotations".into(), json!(annotations));
    }
    Value::Object(m)
}

/// An untyped object (our CRDs, Calico's, a NAD) as the document the parser takes.
pub fn object_doc(ar: &ApiResource, obj: &DynamicObject) -> (String, Value) {
    let md = &obj.metadata;
    let name = md.name.as_deref().unwrap_or_default();
    let source = source_of(&ar.kind, md.namespace.as_deref(), name);
    let mut doc = json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": meta_doc(md.name.as_deref(), md.namespace.as_deref(), md.uid.as_deref(),
                             md.labels.as_ref(), md.annotations.as_ref()),
    });
    if let Some(spec) = obj.data.get("spec") {
        doc["spec"] = spec.clone();
    }
    (source, doc)
}

/// A pod of this node: its identity, labels and annotations.
pub fn pod_doc(pod: &Pod) -> (String, Value) {
    let md = &pod.metadata;
    let name = md.name.as_deref().unwrap_or_default();
    let source = source_of("Pod", md.namespace.as_deref(), name);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta_doc(md.name.as_deref(), Some(md.namespace.as_deref().unwrap_or("default")),
                             md.uid.as_deref(), md.labels.as_ref(), md.annotations.as_ref()),
    });
    (source, doc)
}

/// A node: labels for selectors, `spec.bgp` from Calico's (or our) node annotations, and its
/// InternalIP (BGP's address of last resort, see `NodeResource::internal_ipv4`).
pub fn node_doc(node: &Node) -> (String, Value) {
    let md = &node.metadata;
    let name = md.name.as_deref().unwrap_or_default();
    let mut bgp = Map::new();
    let annotations = md.annotations.clone().unwrap_or_default();
    for (annotation, field) in NODE_BGP_ANNOTATIONS {
        if let Some(v) = annotations.get(*annotation) {
            // Annotations are strings; the AS number field is a number.
            let value = match (*field, v.parse::<u64>()) {
                ("asNumber", Ok(n)) => json!(n),
                _ => json!(v),
            };
            bgp.insert((*field).into(), value);
        }
    }
    let mut doc = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta_doc(md.name.as_deref(), None, None, md.labels.as_ref(), None),
        "spec": {},
    });
    if !bgp.is_empty() {
        doc["spec"]["bgp"] = Value::Object(bgp);
    }
    // The InternalIP goes where the parser reads it (`status`), not into spec.bgp, where it would
    // override the address lanesd autodetects on the primary (BGP) interface.
    let internal: Vec<Value> = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| json!({"type": a.type_, "address": a.address}))
        .collect();
    if !internal.is_empty() {
        doc["status"] = json!({ "addresses": internal });
    }
    (source_of("Node", None, name), doc)
}

/// The parsed pod of a Pod object.
fn pod_resource(pod: &Pod) -> Option<PodResource> {
    let (source, doc) = pod_doc(pod);
    match parse_object(&source, 1, doc).result {
        Ok(crate::resources::Resource::Pod(p)) => Some(p),
        _ => None,
    }
}

#[async_trait]
impl Cluster for Caches {
    fn not_synced(&self) -> Option<String> {
        (!*self.synced.borrow())
            .then(|| "the kubernetes caches have not synced yet (is the API server reachable?)".into())
    }

    async fn pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<Option<PodResource>, String> {
        if let Some(pod) = self.cached_pod(namespace, name) {
            if uid.is_none() || pod.meta().uid.as_deref() == uid {
                return Ok(pod_resource(&pod));
            }
        }
        // Not there yet (the watch lags the kubelet), or an older pod of the same name.
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = self
            .limits
            .run(api.get_opt(name))
            .await
            .map_err(|e| format!("get pod {namespace}/{name}: {e}"))?;
        Ok(pod.as_ref().and_then(pod_resource))
    }

    async fn write_network_status(&self, namespace: &str, name: &str, uid: &str, status: &str) -> Result<(), String> {
        // The cached copy saves the GET; a stale one costs a 409 and a read, never a wrong write.
        let cached = self
            .cached_pod(namespace, name)
            .filter(|p| p.meta().uid.as_deref() == Some(uid))
            .map(|p| (*p).clone());
        super::status::write(&self.client, &self.limits, namespace, name, uid, status, cached).await
    }

    fn node(&self) -> &str {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_resources_switch_the_group_of_three_kinds() {
        let ours: Vec<String> = resource_apis(false).iter().map(|a| a.api_version.clone()).collect();
        assert_eq!(
            ours,
            [
                "lanes.dev/v1",
                "lanes.dev/v1",
                "lanes.dev/v1",
                "lanes.dev/v1",
                "k8s.cni.cncf.io/v1"
            ]
        );
        let calico: Vec<(String, String)> = resource_apis(true)
            .iter()
            .map(|a| (a.kind.clone(), a.api_version.clone()))
            .collect();
        assert!(calico.contains(&("IPPool".into(), "crd.projectcalico.org/v1".into())));
        assert!(calico.contains(&("BGPPeer".into(), "crd.projectcalico.org/v1".into())));
        assert!(calico.contains(&("IPAMConfig".into(), "lanes.dev/v1".into())));
    }

    #[test]
    fn objects_become_documents_the_parser_accepts() {
        let ar = api_resource(CALICO_GROUP, "IPPool", "ippools");
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool", "resourceVersion": "7", "uid": "u1",
                          "managedFields": [{"manager": "kubectl"}], "creationTimestamp": "2026-01-01T00:00:00Z",
                          "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Never", "natOutgoing": true,
                     "nodeSelector": "all()", "vxlanMode": "Never"}
        }))
        .unwrap();
        let (source, doc) = object_doc(&ar, &obj);
        assert_eq!(source, "kubernetes:IPPool/default-ipv4-ippool");
        let parsed = parse_object(&source, 1, doc).result.unwrap();
        assert!(matches!(parsed, crate::resources::Resource::IpPool(p) if p.cidr.to_string() == "10.244.0.0/16"));
    }

    #[test]
    fn a_bad_object_is_rejected_naming_it_and_the_field() {
        let ar = api_resource("lanes.dev", "IPPool", "ippools");
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "lanes.dev/v1", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"cidr": "10.0.0.0/33"}
        }))
        .unwrap();
        let (source, doc) = object_doc(&ar, &obj);
        let err = parse_object(&source, 1, doc).result.unwrap_err().to_string();
        assert!(
            err.contains("kubernetes:IPPool/p") && err.contains("spec.cidr"),
            "{err}"
        );
    }

    #[test]
    fn nodes_carry_labels_and_calico_bgp_annotations() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "work01", "labels": {"rack": "rack-1"},
                          "annotations": {"projectcalico.org/IPv4Address": "192.168.100.11/24",
                                          "projectcalico.org/ASNumber": "63400",
                                          "lanes.dev/route-reflector-cluster-id": "244.0.0.1"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.122.11"}]}
        }))
        .unwrap();
        let (source, doc) = node_doc(&node);
        let crate::resources::Resource::Node(n) = parse_object(&source, 1, doc).result.unwrap() else {
            panic!("not a node")
        };
        assert_eq!(n.labels.get("rack").map(String::as_str), Some("rack-1"));
        assert_eq!(n.as_number(), Some(63400));
        assert_eq!(
            n.ipv4_address().map(|a| a.to_string()).as_deref(),
            Some("192.168.100.11")
        );
        assert_eq!(
            n.route_reflector_cluster_id().map(|a| a.to_string()).as_deref(),
            Some("244.0.0.1")
        );
        assert_eq!(
            n.internal_ipv4.map(|a| a.to_string()).as_deref(),
            Some("192.168.122.11")
        );
    }

    #[test]
    fn nodes_carry_their_internal_ip_without_making_it_the_bgp_address() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "work02"},
            "status": {"addresses": [{"type": "Hostname", "address": "work02"},
                                     {"type": "ExternalIP", "address": "203.0.113.12"},
                                     {"type": "InternalIP", "address": "192.168.122.12"}]}
        }))
        .unwrap();
        let (source, doc) = node_doc(&node);
        let crate::resources::Resource::Node(n) = parse_object(&source, 1, doc).result.unwrap() else {
            panic!("not a node")
        };
        assert_eq!(
            n.internal_ipv4.map(|a| a.to_string()).as_deref(),
            Some("192.168.122.12")
        );
        assert_eq!(n.ipv4_address(), None, "spec.bgp stays the annotations' alone");
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "work03"}})).unwrap();
        let (source, doc) = node_doc(&bare);
        let crate::resources::Resource::Node(n) = parse_object(&source, 1, doc).result.unwrap() else {
            panic!("not a node")
        };
        assert_eq!(n.internal_ipv4, None);
    }

    #[test]
    fn pods_keep_identity_and_annotations_only() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "busybox3", "namespace": "default", "uid": "u-1",
                          "annotations": {"k8s.v1.cni.cncf.io/networks": "[{\"name\":\"yusur-ovn\"}]"}},
            "spec": {"nodeName": "work01", "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        let p = pod_resource(&pod).unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.uid.as_deref()),
            ("default", "busybox3", Some("u-1"))
        );
        assert!(p
            .annotation("k8s.v1.cni.cncf.io/networks")
            .unwrap()
            .contains("yusur-ovn"));
    }
}
