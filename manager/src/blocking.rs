//! Blocking work (file I/O, netlink sockets in blocking mode) from async code.
//!
//! `spawn_blocking` hands the work to a pool thread and wakes the task when it is done: two
//! wake-ups of parked threads, which on a small VM cost more than a short write or a netlink
//! request. On the daemon's multi-thread runtime `block_in_place` runs the work right here
//! instead, while tokio moves this worker's other tasks elsewhere. A current-thread runtime
//! (tests, tools) cannot do that and gets `spawn_blocking`.

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinError;

/// Runs `f` on this thread when the runtime allows it, else on the blocking pool. A panic in
/// `f` is re-raised here; `Err` only when the runtime shut down under a pool job.
pub async fn in_place<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JoinError> {
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return Ok(tokio::task::block_in_place(f));
    }
    pool(f).await
}

/// Runs `f` on the blocking pool, so the calling task can do something else meanwhile (the
/// ADD path wires the veth there while its IPAM write runs in place). A panic is re-raised.
pub async fn pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JoinError> {
    match tokio::task::spawn_blocking(f).await {
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_place_stays_on_the_worker_of_a_multi_thread_runtime() {
        let here = std::thread::current().id();
        let there = in_place(|| std::thread::current().id()).await.unwrap();
        assert_eq!(here, there);
    }

    #[tokio::test]
    async fn in_place_falls_back_to_the_pool_on_a_current_thread_runtime() {
        let here = std::thread::current().id();
        let there = in_place(|| std::thread::current().id()).await.unwrap();
        assert_ne!(here, there, "block_in_place would have panicked here");
        assert_ne!(here, pool(|| std::thread::current().id()).await.unwrap());
    }
}
