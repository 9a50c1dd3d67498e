//! CNI DEL: best effort and idempotent. Works without a netns (the pod may
//! be gone) and without an IPAM record (a half-done ADD): the veth is found
//! by its name, which is a hash of the container id and ifname.
//!
//! Order matters: the /32 route goes and the veth is cut off (down, renamed)
//! first, then the address is released, so the address is never live on two
//! pods. The kernel's slow part of deleting a veth (~20 ms of RCU waits)
//! runs after the reply; a crash before it leaves an inert `ldel*` veth that
//! start-up removes.

use std::path::Path;

use super::{handle_of, ipam_error, Workloads};
use crate::cni::{CniEnv, CniError, NetConf};
use crate::dataplane;

#[tracing::instrument(skip_all, fields(container = env.container_id.as_deref(), ifname = env.ifname.as_deref()))]
pub async fn del(w: &Workloads, env: &CniEnv, _conf: &NetConf) -> Result<Vec<u8>, CniError> {
    let handle = handle_of(env);
    // The pod's secondary lanes go with its primary interface.
    super::secondary::detach(w, &handle.container_id, None).await?;
    let held = w.ipam.held_by(&handle).await;
    let addresses: Vec<_> = held.iter().map(|(ip, _, _)| super::add::host_net(*ip)).collect();
    let host_ifname = dataplane::host_ifname(&handle.container_id, &handle.ifname);
    // The pod end is renamed too, so an immediate re-ADD finds its name free.
    let netns = env
        .netns
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| held.first().map(|(_, a, _)| a.netns.clone()).filter(|n| !n.is_empty()));
    let slow = w
        .dataplane
        .teardown_pod_deferred(&host_ifname, &addresses, netns.as_deref().map(Path::new))
        .await
        .map_err(|e| CniError::dataplane("pod network teardown failed", e.to_string()))?;
    tokio::spawn(async move {
        match slow.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "deferred veth delete failed; start-up will reap it"),
            Err(e) => tracing::warn!(error = %e, "deferred veth delete task failed"),
        }
    });
    let released = w.ipam.release(&handle).await.map_err(ipam_error)?;
    if !released.is_empty() {
        w.metrics.attachments.dec();
        let mut att = held
            .first()
            .map(|(ip, a, _)| crate::api::node::attachment_proto(*ip, a))
            .unwrap_or_default();
        att.ips = released
            .iter()
            .map(|ip| super::add::host_net(*ip).to_string())
            .collect();
        w.emit("detached", format!("{handle} released {released:?}"), Some(att));
    }
    Ok(Vec::new())
}
