//! CNI ADD: pick pools, take an address, wire the veth, answer the result.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::{handle_of, ipam_error, now_unix_ms, version_of, Workloads};
use crate::cni::{CniEnv, CniError, CniResult, Interface, IpConfig, NetConf, Route};
use crate::dataplane::{self, PodSpec, POD_GATEWAY_V4};
use crate::ipam::{Allocation, Policy, PoolChoice};
use crate::resources::Resources;

#[tracing::instrument(skip_all, fields(container = env.container_id.as_deref(), ifname = env.ifname.as_deref()))]
pub async fn add(w: &Workloads, env: &CniEnv, conf: &NetConf) -> Result<Vec<u8>, CniError> {
    let netns = env.netns.clone().unwrap_or_default();
    let ifname = env.ifname.clone().unwrap_or_default();
    let container_id = env.container_id.clone().unwrap_or_default();
    check_netns(&netns)?;
    let pod = env.pod_identity()?;
    // A plugin chained after another must pass the earlier result on.
    let mut result = conf.parsed_prev_result()?.unwrap_or_default();

    let res = w.resources();
    // Under Multus (`"multus": true`) the pod's selection is Multus' to carry out.
    let networks = match &pod {
        Some(p) if !conf.multus => pod_networks(w, &res, p).await?,
        _ => None,
    };
    let pools = eligible_pools(&res, &w.node, conf)?;
    let policy = Policy {
        strict_affinity: res.ipam_config.strict_affinity,
        max_blocks_per_host: res.ipam_config.max_blocks_per_host,
        auto_allocate_blocks: res.ipam_config.auto_allocate_blocks,
    };
    let alloc = Allocation {
        container_id: container_id.clone(),
        ifname: ifname.clone(),
        node: w.node.clone(),
        netns: netns.clone(),
        pod_namespace: pod.as_ref().map(|p| p.namespace.clone()).unwrap_or_default(),
        pod_name: pod.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
        pod_uid: pod.as_ref().and_then(|p| p.uid.clone()).unwrap_or_default(),
        network: conf.name.clone(),
        created_unix: now_unix_ms() / 1000,
    };
    let record = alloc.clone();
    let mut secondary = CniResult::default();
    let host_ifname = dataplane::host_ifname(&container_id, &ifname);
    let mtu = conf.mtu.unwrap_or(w.default_mtu);
    let mut spec = PodSpec {
        netns: PathBuf::from(&netns),
        container_ifname: ifname.clone(),
        host_ifname: host_ifname.clone(),
        addresses: Vec::new(),
        mtu,
    };
    // The veth needs no address, so it is made while IPAM persists one
    // (the durable write and the link creation are the two slow steps).
    let (created, assigned) = tokio::join!(create_link(w, &spec), w.ipam.assign(alloc, &pools, policy));
    let (wiring, assigned) = match (created, assigned) {
        (Ok(wiring), Ok(a)) => (wiring, a),
        (created, assigned) => {
            if created.is_ok() {
                w.dataplane.remove_pod_link(&host_ifname).await;
            }
            if assigned.is_ok() {
                release(w, env).await;
            }
            return Err(match (created, assigned) {
                (Err(e), _) => dataplane_error(&e, &netns, &ifname),
                (_, Err(e)) => ipam_error(e),
                _ => unreachable!("both succeeded"),
            });
        }
    };
    let address = host_net(assigned.ip);
    spec.addresses = vec![address];
    let links = match w.dataplane.configure_pod(&spec, wiring).await {
        Ok(links) => links,
        Err(e) => {
            // configure_pod already removed the veth; give the address back.
            release(w, env).await;
            return Err(dataplane_error(&e, &netns, &ifname));
        }
    };

    // The networks the pod selects, after eth0; any failure undoes eth0 too.
    if let Some(p) = &pod {
        let ctx = super::secondary::PodContext {
            container_id: container_id.clone(),
            netns: netns.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            uid: p.uid.clone(),
            primary_ip: match assigned.ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            },
            networks,
        };
        match super::secondary::attach_selected(w, &ctx).await {
            Ok(extra) => secondary = extra,
            Err(e) => {
                let _ = w.dataplane.teardown_pod(&host_ifname, &[address]).await;
                release(w, env).await;
                return Err(e);
            }
        }
    }
    result.append(CniResult {
        interfaces: vec![
            Interface {
                name: host_ifname.clone(),
                mac: Some(links.host_mac.clone()),
                ..Default::default()
            },
            Interface {
                name: ifname.clone(),
                mac: Some(links.container_mac.clone()),
                sandbox: Some(netns.clone()),
                mtu: Some(mtu),
                ..Default::default()
            },
        ],
        ips: vec![IpConfig::new(address, Some(IpAddr::V4(POD_GATEWAY_V4)), Some(1))],
        routes: vec![Route::new(
            "0.0.0.0/0".parse().expect("literal"),
            Some(IpAddr::V4(POD_GATEWAY_V4)),
        )],
        ..Default::default()
    });
    result.append(secondary);
    let mut attachment = crate::api::node::attachment_proto(assigned.ip, &record);
    attachment.mac = links.container_mac;
    attachment.mtu = mtu;
    w.emit(
        "attached",
        format!("{container_id} {ifname} {address} on {host_ifname}"),
        Some(attachment),
    );
    // Multus writes network-status itself, from every delegate's result.
    if let (Some(cluster), Some(p), false) = (&w.cluster, &pod, conf.multus) {
        publish_network_status(w, cluster.as_ref(), p).await;
    }
    Ok(result.to_bytes(version_of(conf)))
}

/// The pod's `k8s.v1.cni.cncf.io/networks`: from its Pod document (file datastore), or from the
/// kubernetes caches, checked against `K8S_POD_UID` so an older pod of the same name never lends
/// its selection.
async fn pod_networks(
    w: &Workloads,
    res: &Resources,
    pod: &crate::cni::PodIdentity,
) -> Result<Option<String>, CniError> {
    const KEY: &str = "k8s.v1.cni.cncf.io/networks";
    let Some(cluster) = &w.cluster else {
        return Ok(res
            .pod(&pod.namespace, &pod.name)
            .and_then(|p| p.annotation(KEY))
            .map(str::to_string));
    };
    let what = format!("pod {}/{}", pod.namespace, pod.name);
    let found = cluster
        .pod(&pod.namespace, &pod.name, pod.uid.as_deref())
        .await
        .map_err(|e| CniError::try_again_later("cannot read the pod from the API server", e))?
        .ok_or_else(|| {
            CniError::try_again_later(
                "pod not found",
                format!("K8S_POD_NAMESPACE/K8S_POD_NAME: the API server has no {what}"),
            )
        })?;
    if let (Some(want), Some(have)) = (pod.uid.as_deref(), found.uid.as_deref()) {
        if want != have {
            return Err(CniError::invalid_env(
                "pod UID mismatch",
                format!("K8S_POD_UID={want}, but {what} has UID {have} (recreated under the same name?)"),
            ));
        }
    }
    Ok(found.annotation(KEY).map(str::to_string))
}

/// Writes the pod's network-status once, after everything is wired. A failure is logged and
/// sent as an event, not returned: the pod's networking works either way.
async fn publish_network_status(w: &Workloads, cluster: &dyn super::Cluster, pod: &crate::cni::PodIdentity) {
    let Some(uid) = pod.uid.as_deref() else { return };
    let atts = w.attachments().await;
    let mine: Vec<_> = atts
        .iter()
        .filter(|a| a.pod_namespace == pod.namespace && a.pod_name == pod.name)
        .collect();
    let status = crate::api::node::network_status(&mine);
    if let Err(e) = cluster
        .write_network_status(&pod.namespace, &pod.name, uid, &status)
        .await
    {
        tracing::warn!(pod = %format!("{}/{}", pod.namespace, pod.name), error = %e, "network-status not written");
        w.emit("network-status-failed", e, None);
    }
}

/// The veth for a new attachment. A veth left under the same name (a repeated
/// ADD, or a crash mid-ADD) is replaced: the runtime owns this name.
async fn create_link(w: &Workloads, spec: &PodSpec) -> Result<dataplane::PodWiring, dataplane::Error> {
    match w.dataplane.create_pod_link(spec).await {
        Err(e) if e.errno() == Some(libc_eexist()) => {
            w.dataplane.teardown_pod(&spec.host_ifname, &[]).await?;
            w.dataplane.create_pod_link(spec).await
        }
        other => other,
    }
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

async fn release(w: &Workloads, env: &CniEnv) {
    if let Err(e) = w.ipam.release(&handle_of(env)).await {
        tracing::error!(error = %e, "rollback: releasing the address failed");
    }
}

/// The pools this request may use: usable on this node, IPv4 (the pod
/// dataplane wires IPv4), narrowed by the config's `ipPools` when given.
pub fn eligible_pools(res: &Resources, node: &str, conf: &NetConf) -> Result<Vec<PoolChoice>, CniError> {
    let labels = res.node_labels(node);
    let choice = |p: &crate::resources::IpPool| PoolChoice {
        name: p.name.clone(),
        cidr: p.cidr,
        block_size: p.block_size,
    };
    if conf.ip_pools.is_empty() {
        return Ok(res
            .pools
            .values()
            .filter(|p| !p.is_ipv6() && p.usable_for_workloads_on(&labels))
            .map(choice)
            .collect());
    }
    let mut out = Vec::new();
    for (i, want) in conf.ip_pools.iter().enumerate() {
        let found = res
            .pools
            .values()
            .find(|p| p.name == *want || want.parse::<IpNet>().map(|c| c.trunc() == p.cidr).unwrap_or(false));
        match found {
            None => {
                return Err(CniError::invalid_config(
                    "unknown IP pool",
                    format!("ipPools[{i}]={want:?}: no IPPool with that name or cidr"),
                ))
            }
            Some(p) if p.disabled => {
                return Err(CniError::invalid_config(
                    "IP pool disabled",
                    format!("ipPools[{i}]={want:?}: pool {} is disabled", p.name),
                ))
            }
            Some(p) if p.is_ipv6() => {
                return Err(CniError::unsupported_field(
                    "IPv6 pools are not wired yet",
                    format!("ipPools[{i}]={want:?}: pool {} is IPv6", p.name),
                ))
            }
            Some(p) => out.push(choice(p)),
        }
    }
    Ok(out)
}

/// CNI_NETNS must name an existing namespace file; say so against the variable.
pub(crate) fn check_netns(netns: &str) -> Result<(), CniError> {
    match std::fs::metadata(Path::new(netns)) {
        Ok(_) => Ok(()),
        Err(e) => Err(CniError::invalid_env(
            "CNI_NETNS is not a usable network namespace",
            format!("CNI_NETNS={netns}: {e}"),
        )),
    }
}

pub(crate) fn dataplane_error(e: &dataplane::Error, netns: &str, ifname: &str) -> CniError {
    match e {
        dataplane::Error::NetnsOpen { .. } | dataplane::Error::NetnsEnter { .. } => CniError::invalid_env(
            "CNI_NETNS is not a usable network namespace",
            format!("CNI_NETNS={netns}: {e}"),
        ),
        dataplane::Error::PodIfnameTaken { .. } => CniError::dataplane(
            "interface already exists in the pod",
            format!("CNI_IFNAME={ifname} already exists in CNI_NETNS={netns}"),
        ),
        _ => CniError::dataplane("pod network setup failed", e.to_string()),
    }
}

pub(crate) fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}
