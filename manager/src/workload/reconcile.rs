//! Start-up repair: make the kernel match the store after a restart or a
//! crash, without touching a working pod.
//!
//! - every confirmed block affine to this node has its blackhole route, and
//!   no blackhole of ours is left for a block we no longer own;
//! - a `lan*` veth that belongs to no allocation (a crash between creating it
//!   and a DEL's release, or an ADD rolled back by a kill) is removed.
//!
//! Allocations without a veth are kept: the runtime still owns them and
//! will DEL (or re-ADD, which reuses the address).

use std::collections::HashSet;

use super::Workloads;
use crate::dataplane;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub blackholes_added: usize,
    pub blackholes_removed: usize,
    pub orphan_links_removed: usize,
    pub errors: Vec<String>,
}

pub async fn reconcile(w: &Workloads) -> Repairs {
    let mut r = Repairs::default();
    match w.dataplane.reap_deferred().await {
        Ok(n) => r.orphan_links_removed += n,
        Err(e) => r.errors.push(format!("reap ldel* veths: {e}")),
    }
    let confirmed: HashSet<_> = w.ipam.confirmed_blocks().await.into_iter().collect();
    let present: HashSet<_> = match w.dataplane.list_blackholes().await {
        Ok(b) => b.into_iter().collect(),
        Err(e) => {
            r.errors.push(format!("list blackholes: {e}"));
            HashSet::new()
        }
    };
    for block in confirmed.difference(&present) {
        match w.dataplane.ensure_blackhole(*block).await {
            Ok(()) => r.blackholes_added += 1,
            Err(e) => r.errors.push(format!("blackhole {block}: {e}")),
        }
    }
    for block in present.difference(&confirmed) {
        match w.dataplane.remove_blackhole(*block).await {
            Ok(()) => r.blackholes_removed += 1,
            Err(e) => r.errors.push(format!("remove blackhole {block}: {e}")),
        }
    }
    let wanted: HashSet<String> = w
        .ipam
        .local_allocations()
        .await
        .iter()
        .map(|(_, a, _)| dataplane::host_ifname(&a.container_id, &a.ifname))
        .collect();
    match w.dataplane.list_host_links("lan").await {
        Ok(links) => {
            for (name, _) in links.into_iter().filter(|(n, _)| !wanted.contains(n)) {
                match w.dataplane.teardown_pod(&name, &[]).await {
                    Ok(()) => r.orphan_links_removed += 1,
                    Err(e) => r.errors.push(format!("orphan veth {name}: {e}")),
                }
            }
        }
        Err(e) => r.errors.push(format!("list veths: {e}")),
    }
    for e in &r.errors {
        tracing::warn!(error = %e, "reconcile");
    }
    tracing::info!(
        blackholes_added = r.blackholes_added,
        blackholes_removed = r.blackholes_removed,
        orphan_links_removed = r.orphan_links_removed,
        "reconciled the dataplane with the store"
    );
    r
}
