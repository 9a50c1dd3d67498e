//! `lanes.v1.Node`: attachments, IPAM views, node status and an event
//! stream, for orchestrators and `lanesctl`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::cni::Command;
use crate::ipam::{Allocation, Block, BlockState, HandleKey};
use crate::workload::Workloads;
use lanes_proto::v1::{self as pb, node_server::Node};

pub struct NodeService {
    pub workloads: Arc<Workloads>,
    pub rejected: watch::Receiver<Vec<String>>,
    /// BGP status source; None when BGP is off.
    pub bgp: Option<Arc<dyn BgpView>>,
}

/// What the API needs from the BGP driver.
#[tonic::async_trait]
pub trait BgpView: Send + Sync {
    async fn status(&self) -> pb::BgpStatus;
    async fn routes(&self) -> Vec<pb::RouteEntry>;
}

/// The attachment view of one allocation.
pub fn attachment_proto(ip: IpAddr, a: &Allocation) -> pb::Attachment {
    pb::Attachment {
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
        netns: a.netns.clone(),
        pod_namespace: a.pod_namespace.clone(),
        pod_name: a.pod_name.clone(),
        pod_uid: a.pod_uid.clone(),
        host_ifname: crate::dataplane::host_ifname(&a.container_id, &a.ifname),
        ips: vec![ipnet::IpNet::from(ip).to_string()],
        network: a.network.clone(),
        created_unix: a.created_unix,
        ..Default::default()
    }
}

/// `k8s.v1.cni.cncf.io/network-status` for one pod's attachments, byte for
/// byte as Multus writes it: eth0 (the cluster network) first with
/// `default: true`, then each secondary by its NAD name.
pub fn network_status(atts: &[&pb::Attachment]) -> String {
    use crate::secondary::{pod_network_status, render_network_status, AttachmentStatus};
    let status = |a: &pb::Attachment| AttachmentStatus {
        interface: a.ifname.clone(),
        ips: a.ips.iter().filter_map(|c| c.split('/').next()?.parse().ok()).collect(),
        mac: (!a.mac.is_empty()).then(|| a.mac.clone()),
        mtu: (a.mtu != 0).then_some(a.mtu),
        dns: Default::default(),
        gateway: Vec::new(),
    };
    let primary = atts.iter().find(|a| !a.network.contains('/')).map(|a| status(a));
    let default_name = atts
        .iter()
        .find(|a| !a.network.contains('/'))
        .map(|a| a.network.clone())
        .unwrap_or_else(|| "lanes".into());
    let secondaries: Vec<(String, AttachmentStatus)> = atts
        .iter()
        .filter(|a| a.network.contains('/'))
        .map(|a| (a.network.clone(), status(a)))
        .collect();
    render_network_status(&pod_network_status(&default_name, primary.as_ref(), &secondaries))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Node for NodeService {
    async fn attach(&self, req: Request<pb::AttachRequest>) -> Result<Response<pb::Attachment>, Status> {
        let r = req.into_inner();
        let ifname = if r.ifname.is_empty() {
            "eth0".to_string()
        } else {
            r.ifname
        };
        let mut env: HashMap<String, String> = HashMap::from([
            ("CNI_COMMAND".into(), "ADD".into()),
            ("CNI_CONTAINERID".into(), r.container_id.clone()),
            ("CNI_NETNS".into(), r.netns),
            ("CNI_IFNAME".into(), ifname.clone()),
        ]);
        if !r.pod_name.is_empty() {
            let mut args = format!("K8S_POD_NAMESPACE={};K8S_POD_NAME={}", r.pod_namespace, r.pod_name);
            if !r.pod_uid.is_empty() {
                args.push_str(&format!(";K8S_POD_UID={}", r.pod_uid));
            }
            env.insert("CNI_ARGS".into(), args);
        }
        let mut conf = serde_json::json!({"cniVersion": "1.1.0", "name": "lanes", "type": "lanes"});
        if r.mtu != 0 {
            conf["mtu"] = r.mtu.into();
        }
        let reply = self
            .workloads
            .handle(Command::Add, &env, conf.to_string().as_bytes())
            .await;
        if let Some(e) = reply.error {
            return Err(Status::failed_precondition(format!(
                "code {}: {}: {}",
                e.code, e.msg, e.details
            )));
        }
        self.get_attachment(Request::new(pb::GetAttachmentRequest {
            container_id: r.container_id,
            ifname,
        }))
        .await
    }

    async fn detach(&self, req: Request<pb::DetachRequest>) -> Result<Response<pb::DetachResponse>, Status> {
        let r = req.into_inner();
        let ifname = if r.ifname.is_empty() {
            "eth0".to_string()
        } else {
            r.ifname
        };
        let found = !self
            .workloads
            .ipam
            .held_by(&HandleKey::new(&r.container_id, &ifname))
            .await
            .is_empty();
        let env: HashMap<String, String> = HashMap::from([
            ("CNI_COMMAND".into(), "DEL".into()),
            ("CNI_CONTAINERID".into(), r.container_id),
            ("CNI_IFNAME".into(), ifname),
        ]);
        let conf = br#"{"cniVersion":"1.1.0","name":"lanes","type":"lanes"}"#;
        let reply = self.workloads.handle(Command::Del, &env, conf).await;
        if let Some(e) = reply.error {
            return Err(Status::internal(format!("code {}: {}: {}", e.code, e.msg, e.details)));
        }
        Ok(Response::new(pb::DetachResponse { found }))
    }

    async fn list_attachments(
        &self,
        req: Request<pb::ListAttachmentsRequest>,
    ) -> Result<Response<pb::ListAttachmentsResponse>, Status> {
        let ns = req.into_inner().pod_namespace;
        let attachments = self
            .workloads
            .attachments()
            .await
            .into_iter()
            .filter(|a| ns.is_empty() || a.pod_namespace == ns)
            .collect();
        Ok(Response::new(pb::ListAttachmentsResponse { attachments }))
    }

    async fn get_attachment(&self, req: Request<pb::GetAttachmentRequest>) -> Result<Response<pb::Attachment>, Status> {
        let r = req.into_inner();
        let ifname = if r.ifname.is_empty() { "eth0" } else { &r.ifname };
        self.workloads
            .attachments()
            .await
            .into_iter()
            .find(|a| a.container_id == r.container_id && a.ifname == ifname)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no attachment {}/{ifname} on this node", r.container_id)))
    }

    async fn list_ipam_blocks(
        &self,
        req: Request<pb::ListIpamBlocksRequest>,
    ) -> Result<Response<pb::ListIpamBlocksResponse>, Status> {
        let want = req.into_inner().pool;
        let res = self.workloads.resources();
        let blocks = self.blocks().await?;
        let out = blocks
            .iter()
            .map(|b| block_proto(b, &res))
            .filter(|b| want.is_empty() || b.pool == want)
            .collect();
        Ok(Response::new(pb::ListIpamBlocksResponse { blocks: out }))
    }

    async fn ipam_usage(&self, _req: Request<pb::IpamUsageRequest>) -> Result<Response<pb::IpamUsageResponse>, Status> {
        let res = self.workloads.resources();
        let blocks = self.blocks().await?;
        let node = self.workloads.node.as_str();
        let pools = res
            .pools
            .values()
            .map(|p| {
                let inside: Vec<&Block> = blocks.iter().filter(|b| p.cidr.contains(&b.cidr)).collect();
                let used: u64 = inside.iter().map(|b| u64::from(b.used())).sum();
                let size = pool_size(p.cidr);
                pb::PoolUsage {
                    name: p.name.clone(),
                    cidr: p.cidr.to_string(),
                    block_size: u32::from(p.block_size),
                    disabled: p.disabled,
                    node_selector: p.node_selector.to_string(),
                    size,
                    used,
                    free: size.saturating_sub(used),
                    blocks: inside.len() as u32,
                    blocks_local: inside.iter().filter(|b| b.is_affine_to(node)).count() as u32,
                    borrowed: inside
                        .iter()
                        .filter(|b| !b.is_affine_to(node))
                        .map(|b| b.allocations.values().filter(|a| a.node == node).count() as u32)
                        .sum(),
                }
            })
            .collect();
        Ok(Response::new(pb::IpamUsageResponse { pools }))
    }

    async fn get_node_status(
        &self,
        _req: Request<pb::GetNodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        let w = &self.workloads;
        let conf = crate::cni::parse_netconf(
            br#"{"cniVersion":"1.1.0","name":"lanes","type":"lanes"}"#,
            Command::Status,
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        let reason = crate::workload::status::readiness(w, &conf).await;
        let started = std::time::SystemTime::now() - w.started.elapsed();
        Ok(Response::new(pb::NodeStatus {
            node_name: w.node.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_unix: started
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            ready: reason.is_none(),
            not_ready_reason: reason.unwrap_or_default(),
            attachments: w.ipam.local_allocations().await.len() as u32,
            rejected_resources: self.rejected.borrow().clone(),
        }))
    }

    async fn get_bgp_status(&self, _req: Request<pb::GetBgpStatusRequest>) -> Result<Response<pb::BgpStatus>, Status> {
        Ok(Response::new(match &self.bgp {
            Some(b) => b.status().await,
            None => pb::BgpStatus::default(),
        }))
    }

    async fn list_routes(
        &self,
        _req: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let routes = match &self.bgp {
            Some(b) => b.routes().await,
            None => Vec::new(),
        };
        Ok(Response::new(pb::ListRoutesResponse { routes }))
    }

    type WatchStream = EventStream;

    async fn watch(&self, _req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let rx = self.workloads.events.subscribe();
        let stream = BroadcastStream::new(rx).map(|ev| match ev {
            Ok(ev) => Ok(ev),
            // A slow watcher loses events rather than slowing the node down; tell it.
            Err(BroadcastStreamRecvError::Lagged(n)) => Ok(pb::Event {
                time_unix_ms: crate::workload::now_unix_ms(),
                kind: "lagged".into(),
                message: format!("{n} event(s) dropped; resync with List calls"),
                ..Default::default()
            }),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl NodeService {
    async fn blocks(&self) -> Result<Vec<Block>, Status> {
        self.workloads
            .ipam
            .all_blocks()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

fn block_proto(b: &Block, res: &crate::resources::Resources) -> pb::IpamBlock {
    let affinity = b.affinity.clone().unwrap_or_default();
    pb::IpamBlock {
        cidr: b.cidr.to_string(),
        pool: res
            .pools
            .values()
            .find(|p| p.cidr.contains(&b.cidr))
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        state: match b.state {
            BlockState::Pending => "pending",
            BlockState::Confirmed => "confirmed",
        }
        .into(),
        size: b.size(),
        used: b.used(),
        borrowed_by_others: b.allocations.values().filter(|a| a.node != affinity).count() as u32,
        allocations: b
            .allocations
            .iter()
            .map(|(o, a)| pb::IpamAllocation {
                ip: b.ip_at(*o).to_string(),
                handle: a.handle().to_string(),
                node: a.node.clone(),
                pod_namespace: a.pod_namespace.clone(),
                pod_name: a.pod_name.clone(),
                borrowed: a.node != affinity,
            })
            .collect(),
        affinity,
    }
}

fn pool_size(cidr: ipnet::IpNet) -> u64 {
    let bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
    1u64.checked_shl(bits).unwrap_or(u64::MAX)
}
