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
use crate::config::Config;
use crate::dataplane::Dataplane;
use crate::ipam::Ipam;
use crate::metrics::Metrics;
use crate::store::file::FileStore;
use crate::workload::{reconcile, resources::ResourceWatcher, BlackholeHooks, Workloads};

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

    let store = Arc::new(FileStore::open(&cfg.datastore.path).map_err(setup("open the file datastore"))?);
    let (watcher, resources, rejected) = ResourceWatcher::start(&cfg.datastore.path);
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
    let ipam = Ipam::start(
        &cfg.node_name,
        store.clone(),
        Arc::new(BlackholeHooks(dataplane.clone())),
    )
    .await
    .map_err(setup("start IPAM"))?;
    let ovn = if cfg.ovn.enabled {
        let ovn = crate::workload::secondary::Ovn::connect(&cfg.ovn, &cfg.node_name, &dataplane)
            .await
            .map_err(|e| DaemonError::Setup(format!("OVN: {e}")))?;
        Some(Arc::new(ovn))
    } else {
        None
    };
    let (events, _) = broadcast::channel(1024);
    let metrics = Arc::new(Metrics::new());
    let workloads = Arc::new(Workloads::new(
        cfg.node_name.clone(),
        Arc::new(ipam),
        dataplane,
        resources,
        events.clone(),
        metrics.clone(),
        default_mtu,
        cfg.datastore.path.clone(),
        store.clone(),
        ovn,
    ));
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
    tokio::spawn(driver.clone().run());
    metrics
        .attachments
        .set(workloads.ipam.local_allocations().await.len() as i64);
    tokio::spawn(watcher.run(events));

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
            rejected,
            bgp: cfg
                .bgp
                .enabled
                .then(|| driver.clone() as Arc<dyn crate::api::node::BgpView>),
        },
        unix,
        tcp,
        shutdown,
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
