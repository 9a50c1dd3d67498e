//! CNI GC: release what the runtime no longer knows. Every attachment of
//! this network on this node that is not in `cni.dev/valid-attachments` is
//! torn down and its address released; `lan*` veths that belong to no
//! attachment at all (left by a crash) are removed too. Errors do not stop
//! the sweep; they are all reported at the end.

use std::collections::HashSet;

use super::{add::host_net, Workloads};
use crate::cni::{AttachmentKey, CniError, NetConf};
use crate::dataplane;
use crate::ipam::HandleKey;

pub async fn gc(w: &Workloads, conf: &NetConf) -> Result<Vec<u8>, CniError> {
    // Without the list a GC would tear down every attachment: refuse instead of guessing.
    let Some(valid) = conf.valid_attachments.clone() else {
        return Err(CniError::invalid_config(
            "GC without valid attachments",
            "`cni.dev/valid-attachments` (or the older `cni.dev/attachments`) is missing: GC needs the list of attachments to keep",
        ));
    };
    let valid: HashSet<AttachmentKey> = valid.into_iter().collect();
    let mut errors = Vec::new();
    let mut removed = 0usize;
    // Secondary (OVN) lanes first: they tell whose a record is by the pod's eth0 allocation.
    match super::secondary::gc(w, &conf.name, &valid).await {
        Ok(n) => removed += n,
        Err(e) => errors.push(format!("secondary: {e}")),
    }
    let allocations = w.ipam.local_allocations().await;
    let mut keep_links = HashSet::new();
    for (ip, a, _) in &allocations {
        let key = AttachmentKey {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        };
        let host_ifname = dataplane::host_ifname(&a.container_id, &a.ifname);
        // Other networks' attachments are their GC's business.
        if a.network != conf.name || valid.contains(&key) {
            keep_links.insert(host_ifname);
            continue;
        }
        if let Err(e) = w.dataplane.teardown_pod(&host_ifname, &[host_net(*ip)]).await {
            errors.push(format!("{}/{}: {e}", a.container_id, a.ifname));
            keep_links.insert(host_ifname);
            continue;
        }
        match w.ipam.release(&HandleKey::new(&a.container_id, &a.ifname)).await {
            Ok(_) => removed += 1,
            Err(e) => errors.push(format!("{}/{}: release {ip}: {e}", a.container_id, a.ifname)),
        }
    }
    match w.dataplane.list_host_links("lan").await {
        Ok(links) => {
            for (name, _) in links {
                if keep_links.contains(&name) {
                    continue;
                }
                match w.dataplane.teardown_pod(&name, &[]).await {
                    Ok(()) => removed += 1,
                    Err(e) => errors.push(format!("orphan veth {name}: {e}")),
                }
            }
        }
        Err(e) => errors.push(format!("list veths: {e}")),
    }
    w.emit(
        "gc",
        format!("network {}: removed {removed} stale attachment(s)", conf.name),
        None,
    );
    if errors.is_empty() {
        Ok(Vec::new())
    } else {
        Err(CniError::dataplane("GC left some resources", errors.join("; ")))
    }
}
