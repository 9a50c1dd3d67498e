//! The IPIP device, Calico's `tunl0` under a name of our own:
//!
//! ```text
//! ip link add ipip.lanes mtu <mtu> type ipip local <node_ip> pmtudisc
//! ip addr replace <tunnel_ip>/32 dev ipip.lanes      # when IPAM gave the node one
//! ip link set ipip.lanes up
//! ```
//!
//! Without a remote the device takes IPIP packets from any node to `local`, and sends to the
//! gateway of each route through it: `<block> via <node_ip> dev ipip.lanes onlink proto 76`
//! (see [`super::encap`] and [`Dataplane::sync_encap`]). This needs the kernel's `ipip` module
//! (`CONFIG_NET_IPIP`); without it creation fails with `EOPNOTSUPP` ("Unknown device type").

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkIpIp, LinkUnspec};

use super::encap::IPIP_DEVICE;
use super::{validate_ifname, Dataplane, Error, Result};

/// This node's IPIP device, as [`Dataplane::ensure_ipip`] makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipDevice {
    pub name: String,
    /// The node's underlay address: the outer source, and where other nodes' routes point.
    pub local: Ipv4Addr,
    pub mtu: u32,
    /// This node's IPIP tunnel address (IPAM's), put on the device as a `/32`.
    pub tunnel_ip: Option<Ipv4Addr>,
}

impl IpipDevice {
    /// `ipip.lanes` with the given underlay address, MTU and tunnel address.
    pub fn new(local: Ipv4Addr, tunnel_ip: Option<Ipv4Addr>, mtu: u32) -> Self {
        IpipDevice {
            name: IPIP_DEVICE.into(),
            local,
            mtu,
            tunnel_ip,
        }
    }
}

/// `ip link add <name> mtu <mtu> type ipip local <local> pmtudisc`, created down.
pub fn ipip_msg(dev: &IpipDevice) -> LinkMessage {
    LinkIpIp::new(&dev.name)
        .local(dev.local)
        .pmtudisc(true)
        .mtu(dev.mtu)
        .build()
}

/// The parts of an existing link that [`Dataplane::ensure_ipip`] compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IpipLink {
    index: u32,
    is_ipip: bool,
    local: Option<Ipv4Addr>,
    remote: Option<Ipv4Addr>,
    mtu: Option<u32>,
    up: bool,
}

impl IpipLink {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = IpipLink {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            ..Default::default()
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
                LinkAttribute::LinkInfo(infos) => infos.iter().for_each(|info| link.apply(info)),
                _ => {}
            }
        }
        link
    }

    fn apply(&mut self, info: &LinkInfo) {
        match info {
            LinkInfo::Kind(kind) => self.is_ipip = *kind == InfoKind::IpIp,
            LinkInfo::Data(InfoData::IpTunnel(data)) => {
                for item in data {
                    match item {
                        InfoIpTunnel::Local(IpAddr::V4(ip)) => self.local = Some(*ip),
                        InfoIpTunnel::Remote(IpAddr::V4(ip)) => self.remote = Some(*ip),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// Kind and endpoints are changed by recreating, as for VXLAN. A remote of 0.0.0.0 is how
    /// the kernel reports "any".
    fn must_recreate(&self, want: &IpipDevice) -> bool {
        !self.is_ipip || self.local != Some(want.local) || self.remote.is_some_and(|r| !r.is_unspecified())
    }
}

impl Dataplane {
    /// Creates or updates this node's IPIP device (see the module docs for the commands) and
    /// returns whether anything changed. Kind or endpoint differences recreate it; MTU, up
    /// state and the tunnel address are fixed in place. With no `tunnel_ip`, IPv4 addresses on
    /// the device are left alone.
    pub async fn ensure_ipip(&self, dev: &IpipDevice) -> Result<bool> {
        validate_ifname("IPIP device name", &dev.name)?;
        let mut changed = false;
        let existing = self
            .host
            .link_message(&dev.name)
            .await?
            .map(|m| IpipLink::from_message(&m));
        let link = match existing {
            Some(link) if !link.must_recreate(dev) => link,
            stale => {
                let what = format!(
                    "add link {} type ipip local {}{}",
                    dev.name,
                    dev.local,
                    self.host.where_()
                );
                changed = true;
                let created = self
                    .host
                    .link_recreate(stale.map(|old| old.index), &dev.name, ipip_msg(dev), &what)
                    .await?;
                IpipLink::from_message(&created)
            }
        };
        if let Some(ip) = dev.tunnel_ip {
            changed |= self
                .host
                .addr_set_exactly(link.index, &dev.name, IpNet::V4(ip.into()))
                .await?;
        }
        if link.mtu != Some(dev.mtu) || !link.up {
            let msg = LinkUnspec::new_with_index(link.index).mtu(dev.mtu).up().build();
            let op = format!("set link {} mtu {} up{}", dev.name, dev.mtu, self.host.where_());
            self.host.link_set_msg(msg, op).await?;
            changed = true;
        }
        Ok(changed)
    }
}

/// Whether `err` is the kernel saying it has no such link type (module missing).
pub fn is_unsupported_link_kind(err: &Error) -> bool {
    err.errno() == Some(Errno::EOPNOTSUPP as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> IpipDevice {
        IpipDevice::new(Ipv4Addr::new(192, 168, 0, 11), Some(Ipv4Addr::new(10, 244, 1, 0)), 1480)
    }

    #[test]
    fn ipip_msg_carries_kind_local_pmtudisc_and_mtu() {
        let msg = ipip_msg(&dev());
        assert!(!msg.header.flags.contains(LinkFlags::Up), "created down");
        assert!(msg.attributes.contains(&LinkAttribute::IfName("ipip.lanes".into())));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1480)));
        let infos = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos.clone()),
                _ => None,
            })
            .expect("IFLA_LINKINFO");
        assert!(infos.contains(&LinkInfo::Kind(InfoKind::IpIp)), "{infos:?}");
        let data = infos
            .iter()
            .find_map(|i| match i {
                LinkInfo::Data(InfoData::IpTunnel(data)) => Some(data.clone()),
                _ => None,
            })
            .expect("IFLA_INFO_DATA");
        assert_eq!(
            data,
            [
                InfoIpTunnel::Local(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 11))),
                InfoIpTunnel::PMtuDisc(true)
            ],
            "no remote: the device takes packets from every node"
        );
    }

    #[test]
    fn ipip_msg_encodes_and_decodes_as_the_kernel_would_see_it() {
        use rtnetlink::packet_core::{Emitable, Parseable};
        let msg = ipip_msg(&dev());
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let parsed = LinkMessage::parse(buf.as_slice()).expect("parse");
        assert_eq!(parsed, msg);
        let link = IpipLink::from_message(&parsed);
        assert!(link.is_ipip && !link.must_recreate(&dev()), "{link:?}");
        assert_eq!(link.mtu, Some(1480));
        let moved = IpipDevice {
            local: Ipv4Addr::new(192, 168, 0, 99),
            ..dev()
        };
        assert!(link.must_recreate(&moved));
        let with_remote = IpipLink {
            remote: Some(Ipv4Addr::new(192, 168, 2, 12)),
            ..link.clone()
        };
        assert!(with_remote.must_recreate(&dev()));
        let any_remote = IpipLink {
            remote: Some(Ipv4Addr::UNSPECIFIED),
            ..link
        };
        assert!(!any_remote.must_recreate(&dev()));
    }
}
