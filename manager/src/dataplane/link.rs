//! Links: the veth message builder and the `ip link` wrapper methods.

use std::os::fd::RawFd;

use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{LinkUnspec, LinkVeth};

use super::{Error, Netlink, Result};

/// What Lanes needs to know about one link, decoded from an `RTM_NEWLINK` dump entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lowercase.
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`), regardless of carrier.
    pub up: bool,
    pub is_veth: bool,
    /// For a veth: the peer's ifindex (`IFLA_LINK`), in the peer's own netns.
    pub peer_index: Option<u32>,
}

impl Link {
    /// Decodes a kernel link message; `None` if it carries no name (never seen in practice).
    pub fn from_message(msg: &LinkMessage) -> Option<Link> {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            is_veth: false,
            peer_index: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(bytes) => link.mac = Some(format_mac(bytes)),
                LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
                LinkAttribute::Link(peer) => link.peer_index = Some(*peer),
                LinkAttribute::LinkInfo(infos) => {
                    link.is_veth = infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)))
                }
                _ => {}
            }
        }
        (!link.name.is_empty()).then_some(link)
    }
}

/// Formats a hardware address the way `ip link` prints it.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The single `RTM_NEWLINK` that creates a veth pair with the peer born inside another netns:
/// `ip link add <host> mtu <mtu> up type veth peer name <peer> mtu <mtu> netns <fd>`.
///
/// Creating the peer in place (`IFLA_NET_NS_FD` inside `VETH_INFO_PEER`, as netavark does) saves
/// a move and a rename, and makes the kernel check the peer name against the *pod's* interfaces:
/// an existing `eth0` there fails the whole request with `EEXIST`, leaving nothing behind.
///
/// The host end is created up, saving a round trip. The peer cannot be: the kernel applies the
/// peer's flags before the two ends are tied together, and opening an untied veth fails with
/// `ENOTCONN` (seen on 6.18), so the pod side sets its end up afterwards.
pub fn veth_msg(host: &str, peer: &str, mtu: u32, peer_netns: RawFd) -> LinkMessage {
    let peer_msg = LinkUnspec::new_with_name(peer).mtu(mtu).setns_by_fd(peer_netns).build();
    LinkVeth::new(host, peer)
        .mtu(mtu)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build()
}

/// `ip link set dev <index> up`.
pub fn link_up_msg(index: u32) -> LinkMessage {
    LinkUnspec::new_with_index(index).up().build()
}

impl Netlink {
    /// `ip link add ...` for a prebuilt message (see [`veth_msg`]); `what` names it in errors.
    pub async fn link_add(&self, msg: LinkMessage, what: &str) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(what.to_string(), e))
    }

    /// `ip link show dev <name>`; `Ok(None)` when there is no such link.
    pub async fn link_get(&self, name: &str) -> Result<Option<Link>> {
        let reply = self.handle.link().get().match_name(name).execute().try_next().await;
        match reply {
            Ok(msg) => Ok(msg.as_ref().and_then(Link::from_message)),
            Err(e) => match Error::netlink(format!("get link {name}{}", self.where_()), e) {
                err if err.errno() == Some(Errno::ENODEV as i32) => Ok(None),
                err => Err(err),
            },
        }
    }

    /// `ip link show`: every link in this netns.
    pub async fn link_dump(&self) -> Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .dump(|| format!("list links{}", self.where_()), |h| h.link().get().execute())
            .await?;
        Ok(msgs.iter().filter_map(Link::from_message).collect())
    }

    /// `ip link set dev <name> up`.
    pub async fn link_set_up(&self, index: u32, name: &str) -> Result<()> {
        self.link_change(link_up_msg(index), format!("set link {name} up{}", self.where_()))
            .await
    }

    /// `ip link set dev <name> down`.
    pub async fn link_set_down(&self, index: u32, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.link_change(msg, format!("set link {name} down{}", self.where_()))
            .await
    }

    /// `ip link set dev <name> name <new_name>` (the link must be down).
    pub async fn link_rename(&self, index: u32, name: &str, new_name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).name(new_name).build();
        let op = format!("rename link {name} to {new_name}{}", self.where_());
        self.link_change(msg, op).await
    }

    /// `ip link set dev <name> name <new_name> group <group>` (the link must be down).
    pub async fn link_retire(&self, index: u32, name: &str, new_name: &str, group: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .name(new_name)
            .link_group(group)
            .build();
        let op = format!("rename link {name} to {new_name} group {group}{}", self.where_());
        self.link_change(msg, op).await
    }

    /// `ip link del group <group>`: every link in the group in one kernel batch;
    /// `Ok(false)` when the group is empty.
    pub async fn link_del_group(&self, group: u32) -> Result<bool> {
        let mut req = self.handle.link().del(0);
        req.message_mut().attributes.push(LinkAttribute::Group(group));
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(e) => match Error::netlink(format!("delete link group {group}{}", self.where_()), e) {
                err if err.errno() == Some(Errno::ENODEV as i32) => Ok(false),
                err => Err(err),
            },
        }
    }

    /// `ip link del dev <name>`; `Ok(false)` if it was already gone. Deleting either veth end
    /// removes both, and the kernel drops every route through them.
    pub async fn link_del(&self, index: u32, name: &str) -> Result<bool> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) => match Error::netlink(format!("delete link {name}{}", self.where_()), e) {
                err if err.errno() == Some(Errno::ENODEV as i32) => Ok(false),
                err => Err(err),
            },
        }
    }

    async fn link_change(&self, msg: LinkMessage, op: String) -> Result<()> {
        // RTM_NEWLINK without NLM_F_CREATE, which is what `ip link set` sends.
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_msg_puts_the_peer_in_the_pod_netns() {
        let msg = veth_msg("lan0123456789a", "eth0", 1450, 7);
        assert!(msg.header.flags.contains(LinkFlags::Up));
        assert!(msg.attributes.contains(&LinkAttribute::IfName("lan0123456789a".into())));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1450)));
        assert!(!msg.attributes.contains(&LinkAttribute::NetNsFd(7)), "host end stays");
        let peer = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("veth peer message");
        assert!(!peer.header.flags.contains(LinkFlags::Up), "ENOTCONN if set");
        for attr in [
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::NetNsFd(7),
        ] {
            assert!(peer.attributes.contains(&attr), "peer lacks {attr:?}");
        }
    }

    #[test]
    fn link_decodes_name_mac_and_kind() {
        let mut msg = veth_msg("lanx", "eth0", 1500, 3);
        msg.header.index = 9;
        msg.attributes
            .push(LinkAttribute::Address(vec![0xee, 0, 0x1a, 2, 3, 0xff]));
        let link = Link::from_message(&msg).unwrap();
        assert_eq!(link.name, "lanx");
        assert_eq!(link.index, 9);
        assert_eq!(link.mac.as_deref(), Some("ee:00:1a:02:03:ff"));
        assert!(link.is_veth && link.up);
        assert_eq!(link.mtu, Some(1500));
    }
}
