//! CNI CHECK: what the runtime's prevResult says must still be true — the
//! interface, its addresses and routes, the host side, and the IPAM
//! reservation.

use std::path::PathBuf;

use super::{add::check_netns, handle_of, Workloads};
use crate::cni::{CniEnv, CniError, NetConf};
use crate::dataplane::{self, CheckError, PodSpec};

#[tracing::instrument(skip_all, fields(container = env.container_id.as_deref(), ifname = env.ifname.as_deref()))]
pub async fn check(w: &Workloads, env: &CniEnv, conf: &NetConf) -> Result<Vec<u8>, CniError> {
    let netns = env.netns.clone().unwrap_or_default();
    let ifname = env.ifname.clone().unwrap_or_default();
    check_netns(&netns)?;
    let prev = conf
        .parsed_prev_result()?
        .ok_or_else(|| CniError::invalid_config("prevResult missing", "CHECK needs the ADD result in prevResult"))?;
    // Our interface in the result: the one named CNI_IFNAME inside a sandbox.
    let idx = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.is_some())
        .ok_or_else(|| {
            CniError::invalid_config(
                "prevResult has no such interface",
                format!("prevResult.interfaces has no sandbox interface named CNI_IFNAME={ifname}"),
            )
        })?;
    let expected: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(idx))
        .map(|ip| ip.address)
        .collect();
    let handle = handle_of(env);
    let held: Vec<_> = w.ipam.held_by(&handle).await.into_iter().map(|(ip, _, _)| ip).collect();
    let mut problems = Vec::new();
    for net in &expected {
        if !held.contains(&net.addr()) {
            problems.push(format!(
                "IPAM reservation for {} under handle {handle} is missing",
                net.addr()
            ));
        }
    }
    if expected.is_empty() {
        problems.push(format!("prevResult.ips has no address for interface {idx} ({ifname})"));
    }
    let spec = PodSpec {
        netns: PathBuf::from(&netns),
        container_ifname: ifname.clone(),
        host_ifname: dataplane::host_ifname(&handle.container_id, &handle.ifname),
        addresses: expected.iter().map(|n| super::add::host_net(n.addr())).collect(),
        // Results before 1.1.0 carry no MTU: then it is what ADD chose, from the config.
        mtu: prev.interfaces[idx].mtu.or(conf.mtu).unwrap_or(w.default_mtu),
    };
    match w.dataplane.check_pod(&spec).await {
        Ok(()) => {}
        Err(CheckError::Mismatch(items)) => problems.extend(items),
        Err(CheckError::Dataplane(e)) => return Err(super::add::dataplane_error(&e, &netns, &ifname)),
    }
    if problems.is_empty() {
        Ok(Vec::new())
    } else {
        Err(CniError::dataplane("CHECK failed", problems.join("; ")))
    }
}
