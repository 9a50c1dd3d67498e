//! Secondary (OVN) interfaces in a pod: a veth whose host end OVS takes into
//! `br-int`, the pod end named as the selection asks (`eth1`, `net1`) with
//! the MAC, address and MTU OVN expects, per-interface source routing so a
//! reply leaves by the interface its request came in on, and — when the
//! selection says `default-route` — the pod's default route moved onto it
//! while the cluster and service CIDRs stay pinned on eth0.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::{LinkUnspec, LinkVeth};

use super::link::Link;
use super::route::{default_via_msg, link_route_msg};
use super::{netns, validate_ifname, Dataplane, Error, Netlink, Result, POD_GATEWAY_V4};

/// Routing table for eth0's source rule (`from <eth0 ip> lookup 1000`).
pub const PRIMARY_TABLE: u32 = 1000;
/// Priority of the per-interface source rules (before `main` at 32766).
pub const SOURCE_RULE_PRIORITY: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondarySpec {
    pub netns: PathBuf,
    /// In the pod: `eth1`, `net1`, …
    pub ifname: String,
    /// On the node, joins br-int.
    pub host_ifname: String,
    pub mac: [u8; 6],
    /// With the subnet's prefix (`10.144.0.5/16`).
    pub addresses: Vec<IpNet>,
    pub mtu: u32,
    pub gateway: Option<Ipv4Addr>,
    /// Move the pod's default route here.
    pub default_route: bool,
    /// This interface's source-routing table (one per interface).
    pub table: u32,
    /// The primary interface and address, for its own source rule.
    pub primary_ifname: String,
    pub primary_address: Option<Ipv4Addr>,
    /// Pool and service CIDRs kept on eth0 when the default moves.
    pub primary_routes: Vec<IpNet>,
}

impl Dataplane {
    /// Wires one secondary interface; on failure deletes the veth it made.
    ///
    /// ```text
    /// ip link add <host> mtu M up type veth peer name <if> mtu M address <mac> netns <netns>
    /// ip -n <netns> addr add <ip>/<plen> dev <if>; ip -n <netns> link set <if> up
    /// ip netns exec <netns> ethtool -K <if> tx off        # OVS userspace datapath, see below
    /// ip -n <netns> route add <subnet> dev <if> table T; … default via <gw> dev <if> table T
    /// ip -n <netns> rule add from <ip> lookup T priority 100
    /// ip -n <netns> rule add from <eth0 ip> lookup 1000 priority 100   # + eth0's routes in 1000
    /// # default-route:
    /// ip -n <netns> route del default; … add default via <gw> dev <if>
    /// ip -n <netns> route add <pool/service cidr> via 169.254.1.1 dev eth0   # each
    /// ```
    pub async fn setup_secondary(&self, spec: &SecondarySpec) -> Result<()> {
        validate_ifname("host interface name", &spec.host_ifname)?;
        validate_ifname("pod interface name", &spec.ifname)?;
        let ns = netns::open(&spec.netns)?;
        let pod = netns::netlink_in_file(&ns, &spec.netns, &self.rt)?;
        let peer = LinkUnspec::new_with_name(&spec.ifname)
            .mtu(spec.mtu)
            .address(spec.mac.to_vec())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(&spec.host_ifname, &spec.ifname)
            .mtu(spec.mtu)
            .up()
            .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
                rtnetlink::packet_route::link::InfoVeth::Peer(peer),
            ))
            .build();
        let what = format!(
            "create veth {}/{} in {}",
            spec.host_ifname,
            spec.ifname,
            spec.netns.display()
        );
        self.host.link_add(msg, &what).await?;
        drop(ns);
        if let Err(e) = configure(&pod, spec).await {
            if let Ok(Some(link)) = self.host.link_get(&spec.host_ifname).await {
                let _ = self.host.link_del(link.index, &link.name).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// `ip link del <host>`; the pod end, its routes and its rule targets go with it.
    pub async fn teardown_secondary(&self, host_ifname: &str) -> Result<()> {
        validate_ifname("host interface name", host_ifname)?;
        match self.host.link_get(host_ifname).await? {
            Some(link) if link.is_veth => self.host.link_del(link.index, &link.name).await.map(drop),
            Some(_) => Err(Error::Invalid(format!(
                "{host_ifname}: not a veth, refusing to delete it"
            ))),
            None => Ok(()),
        }
    }
}

async fn configure(pod: &Netlink, spec: &SecondarySpec) -> Result<()> {
    let link = pod_link(pod, &spec.ifname).await?;
    for a in &spec.addresses {
        pod.addr_replace(link.index, &link.name, *a).await?;
    }
    pod.link_set_up(link.index, &link.name).await?;
    // ethtool is a process and a netns switch: keep it off the async workers.
    let (netns, ifname) = (spec.netns.clone(), spec.ifname.clone());
    tokio::task::spawn_blocking(move || checksum_offload_off(&netns, &ifname))
        .await
        .map_err(|e| Error::Invalid(format!("ethtool task: {e}")))??;
    // This interface's own table, and the rule that sends its replies there.
    for a in &spec.addresses {
        let IpNet::V4(v4) = a else { continue };
        let subnet = IpNet::V4(v4.trunc());
        pod.route_replace(
            in_table(link_route_msg(subnet, link.index), spec.table),
            &format!("{subnet} dev {} table {}", link.name, spec.table),
        )
        .await?;
        if let Some(gw) = spec.gateway {
            pod.route_replace(
                in_table(default_via_msg(gw, link.index), spec.table),
                &format!("default via {gw} dev {} table {}", link.name, spec.table),
            )
            .await?;
        }
        source_rule(pod, v4.addr(), spec.table).await?;
    }
    // eth0 gets the same treatment, so its replies never follow a moved default.
    // (A Multus delegate call has no eth0 of ours: nothing to do for it.)
    if spec.primary_address.is_none() && !spec.default_route {
        return Ok(());
    }
    let primary = pod_link(pod, &spec.primary_ifname).await?;
    if let Some(ip) = spec.primary_address {
        let gw = IpNet::V4(Ipv4Net::from(POD_GATEWAY_V4));
        pod.route_replace(
            in_table(link_route_msg(gw, primary.index), PRIMARY_TABLE),
            "169.254.1.1 table 1000",
        )
        .await?;
        pod.route_replace(
            in_table(default_via_msg(POD_GATEWAY_V4, primary.index), PRIMARY_TABLE),
            "default table 1000",
        )
        .await?;
        source_rule(pod, ip, PRIMARY_TABLE).await?;
    }
    if spec.default_route {
        let gw = spec
            .gateway
            .ok_or_else(|| Error::Invalid(format!("default-route on {}: the network has no gateway", spec.ifname)))?;
        for cidr in &spec.primary_routes {
            let mut msg = link_route_msg(*cidr, primary.index);
            via(&mut msg, POD_GATEWAY_V4);
            pod.route_replace(msg, &format!("{cidr} via 169.254.1.1 dev {}", primary.name))
                .await?;
        }
        pod.route_del(
            default_via_msg(POD_GATEWAY_V4, primary.index),
            "default via 169.254.1.1 dev eth0",
        )
        .await?;
        pod.route_replace(
            default_via_msg(gw, link.index),
            &format!("default via {gw} dev {}", link.name),
        )
        .await?;
    }
    Ok(())
}

async fn pod_link(pod: &Netlink, name: &str) -> Result<Link> {
    pod.link_get(name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("interface {name} missing in the pod")))
}

/// `ip rule add from <ip>/32 lookup <table> priority 100` (replacing an identical one).
async fn source_rule(pod: &Netlink, ip: Ipv4Addr, table: u32) -> Result<()> {
    pod.handle
        .rule()
        .add()
        .v4()
        .source_prefix(ip, 32)
        .table_id(table)
        .priority(SOURCE_RULE_PRIORITY)
        // Without an explicit action the rule is FR_ACT_UNSPEC and every lookup through it
        // fails with EINVAL (`ping: connect: Invalid argument`).
        .action(rtnetlink::packet_route::rule::RuleAction::ToTable)
        .replace()
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("rule from {ip} lookup {table}{}", pod.where_()), e))
}

/// Put a route into `table` (RTA_TABLE, as tables above 255 need).
fn in_table(mut msg: RouteMessage, table: u32) -> RouteMessage {
    msg.header.table = 252; // RT_TABLE_COMPAT: the real table is in RTA_TABLE
    msg.attributes.push(RouteAttribute::Table(table));
    msg
}

/// Turn a link route into `… via <gw>` (scope universe, gateway on-link through 169.254.1.1).
fn via(msg: &mut RouteMessage, gw: Ipv4Addr) {
    msg.header.scope = rtnetlink::packet_route::route::RouteScope::Universe;
    msg.attributes.push(RouteAttribute::Gateway(IpAddr::V4(gw).into()));
}

/// OVS's userspace datapath forwards frames as the kernel handed them; a
/// veth with TX checksum offload hands TCP/UDP with partial checksums that
/// the receiver then drops (notes/ovn-lab.md P1). No netlink crate sets
/// ethtool features, so this runs `ethtool -K <if> tx off` inside the pod.
fn checksum_offload_off(netns: &std::path::Path, ifname: &str) -> Result<()> {
    let ifname = ifname.to_string();
    let status = netns::run_in_new_thread(netns, move || {
        std::process::Command::new("ethtool")
            .args(["-K", &ifname, "tx", "off"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    })?;
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Error::Invalid(format!("ethtool -K tx off: exit {s}"))),
        Err(e) => Err(Error::Invalid(format!("ethtool -K tx off: {e}"))),
    }
}
