//! Serving: the gRPC router (Cni, Node, health, reflection v1 and v1alpha)
//! on the root-only unix socket and, when configured, on TCP; and the
//! Prometheus endpoint.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;

use super::{cni::CniService, node::NodeService};
use crate::metrics::Metrics;
use lanes_proto::v1::{cni_server::CniServer, node_server::NodeServer};

/// Bind the unix socket: refuse if a live daemon answers on it, replace a
/// stale file left by a crash, and make it 0600 (root-only: it can rewire
/// every pod on the node).
pub async fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running lanesd", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve gRPC until `shutdown` resolves; in-flight calls finish first.
pub async fn serve(
    cni: CniService,
    node: NodeService,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<CniServer<CniService>>().await;
    health_reporter.set_serving::<NodeServer<NodeService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(lanes_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // grpcurl 1.8.6 (what can be installed here) speaks only v1alpha.
    let reflection_v1 = reflection().build_v1().expect("descriptor sets are compiled in");
    let reflection_v1alpha = reflection().build_v1alpha().expect("descriptor sets are compiled in");
    let router = Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(CniServer::new(cni))
        .add_service(NodeServer::new(node));
    let shutdown = shutdown.shared();
    match tcp {
        None => {
            router
                .serve_with_incoming_shutdown(UnixListenerStream::new(unix), shutdown)
                .await
        }
        Some(tcp) => {
            let tcp_router = router.clone();
            let a = router.serve_with_incoming_shutdown(UnixListenerStream::new(unix), shutdown.clone());
            let b = tcp_router.serve_with_incoming_shutdown(TcpListenerStream::new(tcp), shutdown);
            let (ra, rb) = tokio::join!(a, b);
            ra.and(rb)
        }
    }
}

/// `GET /metrics` in the Prometheus text format; anything else is 404.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(metrics.encode())))
                    } else {
                        hyper::Response::builder().status(404).body(Full::new(Bytes::new()))
                    };
                    resp
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}
