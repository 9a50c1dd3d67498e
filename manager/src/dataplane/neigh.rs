//! Neighbours: the permanent gateway entry a pod gets.

use std::net::IpAddr;

use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::AddressFamily;

/// `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`.
///
/// The pod's entry for 169.254.1.1 points straight at the host veth, so
/// the pod never ARPs for its gateway: proxy ARP would only answer if the
/// node had a route to 169.254.1.1 out of another interface (a default
/// route), which a node need not have.
pub fn permanent_neigh_msg(index: u32, ip: IpAddr, lladdr: Vec<u8>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unspec;
    msg.attributes.push(NeighbourAttribute::Destination(match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }));
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(lladdr));
    msg
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let bytes: Option<Vec<u8>> = mac.split(':').map(|b| u8::from_str_radix(b, 16).ok()).collect();
    bytes.filter(|b| b.len() == 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_macs() {
        assert_eq!(parse_mac("0a:58:0A:00:00:0b"), Some(vec![10, 88, 10, 0, 0, 11]));
        assert_eq!(parse_mac("0a:58"), None);
        assert_eq!(parse_mac("zz:58:0a:00:00:0b"), None);
    }

    #[test]
    fn gateway_entry_is_permanent_with_the_mac() {
        let msg = permanent_neigh_msg(4, "169.254.1.1".parse().unwrap(), vec![0xee; 6]);
        assert_eq!(msg.header.ifindex, 4);
        assert_eq!(msg.header.state, NeighbourState::Permanent);
        assert!(msg
            .attributes
            .contains(&NeighbourAttribute::LinkLayerAddress(vec![0xee; 6])));
        assert!(msg
            .attributes
            .contains(&NeighbourAttribute::Destination(NeighbourAddress::Inet(
                "169.254.1.1".parse().unwrap()
            ))));
    }
}
