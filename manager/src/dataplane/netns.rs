//! Entering network namespaces without ever leaking one.
//!
//! A thread's netns decides which kernel objects its new sockets and `/proc/sys/net` opens see.
//! tokio moves tasks between worker threads, so a worker that `setns`'d and then hit an `.await`
//! (or an early `?`, netavark's `exec_netns!` bug) would run unrelated tasks in a pod's netns.
//! Hence the rules here:
//!
//! - `setns` happens only on a dedicated, short-lived `std::thread`, never on a tokio worker.
//! - A [`NetnsGuard`] moves the thread back in `Drop`, so early returns and panics restore too.
//! - Nothing awaits inside: the closure runs synchronously and its result is handed back.
//!
//! A netlink socket opened inside stays bound to that netns for its whole life, so the pod's
//! rtnetlink connection is created on the thread and then driven from the normal runtime.
//! One such thread costs about 40 µs here (spawn + two `setns` + join).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::{Error, Netlink, Result};

/// The future that drives one rtnetlink socket; spawn it on the runtime the handle is used from.
pub type Connection = rtnetlink::proto::Connection<RouteNetlinkMessage>;

/// Opens a netns file (`/run/netns/x`, `/proc/<pid>/ns/net`, …) for [`run_in`]-style entry or
/// for `IFLA_NET_NS_FD`.
///
/// A missing path gives [`Error::NetnsOpen`] naming it ([`Error::is_netns_missing`]).
pub fn open(netns: &Path) -> Result<File> {
    File::open(netns).map_err(|source| Error::NetnsOpen {
        path: netns.to_path_buf(),
        source,
    })
}

/// While alive, the current thread is inside another netns; dropping it moves the thread back.
struct NetnsGuard {
    original: File,
}

impl NetnsGuard {
    /// `ip netns exec`-like entry for the current thread only.
    fn enter(target: BorrowedFd<'_>, path: &Path) -> Result<Self> {
        // thread-self rather than self: namespaces are per thread and only this one moves.
        let original = open(Path::new("/proc/thread-self/ns/net"))?;
        setns(target, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::NetnsEnter {
            path: path.to_path_buf(),
            source: io::Error::from(errno),
        })?;
        Ok(NetnsGuard { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(errno) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Going back into a netns we hold an fd for only fails if the process lost
            // CAP_SYS_ADMIN. Carrying on would let daemon code run against a pod's kernel state,
            // which is worse than dying and being restarted.
            tracing::error!(error = %errno, "cannot restore the original network namespace");
            std::process::abort();
        }
    }
}

/// Runs `f` on a dedicated thread inside the netns at `netns`, then restores that thread
/// (`ip netns exec <netns> ...` for in-process code).
///
/// Use it for things bound to the thread's netns at open time: sockets and `/proc/sys/net`.
/// The calling thread never changes netns. It blocks until `f` returns; a panic in `f` is
/// re-raised here after the netns was restored.
pub fn run_in<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = open(netns)?;
    run_in_fd(file.as_fd(), netns, f)
}

/// [`run_in`] for an already opened netns; `path` is only used in messages.
pub fn run_in_fd<T: Send>(netns: BorrowedFd<'_>, path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("lanes-netns".into())
            .spawn_scoped(scope, move || -> Result<T> {
                let _guard = NetnsGuard::enter(netns, path)?;
                Ok(f())
            })
            .map_err(|err| Error::NetnsEnter {
                path: path.to_path_buf(),
                source: io::Error::new(err.kind(), format!("spawn thread: {err}")),
            })?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Opens an rtnetlink connection inside `netns` (like `ip -n <netns> ...` does) and returns its
/// handle plus the connection future, which the caller must spawn on `rt`.
///
/// The socket is registered with `rt`'s reactor, so `rt` must be the runtime that will drive
/// the connection. Blocks for one short thread (see the module docs).
pub fn connect_in(netns: &Path, rt: &tokio::runtime::Handle) -> Result<(rtnetlink::Handle, Connection)> {
    let file = open(netns)?;
    connect_in_fd(file.as_fd(), netns, rt)
}

/// [`connect_in`] for an already opened netns.
pub fn connect_in_fd(
    netns: BorrowedFd<'_>,
    path: &Path,
    rt: &tokio::runtime::Handle,
) -> Result<(rtnetlink::Handle, Connection)> {
    let opened = run_in_fd(netns, path, || {
        // tokio's AsyncFd registers with the reactor of the runtime that is current.
        let _rt = rt.enter();
        rtnetlink::new_connection()
    })?;
    let (connection, handle, _unsolicited) = opened.map_err(|source| Error::Netlink {
        op: format!("open netlink socket in {}", path.display()),
        source,
    })?;
    Ok((handle, connection))
}

/// [`connect_in_fd`], with the connection spawned on `rt`: ready to use.
///
/// The connection task ends by itself once every clone of the returned handle is dropped.
pub fn netlink_in_fd(netns: BorrowedFd<'_>, path: &Path, rt: &tokio::runtime::Handle) -> Result<Netlink> {
    let (handle, connection) = connect_in_fd(netns, path, rt)?;
    rt.spawn(connection);
    Ok(Netlink::new(handle, Some(path.to_path_buf())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn current_netns_inode() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    #[test]
    fn missing_netns_names_the_path() {
        let err = run_in(Path::new("/run/netns/lanes-no-such-ns"), || ()).unwrap_err();
        assert!(err.is_netns_missing(), "{err:?}");
        assert!(err.to_string().contains("/run/netns/lanes-no-such-ns"), "{err}");
    }

    #[test]
    fn non_netns_file_is_an_enter_error() {
        // /dev/null opens fine but is no namespace: setns says EINVAL (or EPERM unprivileged).
        let err = run_in(Path::new("/dev/null"), || ()).unwrap_err();
        assert!(matches!(err, Error::NetnsEnter { .. }), "{err:?}");
        assert!(err.to_string().starts_with("enter netns /dev/null: "), "{err}");
    }

    #[test]
    fn caller_thread_never_moves_and_panics_propagate() {
        let before = current_netns_inode();
        // Entering our own netns needs CAP_SYS_ADMIN; without it there is nothing to test.
        if run_in(Path::new("/proc/self/ns/net"), || ()).is_err() {
            eprintln!("skipped: setns needs CAP_SYS_ADMIN");
            return;
        }
        let caught = std::panic::catch_unwind(|| {
            run_in(Path::new("/proc/self/ns/net"), || panic!("boom")).ok();
        });
        assert!(
            caught.is_err(),
            "the panic inside the netns thread must reach the caller"
        );
        assert_eq!(before, current_netns_inode());
    }
}
