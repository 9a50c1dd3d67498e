//! lanesd's lifecycle: open the store, load resources, start IPAM and the
//! dataplane, repair the kernel, serve the API, and on SIGTERM stop serving
//! while leaving every pod's networking exactly as it is.

use std::fs::OpenOptions;
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::broadcast;

use crate::api::{cni::CniService, node::NodeService, server};
use crate::bgp::driver::{BgpDriver, DriverConfig};
use crate::bgp::supervisor::{BirdConfig, Supervisor};
use crate::config::{Config, DatastoreType};
use crate::dataplane::Dataplane;
use crate::ipam::Ipam;
use crate::k8s;
use crate::metrics::Metrics;
use crate::store::file::FileStore;
use crate::store::StateStore;
use crate::workload::{reconcile, resources::ResourceWatcher, BlackholeHooks, Cluster, Workloads};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Setup(String),
    #[error("serve: {0}")]
    Serve(#[from] tonic::transport::Error),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DaemonError + '_ {
    move |e| DaemonError::Setup(format!("{what}: {e}"))
}

/// Run until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&cfg.run_dir).map_err(setup(&format!("create runDir {}", cfg.run_dir.display())))?;
    // One daemon per run dir: two would fight over bird.conf and the socket.
    let lock_path = cfg.run_dir.join("lanesd.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(setup(&format!("open {}", lock_path.display())))?;
    let _run_lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        DaemonError::Setup(format!(
            "another lanesd holds {} ({e}); give each daemon its own runDir",
            lock_path.display()
        ))
    })?;

    // Shutdown as a flag every phase can watch: start-up (which can wait long for an API
    // server), calls in flight (their long waits end early) and the server itself.
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        if rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };

    let (events, _) = broadcast::channel(1024);
    let source = open_datastore(&cfg, &events).await?;
    let dataplane = Dataplane::new().await.map_err(setup("open netlink"))?;
    dataplane
        .ensure_ip_forwarding()
        .await
        .map_err(setup("enable IP forwarding"))?;
    let default_mtu = match cfg.primary.mtu {
        0 => dataplane
            .link_mtu(&cfg.primary.interface)
            .await
            .ok()
            .flatten()
            .unwrap_or(1500),
        m => m,
    };
    let store = source.store.clone();
    let ipam = tokio::select! {
        ipam = start_ipam(&cfg, store.clone(), &dataplane) => ipam?,
        () = stopped(shutdown_rx.clone()) => {
            tracing::info!("lanesd stopped during start-up");
            return Ok(());
        }
    };
    let ovn = if cfg.ovn.enabled {
        let ovn = crate::workload::secondary::Ovn::connect(&cfg.ovn, &cfg.node_name, &dataplane)
            .await
            .map_err(|e| DaemonError::Setup(format!("OVN: {e}")))?;
        Some(Arc::new(ovn))
    } else {
        None
    };
    let metrics = Arc::new(Metrics::new());
    let mut workloads = Workloads::new(
        cfg.node_name.clone(),
        Arc::new(ipam),
        dataplane,
        source.resources.clone(),
        events.clone(),
        metrics.clone(),
        default_mtu,
        cfg.datastore.path.clone(),
        store.clone(),
        ovn,
    );
    if let Some(cluster) = source.cluster.clone() {
        workloads = workloads.with_cluster(cluster);
    }
    workloads = workloads
        .with_stop(shutdown_rx.clone())
        .with_service_cidrs(cfg.primary.service_cidrs.clone());
    let workloads = Arc::new(workloads);
    let repairs = reconcile::reconcile(&workloads).await;
    // Secondary deletes left pending (OVN was down) are finished in the background.
    crate::workload::secondary::start_retry(&workloads);
    let supervisor = Arc::new(Supervisor::new(BirdConfig {
        bird_path: cfg.bgp.bird_path.clone().into(),
        run_dir: cfg.run_dir.clone(),
        netns: None,
    }));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if cfg.bgp.enabled {
        tokio::spawn(supervisor.clone().run(stop_rx));
    }
    let driver = Arc::new(BgpDriver::new(
        DriverConfig {
            node: cfg.node_name.clone(),
            primary_interface: cfg.primary.interface.clone(),
            listen_address: cfg.bgp.listen_address.parse().ok(),
            store_path: cfg.datastore.path.clone(),
            mtu: default_mtu,
            bgp_enabled: cfg.bgp.enabled,
        },
        supervisor,
        store.clone(),
        workloads.ipam.clone(),
        workloads.dataplane.clone(),
        workloads.resources.clone(),
        metrics.clone(),
        workloads.routing_kick.clone(),
    ));
    workloads.set_routing(driver.clone());
    tokio::spawn(driver.clone().run());
    metrics
        .attachments
        .set(workloads.ipam.local_allocations().await.len() as i64);
    if let Some(watcher) = source.file_watcher {
        tokio::spawn(watcher.run(events));
    }

    let unix = server::bind_unix(&cfg.socket)
        .await
        .map_err(setup(&format!("bind {}", cfg.socket.display())))?;
    let tcp = match cfg.listen.as_str() {
        "" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(setup(&format!("listen on {addr}")))?,
        ),
    };
    if !cfg.metrics.is_empty() {
        let l = tokio::net::TcpListener::bind(&cfg.metrics)
            .await
            .map_err(setup(&format!("metrics on {}", cfg.metrics)))?;
        tokio::spawn(server::serve_metrics(l, metrics.clone()));
    }
    tracing::info!(
        node = %cfg.node_name,
        socket = %cfg.socket.display(),
        store = %cfg.datastore.path.display(),
        mtu = default_mtu,
        repaired_errors = repairs.errors.len(),
        "lanesd ready"
    );
    let served = server::serve(
        CniService {
            workloads: workloads.clone(),
        },
        NodeService {
            workloads,
            rejected: source.rejected,
            bgp: cfg
                .bgp
                .enabled
                .then(|| driver.clone() as Arc<dyn crate::api::node::BgpView>),
        },
        unix,
        tcp,
        stopped(shutdown_rx),
    )
    .await;
    // Pods keep their veths, routes and addresses: only the socket goes. BIRD
    // stops in graceful-restart mode so peers keep our routes meanwhile.
    let _ = std::fs::remove_file(&cfg.socket);
    let _ = stop_tx.send(true);
    driver.shutdown().await;
    tracing::info!("lanesd stopped; pod networking left in place");
    served.map_err(DaemonError::from)
}

/// Where state and resources come from: the file datastore or the kubernetes one.
struct Datastore {
    store: Arc<dyn StateStore>,
    resources: tokio::sync::watch::Receiver<Arc<crate::resources::Resources>>,
    rejected: tokio::sync::watch::Receiver<Vec<String>>,
    /// file: polls the store directory.
    file_watcher: Option<ResourceWatcher>,
    /// kubernetes: the caches, for pods, readiness and network-status.
    cluster: Option<Arc<dyn Cluster>>,
}

async fn open_datastore(
    cfg: &Config,
    events: &broadcast::Sender<lanes_proto::v1::Event>,
) -> Result<Datastore, DaemonError> {
    match cfg.datastore.kind {
        DatastoreType::Kubernetes => {
            let client = k8s::client(&cfg.datastore).await.map_err(DaemonError::Setup)?;
            let limits = Arc::new(k8s::limits(&cfg.datastore));
            let started = k8s::caches::Caches::start(
                client.clone(),
                limits.clone(),
                &cfg.node_name,
                cfg.datastore.calico_resources,
                events.clone(),
            );
            Ok(Datastore {
                store: Arc::new(k8s::store::KubeStore::new(client, limits)),
                resources: started.resources,
                rejected: started.rejected,
                file_watcher: None,
                cluster: Some(started.caches),
            })
        }
        _ => {
            let store: Arc<dyn StateStore> =
                Arc::new(FileStore::open(&cfg.datastore.path).map_err(setup("open the file datastore"))?);
            let (watcher, resources, rejected) = ResourceWatcher::start(&cfg.datastore.path, store.clone()).await;
            Ok(Datastore {
                store,
                resources,
                rejected,
                file_watcher: Some(watcher),
                cluster: None,
            })
        }
    }
}

/// IPAM reads every block at start. With the kubernetes datastore the API server may not be
/// reachable yet (a node booting with the control plane): keep trying rather than crash-loop.
async fn start_ipam(cfg: &Config, store: Arc<dyn StateStore>, dataplane: &Dataplane) -> Result<Ipam, DaemonError> {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match Ipam::start(
            &cfg.node_name,
            store.clone(),
            Arc::new(BlackholeHooks(dataplane.clone())),
        )
        .await
        {
            Ok(ipam) => return Ok(ipam),
            Err(e) if cfg.datastore.kind == DatastoreType::Kubernetes => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "IPAM cannot read the API server yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
            Err(e) => return Err(DaemonError::Setup(format!("start IPAM: {e}"))),
        }
    }
}
