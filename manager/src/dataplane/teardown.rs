//! Pod teardown: the plain synchronous delete, and a deferred variant that returns before the
//! kernel's slow part.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::link::Link;
use super::route::link_route_msg;
use super::{netns, validate_ifname, Dataplane, Error, Netlink, Result};

/// Names of veths whose deletion was deferred: `ldel<ifindex>`. Not under the `lan` prefix, so
/// pod listings never see them; ifindexes are unique per netns, so names never collide.
pub const DEFERRED_PREFIX: &str = "ldel";

/// Link group of veths waiting for deletion (`ip link set … group 7676`). One
/// `ip link del group 7676` removes them all in a single `unregister_netdevice_many`,
/// paying the kernel's RCU grace periods once per batch instead of once per veth.
pub const DEFERRED_GROUP: u32 = 7676;

/// How long the reaper waits for more dead veths before deleting a batch: the batch holds
/// RTNL for ~20 ms, so fewer, larger batches stall fewer concurrent ADD/DELs.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// While pods are being wired the reaper holds its batch back, since every ADD would wait for
/// the batch's RTNL hold; it deletes once setups have been quiet this long...
const QUIET: Duration = Duration::from_millis(20);
/// ... or, under endless churn, this long after the batch's first veth came in.
const MAX_DEFER: Duration = Duration::from_secs(1);

/// Pod setups in flight, so that the reaper can keep out of their way.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// When a setup last started or ended.
    last: Mutex<Instant>,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            // As if the last setup were long past (checked: the clock may be younger than QUIET).
            last: Mutex::new(Instant::now().checked_sub(QUIET).unwrap_or_else(Instant::now)),
        })
    }

    /// Marks a setup in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.stamp();
        ActivityGuard(self.clone())
    }

    fn stamp(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn quiet(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && self.last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= QUIET
    }
}

pub(crate) struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0.stamp();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type Waiter = oneshot::Sender<std::result::Result<(), String>>;
pub(crate) type ReaperQueue = mpsc::UnboundedSender<Waiter>;

/// The one task that deletes deferred veths, a batch at a time. Each waiter
/// hears how the batch that included its veth went.
pub(crate) fn spawn_reaper(host: Netlink, activity: Arc<Activity>, rt: &tokio::runtime::Handle) -> ReaperQueue {
    let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
    rt.spawn(async move {
        while let Some(first) = rx.recv().await {
            let deadline = Instant::now() + MAX_DEFER;
            tokio::time::sleep(BATCH_WINDOW).await;
            while !activity.quiet() && Instant::now() < deadline {
                tokio::time::sleep(QUIET / 2).await;
            }
            let mut waiters = vec![first];
            while let Ok(w) = rx.try_recv() {
                waiters.push(w);
            }
            let outcome = host
                .link_del_group(DEFERRED_GROUP)
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        }
    });
    tx
}

impl Dataplane {
    /// Removes a pod's veth and routes; a missing veth or route counts as success.
    ///
    /// Equivalent to `ip route del <addr>/32 dev <host> proto 76` per address, then
    /// `ip link del <host>` (which also removes the pod end). Only routes through `<host>` are
    /// touched, so an address already reassigned to another pod keeps its new route. Refuses
    /// to delete a link that is not a veth.
    ///
    /// The link delete waits for the kernel's RCU grace periods: ~20 ms per veth on the dev VM,
    /// ~40 ms when deletes come back to back. [`Dataplane::teardown_pod_deferred`] does not wait.
    pub async fn teardown_pod(&self, host_ifname: &str, addresses: &[IpNet]) -> Result<()> {
        let Some(link) = self.veth_to_remove(host_ifname).await? else {
            return Ok(());
        };
        // Routes first: should the delete fail, the address no longer leads to this pod.
        self.delete_pod_routes(&link, addresses).await?;
        self.host.link_del(link.index, &link.name).await.map(drop)
    }

    /// Like [`Dataplane::teardown_pod`], but returns once the pod is cut off and its interface
    /// names are free, leaving the slow link delete (~20 ms of RCU waits) to the returned task.
    ///
    /// Equivalent to:
    /// ```text
    /// ip route del <addr>/32 dev <host> proto 76            # per address
    /// ip -n <netns> link set <if> down; ip -n <netns> link set <if> name ldel<its ifindex>
    /// ip link set <host> down; ip link set <host> name ldel<ifindex>
    /// ip link del ldel<ifindex>                             # in the returned task
    /// ```
    /// Why this is safe: when it returns, no Lanes route points at the veth, both ends are down
    /// (no traffic either way), and neither `<host>` nor the pod's interface name is in use, so
    /// an immediate re-ADD of the same container (same names, same netns) succeeds. The pod end
    /// is found as the host end's peer (`IFLA_LINK`) and checked to point back before it is
    /// touched, so a wrong `netns` cannot rename an unrelated interface. Without `netns` (or
    /// if it is gone) only the pod end's name stays taken until the task ends. A delete that
    /// never runs (daemon killed) leaves an inert, down `ldel*` veth for
    /// [`Dataplane::reap_deferred`].
    pub async fn teardown_pod_deferred(
        &self,
        host_ifname: &str,
        addresses: &[IpNet],
        netns: Option<&Path>,
    ) -> Result<JoinHandle<Result<()>>> {
        let Some(link) = self.veth_to_remove(host_ifname).await? else {
            return Ok(self.rt.spawn(async { Ok(()) }));
        };
        self.delete_pod_routes(&link, addresses).await?;
        // Links can only be renamed while down. The host end goes last: if anything before
        // fails, a retry still finds the pod under its usual name.
        if let Some(path) = netns {
            self.retire_pod_end(&link, path).await?;
        }
        self.host.link_set_down(link.index, &link.name).await?;
        let dead = format!("{DEFERRED_PREFIX}{}", link.index);
        self.host
            .link_retire(link.index, &link.name, &dead, DEFERRED_GROUP)
            .await?;
        let (tx, rx) = oneshot::channel();
        if self.reaper.send(tx).is_err() {
            // No reaper (runtime shutting down): delete it here rather than leak it.
            let host = self.host.clone();
            return Ok(self
                .rt
                .spawn(async move { host.link_del(link.index, &dead).await.map(drop) }));
        }
        Ok(self.rt.spawn(async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Invalid(format!("batched delete of {dead}: {e}"))),
                Err(_) => Err(Error::Invalid(format!("batched delete of {dead}: reaper stopped"))),
            }
        }))
    }

    /// Sets the pod end of `host` down and renames it out of the way.
    async fn retire_pod_end(&self, host: &Link, path: &Path) -> Result<()> {
        let file = match netns::open(path) {
            Ok(file) => file,
            // The netns is gone, and with it the pod end: nothing holds the name.
            Err(err) if err.is_netns_missing() => return Ok(()),
            Err(err) => return Err(err),
        };
        let pod = netns::netlink_in_file(&file, path, &self.rt)?;
        let Some(peer) = host.peer_index else {
            return Ok(());
        };
        let Some(pod_end) = pod.link_dump().await?.into_iter().find(|l| l.index == peer) else {
            return Ok(());
        };
        if !pod_end.is_veth || pod_end.peer_index != Some(host.index) {
            return Err(Error::Invalid(format!(
                "teardown of {}: {} in {} is not its peer",
                host.name,
                pod_end.name,
                path.display()
            )));
        }
        pod.link_set_down(pod_end.index, &pod_end.name).await?;
        let dead = format!("{DEFERRED_PREFIX}{}", pod_end.index);
        pod.link_rename(pod_end.index, &pod_end.name, &dead).await
    }

    /// Deletes veths left behind by deferred teardowns whose delete never ran
    /// (`ip link del` of every `ldel*` veth). Call it once at startup.
    pub async fn reap_deferred(&self) -> Result<usize> {
        let mut reaped = 0;
        if self.host.link_del_group(DEFERRED_GROUP).await? {
            reaped += 1;
        }
        for link in self.host.link_dump().await? {
            if link.is_veth && link.name.starts_with(DEFERRED_PREFIX) {
                reaped += usize::from(self.host.link_del(link.index, &link.name).await?);
            }
        }
        Ok(reaped)
    }

    /// The host veth to tear down, `None` if it is already gone. Anything but a veth is refused:
    /// a bad name must never take down the node's uplink.
    async fn veth_to_remove(&self, host_ifname: &str) -> Result<Option<Link>> {
        validate_ifname("host interface name", host_ifname)?;
        match self.host.link_get(host_ifname).await? {
            Some(link) if !link.is_veth => Err(Error::Invalid(format!(
                "teardown of {host_ifname}: not a veth, refusing to delete it"
            ))),
            found => Ok(found),
        }
    }

    /// `ip route del <addr>/32 dev <link> proto 76` for each address; already gone is fine.
    async fn delete_pod_routes(&self, link: &Link, addresses: &[IpNet]) -> Result<()> {
        for addr in addresses {
            let what = format!("{addr} dev {} proto 76", link.name);
            self.host.route_del(link_route_msg(*addr, link.index), &what).await?;
        }
        Ok(())
    }
}
