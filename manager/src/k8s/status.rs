//! `k8s.v1.cni.cncf.io/network-status` on the pod, through the pods/status subresource (what
//! Multus does; the kubelet's RBAC for lanesd needs only `patch` on `pods/status`).
//!
//! The first attempt starts from the watch cache's copy of the pod when there is one (no GET per
//! ADD); later attempts read it. Each checks the UID is the one the runtime gave (a pod recreated
//! under the same name must not get another sandbox's status), and sends a merge patch carrying
//! the `resourceVersion` it started from, so a concurrent writer (or a cache that lags) makes it
//! fail with 409 instead of being overwritten; then it reads again and retries, a bounded number
//! of times.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Limits;
use crate::secondary::status::NETWORK_STATUS_ANNOTATION;

/// Attempts before giving up on conflicts.
pub const MAX_ATTEMPTS: usize = 5;

pub async fn write(
    client: &kube::Client,
    limits: &Limits,
    namespace: &str,
    name: &str,
    uid: &str,
    status: &str,
    cached: Option<Pod>,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let what = format!("pod {namespace}/{name}");
    let mut cached = cached;
    for _ in 0..MAX_ATTEMPTS {
        let pod = match cached.take() {
            Some(pod) => pod,
            None => limits
                .run(api.get_opt(name))
                .await
                .map_err(|e| format!("get {what}: {e}"))?
                .ok_or_else(|| format!("{what} is gone; network-status not written"))?,
        };
        let found = pod.metadata.uid.as_deref().unwrap_or_default();
        if found != uid {
            return Err(format!(
                "{what} has UID {found}, not K8S_POD_UID {uid}; network-status not written"
            ));
        }
        let current = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION));
        if current.map(String::as_str) == Some(status) {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "annotations": {NETWORK_STATUS_ANNOTATION: status},
        }});
        match limits
            .run(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            Err(e) => return Err(format!("patch {what} status: {e}")),
        }
    }
    Err(format!(
        "patch {what} status: still conflicting after {MAX_ATTEMPTS} attempts"
    ))
}
