//! CNI STATUS: ready when the datastore answers and some pool can serve this
//! node; otherwise 50 with the reason, or 51 when the node's routing is down too,
//! so that pods already running may have lost their routes to other nodes.

use super::Workloads;
use crate::cni::{CniError, NetConf};

pub async fn status(w: &Workloads, conf: &NetConf) -> Result<Vec<u8>, CniError> {
    let Some(reason) = readiness(w, conf).await else {
        return Ok(Vec::new());
    };
    Err(match w.routing_degraded() {
        Some(routing) => CniError::limited_connectivity(
            "lanesd is not ready, and existing pods may have limited connectivity",
            format!("{reason}; {routing}"),
        ),
        None => CniError::not_available("lanesd is not ready", reason),
    })
}

/// None when ready, else why not (also served by `lanesctl node status`).
pub async fn readiness(w: &Workloads, conf: &NetConf) -> Option<String> {
    if let Some(reason) = w.cluster.as_ref().and_then(|c| c.not_synced()) {
        return Some(reason);
    }
    if let Err(e) = w.ipam.all_blocks().await {
        return Some(format!("datastore {}: {e}", w.store_path.display()));
    }
    match super::add::eligible_pools(&w.resources(), &w.node, conf) {
        Ok(p) if p.is_empty() => Some(format!(
            "no enabled IPv4 IPPool in {} selects node {}",
            w.store_path.display(),
            w.node
        )),
        Ok(_) => None,
        Err(e) => Some(format!("{}: {}", e.msg, e.details)),
    }
}
