//! Workloads on this node: the CNI verbs carried out against IPAM and the
//! dataplane. `cni/` says what a request means; this module does it.
//!
//! - [`add`], [`del`], [`check`], [`gc`], [`status`]: one file per verb.
//! - [`reconcile`]: start-up repair so the kernel matches the store.
//! - [`resources`]: the resource snapshot, re-read when the store changes.
//!
//! Locking: ADD/DEL/CHECK of one (container, ifname) are serialised by a
//! per-handle mutex; GC takes the write side of `gc_lock`, so no ADD or DEL
//! runs during it (the spec makes GC exclusive with them).

pub mod add;
pub mod check;
pub mod cluster;
pub mod del;
pub mod delegate;
pub mod gc;
#[cfg(test)]
mod k8s_tests;
pub mod reconcile;
pub mod resources;
pub mod secondary;
pub mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::{broadcast, watch, Mutex, RwLock};

use crate::cni::{self, CniError, Command, SpecVersion};
use crate::dataplane::Dataplane;
use crate::ipam::{BlockHooks, HandleKey, Ipam, IpamError};
use crate::metrics::Metrics;
use crate::resources::Resources;
use crate::store::StoreError;
use lanes_proto::v1 as pb;

pub use cluster::{Cluster, RoutingHealth};

/// The daemon's shared state for workload operations.
pub struct Workloads {
    pub node: String,
    pub ipam: Arc<Ipam>,
    pub dataplane: Dataplane,
    pub resources: watch::Receiver<Arc<Resources>>,
    pub events: broadcast::Sender<pb::Event>,
    pub metrics: Arc<Metrics>,
    /// Pod MTU when the network config does not say.
    pub default_mtu: u32,
    pub started: Instant,
    /// Path of the store directory (named in STATUS errors).
    pub store_path: PathBuf,
    /// The datastore (secondary attachment records).
    pub store: Arc<dyn crate::store::StateStore>,
    /// OVN and the node's OVS, when `ovn.enabled`.
    pub ovn: Option<Arc<secondary::Ovn>>,
    /// Wakes the routing loop (BGP exports, encapsulation) after IPAM changes.
    pub routing_kick: Arc<tokio::sync::Notify>,
    /// The kubernetes datastore's caches; None with the file datastore.
    pub cluster: Option<Arc<dyn Cluster>>,
    handle_locks: StdMutex<HashMap<HandleKey, Arc<Mutex<()>>>>,
    gc_lock: RwLock<()>,
    /// Turns true when lanesd begins to shut down: long waits inside a call end early.
    stop: Option<watch::Receiver<bool>>,
    /// `primary.serviceCidrs`: kept on eth0 when a lane takes the default route.
    pub service_cidrs: Vec<IpNet>,
    /// The BGP side, once it runs (made after the workloads, hence set later).
    routing: std::sync::OnceLock<Arc<dyn RoutingHealth>>,
}

/// The outcome of one CNI call: stdout bytes, and the error if it failed.
pub struct Reply {
    pub output: Vec<u8>,
    pub error: Option<CniError>,
}

impl Workloads {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: String,
        ipam: Arc<Ipam>,
        dataplane: Dataplane,
        resources: watch::Receiver<Arc<Resources>>,
        events: broadcast::Sender<pb::Event>,
        metrics: Arc<Metrics>,
        default_mtu: u32,
        store_path: PathBuf,
        store: Arc<dyn crate::store::StateStore>,
        ovn: Option<Arc<secondary::Ovn>>,
    ) -> Self {
        Workloads {
            node,
            ipam,
            dataplane,
            resources,
            events,
            metrics,
            default_mtu,
            started: Instant::now(),
            store_path,
            store,
            ovn,
            routing_kick: Arc::new(tokio::sync::Notify::new()),
            cluster: None,
            handle_locks: StdMutex::new(HashMap::new()),
            gc_lock: RwLock::new(()),
            stop: None,
            service_cidrs: Vec::new(),
            routing: std::sync::OnceLock::new(),
        }
    }

    /// STATUS consults `routing` for code 51 (see [`RoutingHealth`]). Set once.
    pub fn set_routing(&self, routing: Arc<dyn RoutingHealth>) {
        let _ = self.routing.set(routing);
    }

    /// Why existing pods may have limited connectivity, per the routing side.
    pub fn routing_degraded(&self) -> Option<String> {
        self.routing.get().and_then(|r| r.degraded())
    }

    /// The cluster's Service CIDRs (`primary.serviceCidrs`).
    pub fn with_service_cidrs(mut self, cidrs: Vec<IpNet>) -> Self {
        self.service_cidrs = cidrs;
        self
    }

    /// Long waits inside calls (the `ovn-installed` wait) end when `stop` turns true.
    pub fn with_stop(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Completes once lanesd is shutting down; never without [`Workloads::with_stop`].
    pub async fn stopping(&self) {
        if let Some(mut rx) = self.stop.clone() {
            if rx.wait_for(|s| *s).await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }

    /// Reads pods and readiness from `cluster` and writes network-status there.
    pub fn with_cluster(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Every attachment on this node: eth0s from IPAM, secondaries from their records, each
    /// with its pod's network-status.
    pub async fn attachments(&self) -> Vec<pb::Attachment> {
        let mut by_handle: std::collections::BTreeMap<HandleKey, pb::Attachment> = Default::default();
        for (ip, a, _) in self.ipam.local_allocations().await {
            by_handle
                .entry(a.handle())
                .and_modify(|x| x.ips.push(IpNet::from(ip).to_string()))
                .or_insert_with(|| crate::api::node::attachment_proto(ip, &a));
        }
        let mut atts: Vec<pb::Attachment> = by_handle.into_values().collect();
        // Secondary (OVN) attachments: the network is the NAD, `namespace/name`.
        for r in secondary::records(self.store.as_ref(), &self.node).await {
            atts.push(pb::Attachment {
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
                netns: r.netns.clone(),
                pod_namespace: r.pod_namespace.clone(),
                pod_name: r.pod_name.clone(),
                host_ifname: r.host_ifname.clone(),
                ips: r.ips.clone(),
                mac: r.mac.clone(),
                mtu: r.mtu,
                network: r.nad.clone(),
                ..Default::default()
            });
        }
        // network-status is per pod: group by pod (or container when no pod is known).
        let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, a) in atts.iter().enumerate() {
            let key = if a.pod_name.is_empty() {
                (String::new(), a.container_id.clone())
            } else {
                (a.pod_namespace.clone(), a.pod_name.clone())
            };
            groups.entry(key).or_default().push(i);
        }
        for idx in groups.values() {
            let status = crate::api::node::network_status(&idx.iter().map(|i| &atts[*i]).collect::<Vec<_>>());
            for i in idx {
                atts[*i].network_status = status.clone();
            }
        }
        atts
    }

    /// Serve one CNI call as the shim forwarded it.
    pub async fn handle(&self, expected: Command, env: &HashMap<String, String>, stdin: &[u8]) -> Reply {
        let version = cni::version::input_cni_version(stdin);
        let started = Instant::now();
        let outcome = self.dispatch(expected, env, stdin).await;
        let verb = expected.as_str();
        match outcome {
            Ok(output) => {
                if matches!(expected, Command::Add | Command::Del | Command::Gc) {
                    self.routing_kick.notify_one();
                }
                self.metrics.observe_cni(verb, 0, started.elapsed());
                Reply { output, error: None }
            }
            Err(e) => {
                self.metrics.observe_cni(verb, e.code, started.elapsed());
                tracing::warn!(verb, code = e.code, msg = %e.msg, details = %e.details, "CNI call failed");
                Reply {
                    output: e.to_json(&version),
                    error: Some(e),
                }
            }
        }
    }

    async fn dispatch(
        &self,
        expected: Command,
        env: &HashMap<String, String>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, CniError> {
        let cenv = cni::parse_env(env)?;
        // The shim picks the RPC from CNI_COMMAND; a mismatch means a client
        // other than the shim got it wrong.
        if cenv.command != expected {
            return Err(CniError::invalid_env(
                "CNI_COMMAND does not match the RPC",
                format!("CNI_COMMAND={} sent to {}", cenv.command.as_str(), expected.as_str()),
            ));
        }
        if cenv.command == Command::Version {
            return Ok(cni::version_output(stdin));
        }
        let conf = cni::parse_netconf(stdin, cenv.command)?;
        match cenv.command {
            Command::Add => {
                if let Some(reason) = self.cluster.as_ref().and_then(|c| c.not_synced()) {
                    return Err(CniError::try_again_later("lanesd is not ready", reason));
                }
                let _gc = self.gc_lock.read().await;
                let lock = self.handle_lock(&cenv);
                let _held = lock.lock().await;
                if delegate::is_delegate(&conf) {
                    delegate::add(self, &cenv, &conf, stdin).await
                } else {
                    add::add(self, &cenv, &conf).await
                }
            }
            Command::Del => {
                let _gc = self.gc_lock.read().await;
                let lock = self.handle_lock(&cenv);
                let _held = lock.lock().await;
                let out = if delegate::is_delegate(&conf) {
                    delegate::del(self, &cenv).await
                } else {
                    del::del(self, &cenv, &conf).await
                };
                self.forget_handle_lock(&cenv);
                out
            }
            Command::Check => {
                let lock = self.handle_lock(&cenv);
                let _held = lock.lock().await;
                check::check(self, &cenv, &conf).await
            }
            Command::Status => status::status(self, &conf).await,
            Command::Gc => {
                let _gc = self.gc_lock.write().await;
                gc::gc(self, &conf).await
            }
            Command::Version => unreachable!("answered above"),
        }
    }

    fn handle_lock(&self, env: &cni::CniEnv) -> Arc<Mutex<()>> {
        let key = handle_of(env);
        let mut locks = self.handle_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key).or_default().clone()
    }

    fn forget_handle_lock(&self, env: &cni::CniEnv) {
        let key = handle_of(env);
        let mut locks = self.handle_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only drop it when nobody else is waiting on it.
        if locks.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&key);
        }
    }

    pub fn resources(&self) -> Arc<Resources> {
        self.resources.borrow().clone()
    }

    pub fn emit(&self, kind: &str, message: String, attachment: Option<pb::Attachment>) {
        let ev = pb::Event {
            time_unix_ms: now_unix_ms(),
            kind: kind.to_string(),
            message,
            attachment,
            error: None,
        };
        // No subscribers is normal.
        let _ = self.events.send(ev);
    }
}

/// IPAM → dataplane: a claimed block gets its blackhole before it is confirmed.
pub struct BlackholeHooks(pub Dataplane);

#[async_trait]
impl BlockHooks for BlackholeHooks {
    async fn block_claimed(&self, cidr: IpNet) -> Result<(), String> {
        self.0.ensure_blackhole(cidr).await.map_err(|e| e.to_string())
    }
}

pub(crate) fn handle_of(env: &cni::CniEnv) -> HandleKey {
    HandleKey::new(
        env.container_id.as_deref().unwrap_or_default(),
        env.ifname.as_deref().unwrap_or_default(),
    )
}

pub(crate) fn ipam_error(e: IpamError) -> CniError {
    match e {
        IpamError::NoPool(_) | IpamError::Exhausted(_) => {
            CniError::ipam_exhausted("IP address allocation failed", e.to_string())
        }
        IpamError::Contention => CniError::try_again_later("IP address allocation contended", e.to_string()),
        // An unreachable datastore (API server down) is transient: the runtime should retry.
        IpamError::Store(StoreError::Unavailable(_)) => {
            CniError::try_again_later("datastore unavailable", e.to_string())
        }
        IpamError::Store(_) => CniError::datastore("datastore write failed", e.to_string()),
        IpamError::Claim { .. } => CniError::dataplane("block claim failed", e.to_string()),
    }
}

pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The version the result is rendered in.
pub(crate) fn version_of(conf: &cni::NetConf) -> SpecVersion {
    conf.cni_version
}
