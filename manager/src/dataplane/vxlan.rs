//! This node's VXLAN device, Calico's `vxlan.calico` under our name:
//!
//! ```text
//! ip link add vxlan.lanes mtu <mtu> address <mac> type vxlan id 4096 local <node_ip> \
//!     dstport 4789 nolearning
//! sysctl -w net.ipv6.conf.vxlan/lanes.disable_ipv6=1
//! ip addr replace <vtep_ip>/32 dev vxlan.lanes; ip link set vxlan.lanes up
//! ```
//!
//! Its FDB and neighbour entries and the routes through it are kept by
//! [`Dataplane::sync_encap`] (`encap_sync`).

use std::io;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{LinkUnspec, LinkVxlan};

use super::encap::{vtep_mac, VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI};
use super::link::format_mac;
use super::{sysctl, validate_ifname, Dataplane, Error, Netlink, Result};

/// This node's VXLAN device, as [`Dataplane::ensure_vxlan`] makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// The node's underlay address: the outer source, and what other nodes' FDBs point at.
    pub local: Ipv4Addr,
    pub mtu: u32,
    /// This node's tunnel address (allocated by IPAM), put on the device as a `/32`.
    pub vtep_ip: Ipv4Addr,
    pub mac: [u8; 6],
}

impl VxlanDevice {
    /// Calico's defaults (`vxlan.lanes`, VNI 4096, port 4789) and the MAC from [`vtep_mac`].
    pub fn new(node: &str, local: Ipv4Addr, vtep_ip: Ipv4Addr, mtu: u32) -> Self {
        VxlanDevice {
            name: VXLAN_DEVICE.into(),
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            local,
            mtu,
            vtep_ip,
            mac: vtep_mac(node),
        }
    }
}

/// `ip link add <name> mtu <mtu> address <mac> type vxlan id <vni> local <local> dstport
/// <port> nolearning`, created down so IPv6 can be turned off before it sends anything.
pub fn vxlan_msg(dev: &VxlanDevice) -> LinkMessage {
    LinkVxlan::new(&dev.name, dev.vni)
        .local(dev.local)
        .port(dev.port)
        .learning(false)
        .mtu(dev.mtu)
        .address(dev.mac.to_vec())
        .build()
}

/// The parts of an existing link that [`Dataplane::ensure_vxlan`] compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VxlanLink {
    pub(crate) index: u32,
    pub(crate) is_vxlan: bool,
    vni: Option<u32>,
    port: Option<u16>,
    local: Option<Ipv4Addr>,
    learning: Option<bool>,
    mac: Option<Vec<u8>>,
    mtu: Option<u32>,
    up: bool,
}

impl VxlanLink {
    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let mut link = VxlanLink {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            ..Default::default()
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Address(mac) => link.mac = Some(mac.clone()),
                LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.is_vxlan = *kind == InfoKind::Vxlan,
                            LinkInfo::Data(InfoData::Vxlan(data)) => link.apply(data),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    fn apply(&mut self, data: &[InfoVxlan]) {
        for item in data {
            match item {
                InfoVxlan::Id(vni) => self.vni = Some(*vni),
                InfoVxlan::Port(port) => self.port = Some(*port),
                InfoVxlan::Local(ip) => self.local = Some(*ip),
                InfoVxlan::Learning(on) => self.learning = Some(*on),
                _ => {}
            }
        }
    }

    /// Kind, VNI, port, local address and learning cannot (all) be changed in place.
    fn must_recreate(&self, want: &VxlanDevice) -> bool {
        !self.is_vxlan
            || self.vni != Some(want.vni)
            || self.port != Some(want.port)
            || self.local != Some(want.local)
            || self.learning != Some(false)
    }
}

impl Dataplane {
    /// Creates or updates this node's VXLAN device (see the module docs for the commands).
    ///
    /// A device of another kind, VNI, port, local address or with learning on is deleted and
    /// recreated (the kernel cannot change those in place, as Felix also finds); MAC, MTU,
    /// up state and addresses are fixed in place. IPv6 is disabled on it (an IPv4 VTEP has no
    /// use for link-local traffic). Returns whether anything changed.
    pub async fn ensure_vxlan(&self, dev: &VxlanDevice) -> Result<bool> {
        validate_ifname("VXLAN device name", &dev.name)?;
        let mut changed = false;
        let existing = self
            .host
            .link_message(&dev.name)
            .await?
            .map(|m| VxlanLink::from_message(&m));
        let link = match existing {
            Some(link) if !link.must_recreate(dev) => link,
            stale => {
                let what = format!(
                    "add link {} type vxlan id {} local {} dstport {} nolearning{}",
                    dev.name,
                    dev.vni,
                    dev.local,
                    dev.port,
                    self.host.where_()
                );
                changed = true;
                let created = self
                    .host
                    .link_recreate(stale.map(|old| old.index), &dev.name, vxlan_msg(dev), &what)
                    .await?;
                VxlanLink::from_message(&created)
            }
        };
        match sysctl::ensure(&format!("net/ipv6/conf/{}/disable_ipv6", dev.name), "1") {
            Err(Error::Sysctl { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => changed |= other?,
        }
        changed |= self
            .host
            .addr_set_exactly(link.index, &dev.name, IpNet::V4(dev.vtep_ip.into()))
            .await?;
        if link.mac.as_deref() != Some(&dev.mac[..]) || link.mtu != Some(dev.mtu) || !link.up {
            let msg = LinkUnspec::new_with_index(link.index)
                .address(dev.mac.to_vec())
                .mtu(dev.mtu)
                .up()
                .build();
            let op = format!(
                "set link {} address {} mtu {} up{}",
                dev.name,
                format_mac(&dev.mac),
                dev.mtu,
                self.host.where_()
            );
            self.host.link_set_msg(msg, op).await?;
            changed = true;
        }
        Ok(changed)
    }

    /// `ip link del <name>` (e.g. no VXLAN pool is left); the kernel drops its routes, FDB and
    /// neighbours with it. `Ok(false)` if there was none.
    pub async fn remove_tunnel(&self, name: &str) -> Result<bool> {
        validate_ifname("tunnel device name", name)?;
        match self.host.link_get(name).await? {
            Some(link) => self.host.link_del(link.index, name).await,
            None => Ok(false),
        }
    }
}

impl Netlink {
    /// `ip link show dev <name>` as the raw message, for kind-specific attributes.
    pub(crate) async fn link_message(&self, name: &str) -> Result<Option<LinkMessage>> {
        let reply = self.handle.link().get().match_name(name).execute().try_next().await;
        match reply {
            Ok(msg) => Ok(msg),
            Err(e) => match Error::netlink(format!("get link {name}{}", self.where_()), e) {
                err if err.errno() == Some(Errno::ENODEV as i32) => Ok(None),
                err => Err(err),
            },
        }
    }

    /// Replace a tunnel device the kernel cannot change in place: `ip link del` the stale one
    /// (by index, if any), `ip link add` from `msg`, and return the new link as the kernel
    /// reports it.
    pub(crate) async fn link_recreate(
        &self,
        stale: Option<u32>,
        name: &str,
        msg: LinkMessage,
        what: &str,
    ) -> Result<LinkMessage> {
        if let Some(index) = stale {
            self.link_del(index, name).await?;
        }
        self.link_add(msg, what).await?;
        self.link_message(name).await?.ok_or_else(|| Error::Netlink {
            op: format!("get link {name}"),
            source: io::Error::from_raw_os_error(Errno::ENODEV as i32),
        })
    }

    /// `ip link set ...` for a prebuilt message (`RTM_NEWLINK` without `NLM_F_CREATE`).
    pub(crate) async fn link_set_msg(&self, msg: LinkMessage, op: String) -> Result<()> {
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// `ip addr replace <net> dev <name>` plus `ip addr del` of every other address of the same
    /// family on it. Returns whether anything changed.
    pub(crate) async fn addr_set_exactly(&self, index: u32, name: &str, net: IpNet) -> Result<bool> {
        let msgs: Vec<AddressMessage> = self
            .dump(
                || format!("list addresses dev {name}{}", self.where_()),
                |h| h.address().get().set_link_index_filter(index).execute(),
            )
            .await?;
        let mut present = false;
        let mut changed = false;
        for msg in msgs {
            let Some(addr) = super::addr::address_of(&msg) else {
                continue;
            };
            if addr == net {
                present = true;
            } else if addr.addr().is_ipv4() == net.addr().is_ipv4() {
                let op = format!("delete address {addr} dev {name}{}", self.where_());
                self.handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(|e| Error::netlink(op, e))?;
                changed = true;
            }
        }
        if !present {
            self.addr_replace(index, name, net).await?;
            changed = true;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_msg_has_the_calico_attributes() {
        let dev = VxlanDevice::new(
            "node1",
            Ipv4Addr::new(192, 168, 0, 11),
            Ipv4Addr::new(10, 244, 1, 0),
            1450,
        );
        let msg = vxlan_msg(&dev);
        assert!(!msg.header.flags.contains(LinkFlags::Up), "created down");
        let link = VxlanLink::from_message(&msg);
        assert!(link.is_vxlan && !link.must_recreate(&dev), "{link:?}");
        assert_eq!(link.mac.as_deref(), Some(&vtep_mac("node1")[..]));
        assert_eq!((link.vni, link.port, link.mtu), (Some(4096), Some(4789), Some(1450)));
        assert!(msg.attributes.contains(&LinkAttribute::IfName("vxlan.lanes".into())));
        for changed in [
            VxlanDevice { vni: 1, ..dev.clone() },
            VxlanDevice {
                port: 8472,
                ..dev.clone()
            },
            VxlanDevice {
                local: Ipv4Addr::new(192, 168, 0, 99),
                ..dev.clone()
            },
        ] {
            assert!(link.must_recreate(&changed), "{changed:?}");
        }
    }

    #[test]
    fn ensure_vxlan_fixes_drift_in_place_and_recreates_what_cannot_change() {
        use crate::dataplane::tests::support::{in_netns, privileged, TestNetns};
        if !privileged(
            "ensure_vxlan_fixes_drift_in_place_and_recreates_what_cannot_change",
            false,
        ) {
            return;
        }
        let node = TestNetns::node();
        let link = |node: &TestNetns| node.ip_json(&["-d", "addr", "show", "dev", VXLAN_DEVICE])[0].clone();
        let dev = VxlanDevice::new("node1", Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 244, 1, 0), 1450);
        in_netns(&node, || async {
            let dp = Dataplane::new().await.unwrap();
            assert!(dp.ensure_vxlan(&dev).await.unwrap());
            let first = link(&node);
            assert_eq!(node.sysctl("net/ipv6/conf/vxlan.lanes/disable_ipv6"), "1");
            // Drift that can be fixed in place: MTU, state, a stray address.
            node.ip(&["link", "set", VXLAN_DEVICE, "down", "mtu", "1400"]);
            node.ip(&["addr", "add", "10.244.1.9/32", "dev", VXLAN_DEVICE]);
            assert!(dp.ensure_vxlan(&dev).await.unwrap());
            assert!(!dp.ensure_vxlan(&dev).await.unwrap());
            let fixed = link(&node);
            assert_eq!(fixed["ifindex"], first["ifindex"], "fixed in place");
            assert_eq!((&fixed["mtu"], &fixed["operstate"]), (&1450.into(), &"UNKNOWN".into()));
            let addrs: Vec<&str> = fixed["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["local"].as_str().unwrap())
                .collect();
            assert_eq!(addrs, ["10.244.1.0"]);
            // A new underlay address needs a new device.
            let moved = VxlanDevice {
                local: Ipv4Addr::new(10, 99, 0, 2),
                ..dev.clone()
            };
            assert!(dp.ensure_vxlan(&moved).await.unwrap());
            let recreated = link(&node);
            assert_ne!(recreated["ifindex"], first["ifindex"]);
            assert_eq!(recreated["linkinfo"]["info_data"]["local"], "10.99.0.2");
            assert!(dp.remove_tunnel(VXLAN_DEVICE).await.unwrap());
        });
    }
}
