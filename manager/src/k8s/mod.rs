//! The `kubernetes` datastore: lanesd as a DaemonSet, with everything it reads and writes in the
//! API server.
//!
//! - [`crds`]: the `lanes.dev/v1` custom resources (and Multus' NAD type); `crdgen` writes them.
//! - [`keys`]: store keys ↔ state objects (pure).
//! - [`store`]: [`crate::store::StateStore`] on those objects, CAS on `resourceVersion`.
//! - [`caches`]: reflector caches (our CRDs or Calico's, NADs, this node's Pods, Nodes) turned
//!   into the same [`crate::resources::Resources`] snapshot the file datastore produces.
//! - [`status`]: `k8s.v1.cni.cncf.io/network-status` through the pods/status subresource.
//!
//! The client is built from a kubeconfig file or the in-cluster service account. Every call but
//! watches goes through [`Limits`]: a token bucket (`qps`, `burst`) and a deadline.

pub mod caches;
pub mod crds;
#[cfg(test)]
pub mod fake;
pub mod keys;
pub mod status;
pub mod store;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::time::Instant;

use crate::config::DatastoreConfig;

/// Client-side QPS limit and per-call deadline, shared by every non-watch call.
pub struct Limits {
    timeout: Duration,
    qps: f64,
    burst: f64,
    bucket: tokio::sync::Mutex<(f64, Instant)>,
}

impl Limits {
    /// `qps` requests per second on average, up to `burst` at once; `qps` 0 means unlimited.
    pub fn new(qps: f64, burst: u32, timeout: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        Limits {
            timeout,
            qps,
            burst,
            bucket: tokio::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        if self.qps <= 0.0 {
            return;
        }
        // Holding the lock while sleeping keeps waiters in order and the arithmetic simple.
        let mut bucket = self.bucket.lock().await;
        let now = Instant::now();
        let (tokens, last) = *bucket;
        let mut tokens = (tokens + now.duration_since(last).as_secs_f64() * self.qps).min(self.burst);
        if tokens < 1.0 {
            tokio::time::sleep(Duration::from_secs_f64((1.0 - tokens) / self.qps)).await;
            tokens = 1.0;
        }
        *bucket = (tokens - 1.0, Instant::now());
    }

    /// Runs one API call after [`Limits::acquire`], failing it after the deadline.
    pub async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        self.acquire().await;
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(kube::Error::Service(
                format!("the API server did not answer within {} ms", self.timeout.as_millis()).into(),
            )),
        }
    }
}

/// A client for the configured cluster: `datastore.kubeconfig`, or in-cluster when empty.
pub async fn client(cfg: &DatastoreConfig) -> Result<kube::Client, String> {
    let config = if cfg.kubeconfig.as_os_str().is_empty() {
        kube::Config::incluster().map_err(|e| format!("in-cluster config (datastore.kubeconfig is empty): {e}"))?
    } else {
        let kubeconfig = kube::config::Kubeconfig::read_from(&cfg.kubeconfig)
            .map_err(|e| format!("datastore.kubeconfig {}: {e}", cfg.kubeconfig.display()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| format!("datastore.kubeconfig {}: {e}", cfg.kubeconfig.display()))?
    };
    kube::Client::try_from(config).map_err(|e| format!("kubernetes client: {e}"))
}

/// The limits `datastore` configures.
pub fn limits(cfg: &DatastoreConfig) -> Limits {
    Limits::new(cfg.qps, cfg.burst, Duration::from_millis(cfg.timeout_ms))
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_qps() {
        let limits = Limits::new(10.0, 5, Duration::from_secs(1));
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            limits.acquire().await;
        }
        assert!(t0.elapsed() < Duration::from_millis(1), "the burst is free");
        for _ in 0..10 {
            limits.acquire().await;
        }
        let spent = t0.elapsed();
        assert!(
            spent >= Duration::from_millis(950) && spent < Duration::from_millis(1100),
            "{spent:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_deadline_fails_naming_it() {
        let limits = Limits::new(0.0, 1, Duration::from_millis(200));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), kube::Error>(())
        };
        let err = limits.run(slow).await.unwrap_err();
        assert!(err.to_string().contains("within 200 ms"), "{err}");
    }
}
