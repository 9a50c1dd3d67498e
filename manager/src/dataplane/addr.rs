//! Addresses: the `ip addr` wrapper methods.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::AddressMessageBuilder;

use super::{Error, Netlink, Result};

/// Decodes the interface address of a kernel address message.
///
/// `IFA_LOCAL` is the interface's own address; `IFA_ADDRESS` is the peer on point-to-point links,
/// so it is only used when `IFA_LOCAL` is absent (always the case for IPv6).
pub fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip: IpAddr = local.or(address)?;
    IpNet::new(ip, msg.header.prefix_len).ok()
}

/// `ip addr add <net> dev <index>`: the message `ip` sends (`IFA_LOCAL` and `IFA_ADDRESS`).
pub fn address_msg(index: u32, net: IpNet) -> AddressMessage {
    match net {
        IpNet::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(v4.addr(), v4.prefix_len())
            .build(),
        IpNet::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(v6.addr(), v6.prefix_len())
            .build(),
    }
}

impl Netlink {
    /// `ip addr replace <net> dev <name>`: idempotent, so a retried setup does not trip on it.
    pub async fn addr_replace(&self, index: u32, name: &str, net: IpNet) -> Result<()> {
        self.handle
            .address()
            .add(index, net.addr(), net.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("add address {net} dev {name}{}", self.where_()), e))
    }

    /// `ip addr show dev <name>`: every address on one interface.
    pub async fn addr_list(&self, index: u32, name: &str) -> Result<Vec<IpNet>> {
        // The kernel dumps all interfaces' addresses; rtnetlink filters by index client side.
        let msgs: Vec<AddressMessage> = self
            .dump(
                || format!("list addresses dev {name}{}", self.where_()),
                |h| h.address().get().set_link_index_filter(index).execute(),
            )
            .await?;
        Ok(msgs.iter().filter_map(address_of).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_local_over_peer_address() {
        let mut msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(3)
            .address(Ipv4Addr::new(10, 244, 0, 5), 32)
            .build();
        assert_eq!(address_of(&msg), Some("10.244.0.5/32".parse().unwrap()));
        msg.attributes.retain(|a| !matches!(a, AddressAttribute::Local(_)));
        msg.attributes
            .push(AddressAttribute::Local(Ipv4Addr::new(10, 0, 0, 1).into()));
        assert_eq!(address_of(&msg), Some("10.0.0.1/32".parse().unwrap()));
    }
}
