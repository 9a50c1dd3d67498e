//! The client end of the unix socket, for lanesctl and tests.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// A gRPC channel to lanesd's unix socket. The authority is `localhost` because tonic (h2)
/// rejects a socket path as one.
pub async fn unix_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(3))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
}
