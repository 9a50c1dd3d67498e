//! Pod teardown: the plain synchronous delete, and a deferred variant that returns before the
//! kernel's slow part.

use ipnet::IpNet;
use tokio::task::JoinHandle;

use super::link::Link;
use super::route::link_route_msg;
use super::{validate_ifname, Dataplane, Error, Result};

/// Names of veths whose deletion was deferred: `ldel<ifindex>`. Not under the `lan` prefix, so
/// pod listings never see them; ifindexes are unique per netns, so names never collide.
pub const DEFERRED_PREFIX: &str = "ldel";

impl Dataplane {
    /// Removes a pod's veth and routes; a missing veth or route counts as success.
    ///
    /// Equivalent to `ip route del <addr>/32 dev <host> proto 76` per address, then
    /// `ip link del <host>` (which also removes the pod end). Only routes through `<host>` are
    /// touched, so an address already reassigned to another pod keeps its new route. Refuses
    /// to delete a link that is not a veth.
    ///
    /// The link delete waits for the kernel's RCU grace periods (about 20 ms here, most of the
    /// call); see [`Dataplane::teardown_pod_deferred`] to not wait for it.
    pub async fn teardown_pod(&self, host_ifname: &str, addresses: &[IpNet]) -> Result<()> {
        let Some(link) = self.veth_to_remove(host_ifname).await? else {
            return Ok(());
        };
        // Routes first: should the delete fail, the address no longer leads to this pod.
        self.delete_pod_routes(&link, addresses).await?;
        self.host.link_del(link.index, &link.name).await.map(drop)
    }

    /// Like [`Dataplane::teardown_pod`], but returns once the pod is cut off and its names are
    /// free, leaving the slow link delete to the returned task.
    ///
    /// Equivalent to:
    /// ```text
    /// ip route del <addr>/32 dev <host> proto 76            # per address
    /// ip link set <host> down
    /// ip -n <pod> link set <if> down; ip -n <pod> link set <if> name ldel<peer ifindex>
    /// ip link set <host> name ldel<ifindex>
    /// ip link del ldel<ifindex>                              # in the returned task
    /// ```
    /// Why this is safe: when it returns, no Lanes route points at the veth, both ends are down
    /// (no traffic in either direction), and neither `<host>` nor the pod's `<if>` name is in
    /// use, so an immediate re-ADD of the same container (same names, same netns) succeeds. The
    /// pod end is reached through the host socket with `IFLA_TARGET_NETNSID`, so no thread
    /// enters the pod netns. A delete that never runs (daemon killed) leaves only an inert,
    /// down `ldel*` veth, which [`Dataplane::reap_deferred`] removes at startup.
    pub async fn teardown_pod_deferred(
        &self,
        host_ifname: &str,
        addresses: &[IpNet],
    ) -> Result<JoinHandle<Result<()>>> {
        let Some(link) = self.veth_to_remove(host_ifname).await? else {
            return Ok(self.rt.spawn(async { Ok(()) }));
        };
        self.delete_pod_routes(&link, addresses).await?;
        // A link can only be renamed while down. The host end goes last: if anything before
        // fails, a retry still finds it under its own name.
        self.host.link_set_down(None, link.index, &link.name).await?;
        if let (Some(nsid), Some(peer)) = (link.peer_netnsid, link.peer_index) {
            let pod_end = format!("peer of {}", link.name);
            let dead = format!("{DEFERRED_PREFIX}{peer}");
            self.host.link_set_down(Some(nsid), peer, &pod_end).await?;
            self.host.link_rename(Some(nsid), peer, &pod_end, &dead).await?;
        }
        let dead = format!("{DEFERRED_PREFIX}{}", link.index);
        self.host.link_rename(None, link.index, &link.name, &dead).await?;
        let host = self.host.clone();
        Ok(self
            .rt
            .spawn(async move { host.link_del(link.index, &dead).await.map(drop) }))
    }

    /// Deletes veths left behind by deferred teardowns whose delete never ran
    /// (`ip link del` of every `ldel*` veth). Call it once at startup.
    pub async fn reap_deferred(&self) -> Result<usize> {
        let mut reaped = 0;
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
