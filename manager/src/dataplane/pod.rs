//! [`Dataplane`]: wiring pods to the node (veth, proxy ARP, `/32` routes) and the node-level
//! routes Lanes owns (blackholes).

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use nix::errno::Errno;
use rtnetlink::packet_route::route::RouteType;

use super::link::{veth_msg, Link};
use super::route::{blackhole_msg, default_via_msg, link_route_msg};
use super::{netns, sysctl, validate_ifname, Error, Netlink, Result, POD_GATEWAY_V4};

/// Loopback is ifindex 1 in every netns (`LOOPBACK_IFINDEX`), so it needs no lookup.
const LOOPBACK_IFINDEX: u32 = 1;

/// What to wire up for one pod interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod's netns file (`CNI_NETNS`), e.g. `/run/netns/x` or `/proc/<pid>/ns/net`.
    pub netns: PathBuf,
    /// The interface name inside the pod (`CNI_IFNAME`, usually `eth0`).
    pub container_ifname: String,
    /// The node-side veth name, normally [`super::host_ifname`].
    pub host_ifname: String,
    /// The pod's addresses, each a `/32` (IPv6 is [`Error::Unsupported`] for now).
    pub addresses: Vec<IpNet>,
    /// MTU of both veth ends.
    pub mtu: u32,
}

/// What `setup_pod` created, for the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLinks {
    pub host_mac: String,
    pub container_mac: String,
    pub container_ifindex: u32,
    pub host_ifindex: u32,
}

impl PodSpec {
    /// What the veth alone needs: names and MTU.
    pub fn validate_link(&self) -> Result<()> {
        validate_ifname("host interface name", &self.host_ifname)?;
        validate_ifname("container interface name", &self.container_ifname)?;
        if !(68..=65535).contains(&self.mtu) {
            return Err(Error::Invalid(format!("mtu {}: must be 68-65535", self.mtu)));
        }
        Ok(())
    }

    /// Everything that can be rejected without touching the kernel.
    pub fn validate(&self) -> Result<()> {
        self.validate_link()?;
        if self.addresses.is_empty() {
            return Err(Error::Invalid("pod spec: no addresses".into()));
        }
        for addr in &self.addresses {
            match addr {
                IpNet::V6(_) => {
                    return Err(Error::Unsupported(format!(
                        "IPv6 pod address {addr}: only IPv4 pods are wired up"
                    )))
                }
                IpNet::V4(v4) if v4.prefix_len() != 32 => {
                    return Err(Error::Invalid(format!("pod address {addr}: must be a /32")))
                }
                IpNet::V4(_) => {}
            }
        }
        if !(68..=65535).contains(&self.mtu) {
            return Err(Error::Invalid(format!("mtu {}: must be 68-65535", self.mtu)));
        }
        Ok(())
    }
}

/// The node's dataplane: one rtnetlink connection in the netns the daemon runs in, plus the
/// runtime that drives the short-lived per-pod connections.
#[derive(Clone, Debug)]
pub struct Dataplane {
    pub(crate) host: Netlink,
    pub(crate) rt: tokio::runtime::Handle,
    /// Where deferred teardowns queue their veth for the batched delete.
    pub(crate) reaper: super::teardown::ReaperQueue,
}

impl Dataplane {
    /// Opens the node-side rtnetlink connection in the current thread's netns and spawns it on
    /// the current runtime.
    pub async fn new() -> Result<Self> {
        let (connection, handle, _unsolicited) = rtnetlink::new_connection().map_err(|source| Error::Netlink {
            op: "open netlink socket".into(),
            source,
        })?;
        let rt = tokio::runtime::Handle::current();
        rt.spawn(connection);
        let host = Netlink::new(handle, None);
        let reaper = super::teardown::spawn_reaper(host.clone(), &rt);
        Ok(Dataplane { host, rt, reaper })
    }

    /// Wires one pod interface, or leaves nothing behind.
    ///
    /// Equivalent to:
    /// ```text
    /// ip link add <host> mtu M up type veth peer name <if> mtu M netns <netns>
    /// sysctl -w net.ipv4.conf.<host>.proxy_arp=1 net.ipv4.neigh.<host>.proxy_delay=0
    /// ip route replace <addr>/32 dev <host> scope link proto 76        # per address
    /// ip -n <netns> addr replace <addr>/32 dev <if>                    # per address
    /// ip -n <netns> link set <if> up; ip -n <netns> link set lo up
    /// ip -n <netns> route add 169.254.1.1/32 dev <if> scope link proto 76
    /// ip -n <netns> route add default via 169.254.1.1 dev <if> proto 76
    /// ```
    /// If any step after the veth creation fails, the veth is deleted (taking its routes and
    /// the pod end with it). An existing `<if>` in the pod is [`Error::PodIfnameTaken`]; an
    /// existing `<host>` fails with `EEXIST` and is left alone, since this call did not make it.
    ///
    /// The work runs in its own task, so dropping the returned future (a cancelled request)
    /// still completes the setup or its rollback.
    pub async fn setup_pod(&self, spec: &PodSpec) -> Result<PodLinks> {
        spec.validate()?;
        let (host, rt, spec) = (self.host.clone(), self.rt.clone(), spec.clone());
        join_setup(self.rt.spawn(setup(host, rt, spec))).await
    }

    /// The first half of [`Dataplane::setup_pod`]: the veth pair (`ip link add … type veth
    /// peer … netns …`) and everything that needs no address (links up, proxy ARP, the pod's
    /// gateway and default routes, the gateway neighbour), so it runs while IPAM persists the
    /// address. Follow with [`Dataplane::configure_pod`], or [`Dataplane::remove_pod_link`].
    pub async fn create_pod_link(&self, spec: &PodSpec) -> Result<PodLinks> {
        spec.validate_link()?;
        let (host, rt, spec) = (self.host.clone(), self.rt.clone(), spec.clone());
        join_setup(self.rt.spawn(async move {
            let pod = create(&host, &rt, &spec).await?;
            match prepare(&host, &pod, &spec).await {
                Ok(links) => Ok(links),
                Err(err) => {
                    rollback(&host, &spec.host_ifname).await;
                    Err(err)
                }
            }
        }))
        .await
    }

    /// The second half: the pod's address and the node's /32 route to it (`ip addr add`,
    /// `ip route replace <addr>/32 dev <host>`), on links made by
    /// [`Dataplane::create_pod_link`]. On failure the veth is deleted.
    pub async fn configure_pod(&self, spec: &PodSpec, links: &PodLinks) -> Result<PodLinks> {
        spec.validate()?;
        let (host, rt, spec, links) = (self.host.clone(), self.rt.clone(), spec.clone(), links.clone());
        join_setup(self.rt.spawn(async move {
            let ns = netns::open(&spec.netns)?;
            let pod = netns::netlink_in_file(&ns, &spec.netns, &rt)?;
            drop(ns);
            match address(&host, &pod, &spec, &links).await {
                Ok(()) => Ok(links),
                Err(err) => {
                    rollback(&host, &spec.host_ifname).await;
                    Err(err)
                }
            }
        }))
        .await
    }

    /// Undo [`Dataplane::create_pod_link`] (`ip link del <host>`); absent is success.
    pub async fn remove_pod_link(&self, host_ifname: &str) {
        rollback(&self.host, host_ifname).await;
    }

    /// `ip route replace blackhole <block> proto 76`.
    pub async fn ensure_blackhole(&self, block: IpNet) -> Result<()> {
        let what = format!("blackhole {} proto 76", block.trunc());
        self.host.route_replace(blackhole_msg(block), &what).await
    }

    /// `ip route del blackhole <block> proto 76`; absent is success.
    pub async fn remove_blackhole(&self, block: IpNet) -> Result<()> {
        let what = format!("blackhole {} proto 76", block.trunc());
        self.host.route_del(blackhole_msg(block), &what).await.map(drop)
    }

    /// `ip route show type blackhole proto 76` (both families): Lanes' blackholes only.
    pub async fn list_blackholes(&self) -> Result<Vec<IpNet>> {
        let routes = self.host.route_dump().await?;
        Ok(routes
            .into_iter()
            .filter(|r| r.is_ours() && r.kind == RouteType::BlackHole)
            .map(|r| r.dst)
            .collect())
    }

    /// `ip -br link show` filtered to names starting with `prefix`: `(name, ifindex)` pairs.
    pub async fn list_host_links(&self, prefix: &str) -> Result<Vec<(String, u32)>> {
        let links = self.host.link_dump().await?;
        Ok(links
            .into_iter()
            .filter(|l| l.name.starts_with(prefix))
            .map(|l| (l.name, l.index))
            .collect())
    }

    /// `ip route show proto 76 scope link` limited to `/32` and `/128` routes through a device:
    /// the node's pod routes, with the device name.
    pub async fn list_pod_routes(&self) -> Result<Vec<(IpNet, String)>> {
        let routes = self.host.route_dump().await?;
        let mut pod_routes: Vec<_> = routes.into_iter().filter(|r| r.is_pod_route()).collect();
        if pod_routes.is_empty() {
            return Ok(Vec::new());
        }
        let names: std::collections::HashMap<u32, String> = self
            .host
            .link_dump()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        pod_routes.sort_by_key(|r| r.dst);
        Ok(pod_routes
            .into_iter()
            .filter_map(|r| Some((r.dst, names.get(&r.oif?)?.clone())))
            .collect())
    }

    /// The MTU of a node-side link (`ip link show dev <name>`); `None` if it does not exist.
    pub async fn link_mtu(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.host.link_get(name).await?.and_then(|l| l.mtu))
    }

    /// `sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1` in the netns of the
    /// calling thread (the daemon's), writing only values that differ.
    pub async fn ensure_ip_forwarding(&self) -> Result<()> {
        sysctl::ensure_ip_forwarding()
    }
}

/// The body of `setup_pod`, owning its inputs so it can run as its own task.
async fn setup(host: Netlink, rt: tokio::runtime::Handle, spec: PodSpec) -> Result<PodLinks> {
    let pod = create(&host, &rt, &spec).await?;
    match configure(&host, &pod, &spec).await {
        Ok(links) => Ok(links),
        Err(err) => {
            rollback(&host, &spec.host_ifname).await;
            Err(err)
        }
    }
}

/// Waits for a spawned setup task; the task runs to completion even if the caller goes away.
async fn join_setup<T>(task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    match task.await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Only a runtime shutdown cancels the task; a restarted daemon's DEL cleans up.
        Err(join) => Err(Error::Netlink {
            op: "setup pod".into(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

/// Creates the veth pair; returns a handle bound to the pod netns.
async fn create(host: &Netlink, rt: &tokio::runtime::Handle, spec: &PodSpec) -> Result<Netlink> {
    let ns = netns::open(&spec.netns)?;
    // Opened before the veth exists so that a failure here needs no rollback.
    let pod = netns::netlink_in_file(&ns, &spec.netns, rt)?;
    let what = format!(
        "create veth {}/{} in {}",
        spec.host_ifname,
        spec.container_ifname,
        spec.netns.display()
    );
    let msg = veth_msg(&spec.host_ifname, &spec.container_ifname, spec.mtu, ns.as_raw_fd());
    if let Err(err) = host.link_add(msg, &what).await {
        return Err(explain_create_failure(err, spec, host, &pod).await);
    }
    Ok(pod)
}

/// Step 2 (node side) and step 3 (pod side), concurrently: they touch different netns and
/// neither needs the other's results.
async fn configure(host: &Netlink, pod: &Netlink, spec: &PodSpec) -> Result<PodLinks> {
    let prepared = prepare(host, pod, spec).await?;
    address(host, pod, spec, &prepared).await?;
    Ok(prepared)
}

/// Everything that does not need the pod's address: both ends up, proxy ARP,
/// the pod's gateway and default routes and the gateway neighbour. Runs while
/// IPAM persists the address.
async fn prepare(host: &Netlink, pod: &Netlink, spec: &PodSpec) -> Result<PodLinks> {
    let (host_link, pod_link) = futures::try_join!(prepare_host(host, spec), prepare_pod(pod, spec))?;
    let host_mac = host_link.mac.clone().unwrap_or_default();
    pod.neigh_replace_permanent(pod_link.index, &pod_link.name, POD_GATEWAY_V4.into(), &host_mac)
        .await?;
    Ok(PodLinks {
        host_mac,
        container_mac: pod_link.mac.unwrap_or_default(),
        container_ifindex: pod_link.index,
        host_ifindex: host_link.index,
    })
}

async fn prepare_host(host: &Netlink, spec: &PodSpec) -> Result<Link> {
    let link = existing(host, &spec.host_ifname).await?;
    sysctl::enable_proxy_arp(&link.name)?;
    sysctl::disable_proxy_delay(&link.name)?;
    Ok(link)
}

async fn prepare_pod(pod: &Netlink, spec: &PodSpec) -> Result<Link> {
    let link = existing(pod, &spec.container_ifname).await?;
    // Up first: the kernel refuses routes through a device that is down.
    let (up, lo) = futures::join!(
        pod.link_set_up(link.index, &link.name),
        pod.link_set_up(LOOPBACK_IFINDEX, "lo")
    );
    up?;
    lo?;
    // Plain `add` like Calico: a route already there means someone else configured this pod.
    let gateway = IpNet::V4(Ipv4Net::from(POD_GATEWAY_V4));
    let what = format!("{gateway} dev {} scope link proto 76", link.name);
    pod.route_add(link_route_msg(gateway, link.index), &what).await?;
    let what = format!("default via {POD_GATEWAY_V4} dev {} proto 76", link.name);
    pod.route_add(default_via_msg(POD_GATEWAY_V4, link.index), &what)
        .await?;
    Ok(link)
}

/// What needs the address: on the pod interface, and the node's /32 route to it.
async fn address(host: &Netlink, pod: &Netlink, spec: &PodSpec, links: &PodLinks) -> Result<()> {
    let on_pod = async {
        for addr in &spec.addresses {
            pod.addr_replace(links.container_ifindex, &spec.container_ifname, *addr)
                .await?;
        }
        Ok::<_, Error>(())
    };
    let on_host = async {
        for addr in &spec.addresses {
            let what = format!("{addr} dev {} scope link proto 76", spec.host_ifname);
            host.route_replace(link_route_msg(*addr, links.host_ifindex), &what)
                .await?;
        }
        Ok::<_, Error>(())
    };
    futures::try_join!(on_pod, on_host).map(drop)
}

async fn existing(nl: &Netlink, name: &str) -> Result<Link> {
    nl.link_get(name).await?.ok_or_else(|| Error::Netlink {
        op: format!("get link {name}{}", nl.where_()),
        source: std::io::Error::from_raw_os_error(Errno::ENODEV as i32),
    })
}

/// Turns the kernel's bare `EEXIST` into which name is taken, when it is the pod's.
async fn explain_create_failure(err: Error, spec: &PodSpec, host: &Netlink, pod: &Netlink) -> Error {
    // The kernel checks the host name first, so a taken host name keeps the plain EEXIST.
    if err.errno() != Some(Errno::EEXIST as i32) || !matches!(host.link_get(&spec.host_ifname).await, Ok(None)) {
        return err;
    }
    match pod.link_get(&spec.container_ifname).await {
        Ok(Some(_)) => Error::PodIfnameTaken {
            host_ifname: spec.host_ifname.clone(),
            ifname: spec.container_ifname.clone(),
            netns: spec.netns.clone(),
        },
        _ => err,
    }
}

/// Deletes the veth this setup created. Failures are logged, not returned: the caller reports
/// the error that caused the rollback, and a later DEL retries the cleanup.
async fn rollback(host: &Netlink, host_ifname: &str) {
    let deleted = match host.link_get(host_ifname).await {
        Ok(Some(link)) => host.link_del(link.index, &link.name).await.map(drop),
        Ok(None) => Ok(()),
        Err(err) => Err(err),
    };
    if let Err(err) = deleted {
        tracing::warn!(error = %err, host_ifname, "rollback of failed pod setup");
    }
}

impl Dataplane {
    /// The first IPv4 address of `name`, with its prefix (`ip -4 addr show dev <name>`);
    /// `None` when the link is missing or has none. Calico's `interface=ens2` autodetection.
    pub async fn interface_ipv4(&self, name: &str) -> Result<Option<ipnet::Ipv4Net>> {
        let Some(link) = self.host.link_get(name).await? else {
            return Ok(None);
        };
        Ok(self
            .host
            .addr_list(link.index, name)
            .await?
            .into_iter()
            .find_map(|a| match a {
                IpNet::V4(v4) => Some(v4),
                IpNet::V6(_) => None,
            }))
    }

    /// Every route Lanes owns in the main table (`ip route show proto 76`), with device names.
    pub async fn our_routes(&self) -> Result<Vec<(super::route::Route, Option<String>)>> {
        let links: std::collections::HashMap<u32, String> = self
            .host
            .link_dump()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        Ok(self
            .host
            .route_dump()
            .await?
            .into_iter()
            .filter(|r| r.is_ours())
            .map(|r| {
                let dev = r.oif.and_then(|i| links.get(&i).cloned());
                (r, dev)
            })
            .collect())
    }
}
