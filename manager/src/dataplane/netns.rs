//! Entering network namespaces without ever leaking one.
//!
//! A thread's netns decides which kernel objects its new sockets and `/proc/sys/net` opens see.
//! tokio moves tasks between worker threads, so a worker that `setns`'d and then hit an `.await`
//! (or an early `?`, netavark's `exec_netns!` bug) would run unrelated tasks in a pod's netns.
//! Hence the rules here:
//!
//! - `setns` happens only on dedicated `std::thread`s, never on a tokio worker.
//! - A `NetnsGuard` moves the thread back in `Drop`, so early returns and panics restore too.
//! - Nothing awaits inside: the closure runs synchronously and its result is handed back.
//!
//! Short jobs ([`run_in`], [`connect_in`]) run on one long-lived "lanes-netns" thread. Measured
//! on the 2-core dev VM (`bench_netns_entry`): a fresh thread per entry costs ~190 µs p50 and
//! 1-2 ms p99 (spawning, and exiting a thread that switched namespaces, dominate), a job on the
//! resident thread ~15 µs p50 (two 2 µs `setns` plus a channel round trip). Jobs are serialised,
//! so they must be short and must not call back into this module; long or borrowing work uses
//! [`run_in_new_thread`].
//!
//! A netlink socket opened inside stays bound to that netns for its whole life, so the pod's
//! rtnetlink connection is created on the thread and then driven from the normal runtime.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, PoisonError};

use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::{Error, Netlink, Result};

/// The future that drives one rtnetlink socket; spawn it on the runtime the handle is used from.
pub type Connection = rtnetlink::proto::Connection<RouteNetlinkMessage>;

/// Opens a netns file (`/run/netns/x`, `/proc/<pid>/ns/net`, …) for entry or for
/// `IFLA_NET_NS_FD`. A missing path gives [`Error::NetnsOpen`] naming it
/// ([`Error::is_netns_missing`]).
pub fn open(netns: &Path) -> Result<File> {
    File::open(netns).map_err(|source| Error::NetnsOpen {
        path: netns.to_path_buf(),
        source,
    })
}

/// While alive, the current thread is inside another netns; dropping it moves the thread back.
struct NetnsGuard<'a> {
    home: BorrowedFd<'a>,
}

impl<'a> NetnsGuard<'a> {
    /// `ip netns exec`-like entry for the current thread only; `home` is where Drop returns.
    fn enter(home: BorrowedFd<'a>, target: BorrowedFd<'_>, path: &Path) -> Result<Self> {
        setns(target, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::NetnsEnter {
            path: path.to_path_buf(),
            source: io::Error::from(errno),
        })?;
        Ok(NetnsGuard { home })
    }
}

impl Drop for NetnsGuard<'_> {
    fn drop(&mut self) {
        if let Err(errno) = setns(self.home, CloneFlags::CLONE_NEWNET) {
            // Going back into a netns we hold an fd for only fails if the process lost
            // CAP_SYS_ADMIN. Carrying on would let daemon code run against a pod's kernel state,
            // which is worse than dying and being restarted.
            tracing::error!(error = %errno, "cannot restore the original network namespace");
            std::process::abort();
        }
    }
}

/// Runs `f` inside the netns at `netns` on the resident netns thread and returns its result
/// (`ip netns exec <netns> ...` for in-process code).
///
/// For things bound to the thread's netns at open time: sockets and `/proc/sys/net`. The
/// calling thread never changes netns; it blocks until `f` has run. A panic in `f` is re-raised
/// here, after the thread went back. `f` must be short and must not call this module.
pub fn run_in<T, F>(netns: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_in_file(&open(netns)?, netns, f)
}

/// [`run_in`] for an already opened netns; `path` is only used in messages.
pub fn run_in_file<T, F>(netns: &File, path: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // The job outlives this borrow as far as the compiler knows, so it gets its own fd.
    let target = OwnedFd::from(netns.try_clone().map_err(|source| Error::NetnsOpen {
        path: path.to_path_buf(),
        source,
    })?);
    let path_buf = path.to_path_buf();
    let (reply, result) = mpsc::sync_channel(1);
    resident::submit(Box::new(move |home: BorrowedFd<'_>| {
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<T> {
            let _guard = NetnsGuard::enter(home, target.as_fd(), &path_buf)?;
            Ok(f())
        }));
        // The caller may have given up only by panicking itself; nothing to report then.
        let _ = reply.send(outcome);
    }))
    .map_err(|source| thread_error(path, source))?;
    match result.recv() {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(mpsc::RecvError) => Err(thread_error(path, io::Error::other("netns thread died"))),
    }
}

/// Runs `f` inside `netns` on a fresh thread of its own: for long-running work (a whole test
/// runtime) or closures that borrow. Costs a thread spawn; otherwise as [`run_in`].
pub fn run_in_new_thread<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let target = open(netns)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("lanes-netns-1".into())
            .spawn_scoped(scope, || -> Result<T> {
                let home = open(Path::new("/proc/thread-self/ns/net"))?;
                let _guard = NetnsGuard::enter(home.as_fd(), target.as_fd(), netns)?;
                Ok(f())
            })
            .map_err(|source| thread_error(netns, source))?;
        worker.join().unwrap_or_else(|panic| resume_unwind(panic))
    })
}

fn thread_error(path: &Path, source: io::Error) -> Error {
    Error::NetnsEnter {
        path: path.to_path_buf(),
        source: io::Error::new(source.kind(), format!("netns thread: {source}")),
    }
}

/// Opens an rtnetlink connection inside `netns` (what `ip -n <netns> ...` does) and returns its
/// handle plus the connection future, which the caller must spawn on `rt`.
///
/// The socket is registered with `rt`'s reactor, so `rt` must be the runtime that will drive
/// the connection.
pub fn connect_in(netns: &Path, rt: &tokio::runtime::Handle) -> Result<(rtnetlink::Handle, Connection)> {
    connect_in_file(&open(netns)?, netns, rt)
}

/// [`connect_in`] for an already opened netns.
pub fn connect_in_file(
    netns: &File,
    path: &Path,
    rt: &tokio::runtime::Handle,
) -> Result<(rtnetlink::Handle, Connection)> {
    let rt = rt.clone();
    let opened = run_in_file(netns, path, move || {
        // tokio's AsyncFd registers with the reactor of the runtime that is current.
        let _rt = rt.enter();
        rtnetlink::new_connection().map(|(connection, handle, _unsolicited)| (handle, connection))
    })?;
    opened.map_err(|source| Error::Netlink {
        op: format!("open netlink socket in {}", path.display()),
        source,
    })
}

/// [`connect_in_file`] with the connection spawned on `rt`: ready to use. The connection task
/// ends by itself once every clone of the returned handle is dropped.
pub fn netlink_in_file(netns: &File, path: &Path, rt: &tokio::runtime::Handle) -> Result<Netlink> {
    let (handle, connection) = connect_in_file(netns, path, rt)?;
    rt.spawn(connection);
    Ok(Netlink::new(handle, Some(PathBuf::from(path))))
}

/// The resident netns thread, started on first use.
mod resident {
    use super::*;

    pub(super) type Job = Box<dyn FnOnce(BorrowedFd<'_>) + Send>;

    static SENDER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

    /// Queues `job`, (re)starting the thread if there is none.
    pub(super) fn submit(job: Job) -> io::Result<()> {
        let mut sender = SENDER.lock().unwrap_or_else(PoisonError::into_inner);
        // A send only fails if the thread is gone (it could not enter its home netns).
        let job = match sender.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let tx = start()?;
        tx.send(job)
            .map_err(|_| io::Error::other("netns thread exited at start"))?;
        *sender = Some(tx);
        Ok(())
    }

    fn start() -> io::Result<mpsc::Sender<Job>> {
        // Home is the main thread's netns (/proc/self is the thread group leader), not that of
        // whichever thread happened to start us: we must not pin a pod's netns between jobs.
        let home = File::open("/proc/self/ns/net")?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("lanes-netns".into()).spawn(move || {
            if let Err(errno) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
                tracing::error!(error = %errno, "netns thread cannot enter its home netns");
                return;
            }
            while let Ok(job) = rx.recv() {
                job(home.as_fd());
            }
        })?;
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::dataplane::tests::support::{privileged, TestNetns};

    fn netns_inode(path: &str) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn missing_netns_names_the_path() {
        let err = run_in(Path::new("/run/netns/lanes-no-such-ns"), || ()).unwrap_err();
        assert!(err.is_netns_missing(), "{err:?}");
        assert!(err.to_string().contains("/run/netns/lanes-no-such-ns"), "{err}");
        let err = run_in_new_thread(Path::new("/run/netns/lanes-no-such-ns"), || ()).unwrap_err();
        assert!(err.is_netns_missing(), "{err:?}");
    }

    #[test]
    fn non_netns_file_is_an_enter_error() {
        // /dev/null opens fine but is no namespace: setns says EINVAL (EPERM unprivileged).
        let err = run_in(Path::new("/dev/null"), || ()).unwrap_err();
        assert!(matches!(err, Error::NetnsEnter { .. }), "{err:?}");
        assert!(err.to_string().starts_with("enter netns /dev/null: "), "{err}");
    }

    #[test]
    fn jobs_run_inside_and_threads_return_home_even_after_a_panic() {
        if !privileged("jobs_run_inside_and_threads_return_home_even_after_a_panic", false) {
            return;
        }
        let pod = TestNetns::new();
        let pod_inode = netns_inode(pod.path.to_str().unwrap());
        let home = netns_inode("/proc/self/ns/net");
        let here = netns_inode("/proc/thread-self/ns/net");
        let inside = || netns_inode("/proc/thread-self/ns/net");
        assert_eq!(run_in(&pod.path, inside).unwrap(), pod_inode);
        assert_eq!(run_in_new_thread(&pod.path, inside).unwrap(), pod_inode);

        let caught = std::panic::catch_unwind(|| run_in(&pod.path, || panic!("boom")));
        assert!(caught.is_err(), "the panic inside the netns must reach the caller");
        // The resident thread survived the panic and is back home between jobs.
        let (tx, rx) = mpsc::channel();
        resident::submit(Box::new(move |_| tx.send(inside()).unwrap())).unwrap();
        assert_eq!(rx.recv().unwrap(), home);
        assert_eq!(run_in(&pod.path, inside).unwrap(), pod_inode);
        assert_eq!(here, netns_inode("/proc/thread-self/ns/net"), "caller never moves");
    }

    #[test]
    fn guard_restores_on_early_return() {
        if !privileged("guard_restores_on_early_return", false) {
            return;
        }
        let pod = TestNetns::new();
        let target = open(&pod.path).unwrap();
        std::thread::spawn(move || {
            let home = File::open("/proc/thread-self/ns/net").unwrap();
            let before = netns_inode("/proc/thread-self/ns/net");
            let failing = || -> Result<()> {
                let _guard = NetnsGuard::enter(home.as_fd(), target.as_fd(), Path::new("pod"))?;
                assert_ne!(before, netns_inode("/proc/thread-self/ns/net"));
                Err(Error::Invalid("early return".into()))
            };
            assert!(failing().is_err());
            assert_eq!(before, netns_inode("/proc/thread-self/ns/net"));
        })
        .join()
        .unwrap();
    }
}
