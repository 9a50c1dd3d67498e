//! The kernel side of pod networking: veth pairs, `/32` routes and proxy ARP, Calico style.
//!
//! This is the only module that speaks netlink. Everything goes through `rtnetlink` /
//! `netlink-packet-route` and `/proc/sys`; nothing shells out to `ip`.
//!
//! # The wiring (one pod, IPv4)
//!
//! ```text
//!   node netns (where lanesd runs)            pod netns
//!   lanXXXXXXXXXXX  <--- veth pair --->  eth0  10.244.1.5/32
//!     proxy_arp=1, proxy_delay=0               169.254.1.1/32 dev eth0 scope link
//!   10.244.1.5/32 dev lanX scope link          default via 169.254.1.1 dev eth0
//! ```
//!
//! The pod ARPs for 169.254.1.1; the host end answers with its own MAC (proxy ARP), so every
//! packet from the pod lands in the node's routing table. The node reaches the pod through the
//! `/32` route. Proxy ARP only answers when the node has a route to 169.254.1.1 that does *not*
//! go out of the veth it was asked on, which the node's default route normally provides.
//! IPv4 forwarding must be on in the node netns ([`Dataplane::ensure_ip_forwarding`]).
//!
//! Every route Lanes installs carries protocol [`RTPROT_LANES`] (`proto 76`), so listings and
//! cleanup touch only Lanes' routes and survive a daemon restart untouched.
//!
//! # Layout
//!
//! - [`netns`]: entering a network namespace on a dedicated thread (never a tokio worker) with a
//!   guard that always restores the original one; opening netlink sockets inside a pod.
//! - `link`, `addr`, `route`: pure message builders plus the thin [`Netlink`] wrapper methods
//!   (`link_add`, `addr_add`, `route_replace`, …), one handle per netns, errors naming the subject.
//! - [`sysctl`]: `/proc/sys` reads and writes for the netns of the calling thread.
//! - `pod`: [`Dataplane`], the API the CNI handlers and reconcilers use; `check` holds its
//!   CNI CHECK comparison, `teardown` the synchronous and deferred pod removal.
//! - `batch`: the blocking socket pod wiring uses on the ADD path, where each step's requests
//!   go to the kernel in one datagram instead of one task round trip each.
//!
//! IPv6 pod addresses are rejected with [`Error::Unsupported`] rather than half-configured;
//! blackholes, listings and forwarding already handle both families.

pub mod addr;
mod batch;
mod check;
pub mod encap;
pub mod encap_route;
pub mod encap_sync;
pub mod ipip;
pub mod link;
pub mod neigh;
pub mod netns;
pub mod pod;
pub mod route;
pub mod secondary;
pub mod sysctl;
mod teardown;
pub mod vxlan;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use pod::{Dataplane, PodLinks, PodSpec, PodWiring};
pub use teardown::DEFERRED_PREFIX;

/// The `rtm_protocol` of every route Lanes installs (`ip route ... proto 76`).
///
/// An otherwise unused value (`/etc/iproute2/rt_protos` stops at 42 before BGP's 186), so routes
/// are ours if and only if they carry it.
pub const RTPROT_LANES: u8 = 76;

/// The link-local next hop every pod routes through; the host veth answers for it via proxy ARP.
pub const POD_GATEWAY_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);

/// The longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A dataplane failure. The message names the step and the object (link, address, netns).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netns path could not be opened: the sandbox is gone or `CNI_NETNS` is wrong.
    #[error("open netns {}: {source}", path.display())]
    NetnsOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `setns(2)` into the netns failed (not a netns file, or no `CAP_SYS_ADMIN`).
    #[error("enter netns {}: {source}", path.display())]
    NetnsEnter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A netlink request failed; `op` reads like the `ip` command that failed.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    /// A `/proc/sys` read or write failed.
    #[error("{op}: {source}")]
    Sysctl {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The pod netns already has an interface with the requested name.
    #[error(
        "create veth {host_ifname}/{ifname} in {}: interface {ifname} already exists in the pod netns",
        netns.display()
    )]
    PodIfnameTaken {
        host_ifname: String,
        ifname: String,
        netns: PathBuf,
    },
    /// The request itself is malformed (bad interface name, prefix that is not a host route, …).
    #[error("invalid {0}")]
    Invalid(String),
    /// Valid but not implemented, e.g. IPv6 pod addresses.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// The errno behind a netlink, sysctl or netns failure, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::NetnsOpen { source, .. }
            | Error::NetnsEnter { source, .. }
            | Error::Netlink { source, .. }
            | Error::Sysctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the netns path does not exist, which the daemon reports against `CNI_NETNS`.
    pub fn is_netns_missing(&self) -> bool {
        matches!(self, Error::NetnsOpen { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Wraps an rtnetlink failure with what was being done. Kernel errors keep their errno
    /// (`File exists (os error 17)`), because rtnetlink's own Display hides it in a debug dump.
    pub(crate) fn netlink(op: impl Into<String>, err: rtnetlink::Error) -> Self {
        let source = match err {
            rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
            other => io::Error::other(other.to_string()),
        };
        Error::Netlink { op: op.into(), source }
    }
}

/// Why [`Dataplane::check_pod`] failed: the pod's wiring has drifted, or it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Every missing or wrong item, each naming the object (`route 10.0.0.5/32 dev lan…`).
    #[error("pod dataplane mismatch: {}", .0.join("; "))]
    Mismatch(Vec<String>),
    /// Reading the state failed (e.g. the netns is gone).
    #[error(transparent)]
    Dataplane(#[from] Error),
}

/// The host-side veth name for a container interface: `lan` + 11 hex digits of
/// `sha256(container_id + "." + ifname)`.
///
/// Stable across Lanes versions (teardown after an upgrade must find old pods' veths), unique per
/// (container, interface) and 14 bytes, inside [`MAX_IFNAME_LEN`]. Like Calico's `cali` +
/// sha1 prefix, but with our own prefix so `list_host_links("lan")` finds only ours.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}.{ifname}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("lan{}", &hex[..11])
}

/// Rejects names the kernel would refuse, and anything that could escape a `/proc/sys` path.
pub(crate) fn validate_ifname(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {name:?}: must be 1-{MAX_IFNAME_LEN} bytes without '/', ':' or whitespace"
        )))
    }
}

/// One rtnetlink handle bound to one network namespace; `ns` names it in error messages.
///
/// The wrapper methods (`link_*`, `addr_*`, `route_*`) live next to their message builders in
/// `link.rs`, `addr.rs` and `route.rs`. Cloning is cheap: the handle is a channel sender.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    /// `None` for the netns the daemon runs in, else the pod's netns path.
    ns: Option<PathBuf>,
    /// Held for the whole of a dump: the kernel runs one dump per socket at a time and answers a
    /// second one with `EBUSY`, which concurrent tasks sharing this handle (GC next to the
    /// startup reconcile, say) would otherwise see.
    dumps: Arc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    /// A handle on a new socket in the calling thread's netns (the daemon's), its connection
    /// spawned on `rt`.
    pub fn open_here(rt: &tokio::runtime::Handle) -> Result<Self> {
        let (connection, handle, _unsolicited) = rtnetlink::new_connection().map_err(|source| Error::Netlink {
            op: "open netlink socket".into(),
            source,
        })?;
        rt.spawn(connection);
        Ok(Netlink::new(handle, None))
    }

    /// Wraps a handle whose socket was opened in `ns` (`None`: the daemon's own netns).
    pub fn new(handle: rtnetlink::Handle, ns: Option<PathBuf>) -> Self {
        Netlink {
            handle,
            ns,
            dumps: Arc::default(),
        }
    }

    /// Runs one dump request built by `request` and collects every reply; `op` names it in errors.
    /// The request is only sent once this handle's dump turn has come (see `dumps`).
    pub(crate) async fn dump<T, S>(
        &self,
        op: impl FnOnce() -> String,
        request: impl FnOnce(&rtnetlink::Handle) -> S,
    ) -> Result<Vec<T>>
    where
        S: futures::Stream<Item = std::result::Result<T, rtnetlink::Error>>,
    {
        use futures::TryStreamExt;
        let _turn = self.dumps.lock().await;
        request(&self.handle)
            .try_collect()
            .await
            .map_err(|e| Error::netlink(op(), e))
    }

    /// Suffix for error messages: `" in /run/netns/x"`, or nothing for the node netns.
    pub(crate) fn where_(&self) -> String {
        in_netns_suffix(self.ns.as_deref())
    }
}

/// `" in /run/netns/x"` for a pod's netns, nothing for the node's: the tail of error messages.
pub(crate) fn in_netns_suffix(ns: Option<&std::path::Path>) -> String {
    match ns {
        Some(path) => format!(" in {}", path.display()),
        None => String::new(),
    }
}
