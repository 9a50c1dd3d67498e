//! What workloads need from a cluster datastore (kubernetes) beyond the resource snapshot:
//! readiness, a pod the cache may not have yet, and a place for `network-status`. The file
//! datastore has none of it (`Workloads::cluster` is `None`): pods come from Pod documents and
//! network-status is served from the daemon's own state.

use async_trait::async_trait;

use crate::resources::PodResource;

#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// None once the caches have synced; else why not (STATUS 50, ADD 11).
    fn not_synced(&self) -> Option<String>;
    /// The pod from the cache when it is there with `uid` (or `uid` is not known), else from one
    /// GET. `Ok(None)`: the API server has no such pod.
    async fn pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<Option<PodResource>, String>;
    /// Writes `k8s.v1.cni.cncf.io/network-status` on the pod, only if its UID is `uid`.
    async fn write_network_status(&self, namespace: &str, name: &str, uid: &str, status: &str) -> Result<(), String>;
    /// This node's name, as the caches filter pods by it.
    fn node(&self) -> &str;
}

/// What STATUS asks of the node's routing (BGP) when lanesd is not ready: whether pods already
/// running may have lost their routes to other nodes (CNI code 51 instead of 50).
pub trait RoutingHealth: Send + Sync + 'static {
    /// Why existing pods may have limited connectivity, if they may; None when routing is fine
    /// or not lanesd's to judge (BGP off).
    fn degraded(&self) -> Option<String>;
}
