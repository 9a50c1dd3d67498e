//! [`Dataplane`]: wiring pods to the node (veth, proxy ARP, `/32` routes) and the node-level
//! routes Lanes owns (blackholes).

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use nix::errno::Errno;
use rtnetlink::packet_route::route::RouteType;

use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::addr::address_msg;
use super::batch::{self, Request, SyncNetlink};
use super::link::{link_up_msg, veth_msg, Link};
use super::neigh::{parse_mac, permanent_neigh_msg};
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
    /// Pod setups in flight: the reaper waits for a quiet moment.
    pub(crate) activity: std::sync::Arc<super::teardown::Activity>,
}

impl Dataplane {
    /// Opens the node-side rtnetlink connection in the current thread's netns and spawns it on
    /// the current runtime.
    pub async fn new() -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let host = Netlink::open_here(&rt)?;
        let activity = super::teardown::Activity::new();
        let reaper = super::teardown::spawn_reaper(host.clone(), activity.clone(), &rt);
        Ok(Dataplane {
            host,
            rt,
            reaper,
            activity,
        })
    }

    /// Wires one pod interface, or leaves nothing behind.
    ///
    /// Equivalent to:
    /// ```text
    /// ip link add <host> mtu M up type veth peer name <if> mtu M netns <netns>
    /// sysctl -w net.ipv4.conf.<host>.proxy_arp=1 net.ipv4.neigh.<host>.proxy_delay=0
    /// ip -n <netns> link set <if> up; ip -n <netns> link set lo up
    /// ip -n <netns> route add 169.254.1.1/32 dev <if> scope link proto 76
    /// ip -n <netns> route add default via 169.254.1.1 dev <if> proto 76
    /// ip -n <netns> neigh replace 169.254.1.1 lladdr <host mac> dev <if> nud permanent
    /// ip -n <netns> addr replace <addr>/32 dev <if>                    # per address
    /// ip route replace <addr>/32 dev <host> scope link proto 76        # per address
    /// ```
    /// If any step after the veth creation fails, the veth is deleted (taking its routes and
    /// the pod end with it). An existing `<if>` in the pod is [`Error::PodIfnameTaken`]; an
    /// existing `<host>` fails with `EEXIST` and is left alone, since this call did not make it.
    ///
    /// The work runs to its end (setup or rollback) even if the returned future is dropped.
    pub async fn setup_pod(&self, spec: &PodSpec) -> Result<PodLinks> {
        spec.validate()?;
        let spec = spec.clone();
        self.pod_job(move || {
            let wiring = create(&spec)?;
            configure(&spec, wiring)
        })
        .await
    }

    /// The first half of [`Dataplane::setup_pod`]: the veth pair and everything that needs no
    /// address (links up, proxy ARP, the pod's gateway and default routes, the gateway
    /// neighbour), so it runs while IPAM persists the address. Follow with
    /// [`Dataplane::configure_pod`], or [`Dataplane::remove_pod_link`].
    pub async fn create_pod_link(&self, spec: &PodSpec) -> Result<PodWiring> {
        spec.validate_link()?;
        let spec = spec.clone();
        self.pod_job(move || create(&spec)).await
    }

    /// The second half: the pod's address and the node's /32 route to it, on links made by
    /// [`Dataplane::create_pod_link`]. On failure the veth is deleted.
    pub async fn configure_pod(&self, spec: &PodSpec, wiring: PodWiring) -> Result<PodLinks> {
        let spec = spec.clone();
        self.pod_job(move || configure(&spec, wiring)).await
    }

    /// A pod setup step on the blocking pool, counted as activity so the reaper waits for it.
    async fn pod_job<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let busy = self.activity.begin();
        batch::blocking(move || {
            let _busy = busy;
            f()
        })
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

/// Links made by [`Dataplane::create_pod_link`], with the two sockets (node and pod netns)
/// that [`Dataplane::configure_pod`] goes on with.
#[derive(Debug)]
pub struct PodWiring {
    pub links: PodLinks,
    host: SyncNetlink,
    pod: SyncNetlink,
}

/// Creates the veth pair and prepares both ends; on failure nothing is left.
fn create(spec: &PodSpec) -> Result<PodWiring> {
    let ns = netns::open(&spec.netns)?;
    // Opened before the veth exists so that a failure here needs no rollback.
    let mut pod = SyncNetlink::open_in(&ns, &spec.netns)?;
    let mut host = SyncNetlink::open()?;
    let what = format!(
        "create veth {}/{} in {}",
        spec.host_ifname,
        spec.container_ifname,
        spec.netns.display()
    );
    let msg = veth_msg(&spec.host_ifname, &spec.container_ifname, spec.mtu, ns.as_raw_fd());
    let echoed = match host.create_link(msg, what) {
        Ok(echoed) => echoed,
        Err(err) => return Err(explain_create_failure(err, spec, &mut host, &mut pod)),
    };
    match prepare(&mut host, &mut pod, spec, echoed) {
        Ok(links) => Ok(PodWiring { links, host, pod }),
        Err(err) => {
            rollback_sync(&mut host, &spec.host_ifname);
            Err(err)
        }
    }
}

/// Everything that does not need the pod's address: proxy ARP on the node end; in the pod
/// both links up, the gateway and default routes and the gateway neighbour, in one batch.
fn prepare(host: &mut SyncNetlink, pod: &mut SyncNetlink, spec: &PodSpec, echoed: Option<Link>) -> Result<PodLinks> {
    let host_link = match echoed {
        Some(link) => link,
        None => existing(host, &spec.host_ifname)?,
    };
    let pod_link = existing(pod, &spec.container_ifname)?;
    sysctl::enable_proxy_arp(&host_link.name)?;
    sysctl::disable_proxy_delay(&host_link.name)?;
    let host_mac = host_link.mac.clone().unwrap_or_default();
    let lladdr =
        parse_mac(&host_mac).ok_or_else(|| Error::Invalid(format!("mac {host_mac:?} of {}", host_link.name)))?;
    let (index, name) = (pod_link.index, &pod_link.name);
    let gateway = IpNet::V4(Ipv4Net::from(POD_GATEWAY_V4));
    // In order: the kernel refuses routes through a device that is down. Plain `add` for the
    // routes like Calico: a route already there means someone else configured this pod.
    pod.run(vec![
        Request::change(
            RouteNetlinkMessage::NewLink(link_up_msg(index)),
            format!("set link {name} up"),
        ),
        Request::change(
            RouteNetlinkMessage::NewLink(link_up_msg(LOOPBACK_IFINDEX)),
            "set link lo up",
        ),
        Request::create(
            RouteNetlinkMessage::NewRoute(link_route_msg(gateway, index)),
            format!("add route {gateway} dev {name} scope link proto 76"),
        ),
        Request::create(
            RouteNetlinkMessage::NewRoute(default_via_msg(POD_GATEWAY_V4, index)),
            format!("add route default via {POD_GATEWAY_V4} dev {name} proto 76"),
        ),
        Request::replace(
            RouteNetlinkMessage::NewNeighbour(permanent_neigh_msg(index, POD_GATEWAY_V4.into(), lladdr)),
            format!("neigh replace {POD_GATEWAY_V4} lladdr {host_mac} dev {name}"),
        ),
    ])?;
    Ok(PodLinks {
        host_mac,
        container_mac: pod_link.mac.unwrap_or_default(),
        container_ifindex: pod_link.index,
        host_ifindex: host_link.index,
    })
}

/// What needs the address: on the pod interface, then the node's /32 route to it. On failure
/// the veth is deleted.
fn configure(spec: &PodSpec, mut wiring: PodWiring) -> Result<PodLinks> {
    let links = &wiring.links;
    let on_pod = spec
        .addresses
        .iter()
        .map(|addr| {
            Request::replace(
                RouteNetlinkMessage::NewAddress(address_msg(links.container_ifindex, *addr)),
                format!("add address {addr} dev {}", spec.container_ifname),
            )
        })
        .collect();
    let on_host = spec
        .addresses
        .iter()
        .map(|addr| {
            Request::replace(
                RouteNetlinkMessage::NewRoute(link_route_msg(*addr, links.host_ifindex)),
                format!("replace route {addr} dev {} scope link proto 76", spec.host_ifname),
            )
        })
        .collect();
    let done = spec
        .validate()
        .and_then(|()| wiring.pod.run(on_pod))
        .and_then(|()| wiring.host.run(on_host));
    match done {
        Ok(()) => Ok(wiring.links),
        Err(err) => {
            rollback_sync(&mut wiring.host, &spec.host_ifname);
            Err(err)
        }
    }
}

fn existing(nl: &mut SyncNetlink, name: &str) -> Result<Link> {
    nl.link_get(name)?.ok_or_else(|| Error::Netlink {
        op: format!("get link {name}{}", nl.where_()),
        source: std::io::Error::from_raw_os_error(Errno::ENODEV as i32),
    })
}

/// Turns the kernel's bare `EEXIST` into which name is taken, when it is the pod's.
fn explain_create_failure(err: Error, spec: &PodSpec, host: &mut SyncNetlink, pod: &mut SyncNetlink) -> Error {
    // The kernel checks the host name first, so a taken host name keeps the plain EEXIST.
    if err.errno() != Some(Errno::EEXIST as i32) || !matches!(host.link_get(&spec.host_ifname), Ok(None)) {
        return err;
    }
    match pod.link_get(&spec.container_ifname) {
        Ok(Some(_)) => Error::PodIfnameTaken {
            host_ifname: spec.host_ifname.clone(),
            ifname: spec.container_ifname.clone(),
            netns: spec.netns.clone(),
        },
        _ => err,
    }
}

/// [`rollback`] on the pod setup's own socket (`ip link del <host>`).
fn rollback_sync(host: &mut SyncNetlink, host_ifname: &str) {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(host_ifname.to_string()));
    let deleted = host.run(vec![Request::change(
        RouteNetlinkMessage::DelLink(msg),
        format!("delete link {host_ifname}"),
    )]);
    match deleted {
        Err(err) if err.errno() != Some(Errno::ENODEV as i32) => {
            tracing::warn!(error = %err, host_ifname, "rollback of failed pod setup");
        }
        _ => {}
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
