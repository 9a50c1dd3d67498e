//! Routes: pure builders for the four kinds Lanes installs, decoding, and the `ip route`
//! wrapper methods. Every route built here carries [`RTPROT_LANES`].

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use rtnetlink::packet_route::AddressFamily;

use super::{Error, Netlink, Result, RTPROT_LANES};

/// `<dst> table main proto 76` of the given type and scope; the base of every builder here.
fn lanes_route(dst: IpNet, kind: RouteType, scope: RouteScope) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Other(RTPROT_LANES);
    msg.header.kind = kind;
    msg.header.scope = scope;
    // A default route is encoded by leaving RTA_DST out, as `ip route` does.
    if dst.prefix_len() > 0 {
        msg.attributes.push(RouteAttribute::Destination(dst.network().into()));
    }
    msg
}

/// `<dst> dev <oif> scope link proto 76`: a host's `/32` route to a pod, or a pod's route to
/// 169.254.1.1. Scope link means "directly reachable, ARP for it on this device".
pub fn link_route_msg(dst: IpNet, oif: u32) -> RouteMessage {
    let mut msg = lanes_route(dst, RouteType::Unicast, RouteScope::Link);
    msg.attributes.push(RouteAttribute::Oif(oif));
    msg
}

/// `default via <gateway> dev <oif> proto 76`, the pod's default route.
pub fn default_via_msg(gateway: Ipv4Addr, oif: u32) -> RouteMessage {
    let default = IpNet::V4(ipnet::Ipv4Net::default());
    let mut msg = lanes_route(default, RouteType::Unicast, RouteScope::Universe);
    msg.attributes.push(RouteAttribute::Gateway(IpAddr::V4(gateway).into()));
    msg.attributes.push(RouteAttribute::Oif(oif));
    msg
}

/// `blackhole <block> proto 76`: drops traffic to unassigned addresses of a block this node
/// owns instead of sending it back out the default route (a loop with the advertising peer).
pub fn blackhole_msg(block: IpNet) -> RouteMessage {
    lanes_route(block.trunc(), RouteType::BlackHole, RouteScope::Universe)
}

/// One kernel route, decoded to what Lanes inspects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub protocol: u8,
    pub scope: RouteScope,
    pub kind: RouteType,
    pub table: u32,
}

impl Route {
    /// Decodes an `RTM_NEWROUTE` dump entry; `None` for non-IP families (MPLS, multicast).
    pub fn from_message(msg: &RouteMessage) -> Option<Route> {
        let len = msg.header.destination_prefix_length;
        let mut dst = match msg.header.address_family {
            AddressFamily::Inet => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), len).ok()?,
            AddressFamily::Inet6 => IpNet::new(std::net::Ipv6Addr::UNSPECIFIED.into(), len).ok()?,
            _ => return None,
        };
        let mut route = Route {
            dst,
            oif: None,
            gateway: None,
            protocol: msg.header.protocol.into(),
            scope: msg.header.scope,
            kind: msg.header.kind,
            table: msg.header.table.into(),
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(addr) => {
                    if let Some(ip) = route_ip(addr) {
                        dst = IpNet::new(ip, len).ok()?;
                    }
                }
                RouteAttribute::Oif(index) => route.oif = Some(*index),
                RouteAttribute::Gateway(addr) => route.gateway = route_ip(addr),
                // Tables above 255 only fit in RTA_TABLE.
                RouteAttribute::Table(table) => route.table = *table,
                _ => {}
            }
        }
        route.dst = dst;
        Some(route)
    }

    /// Installed by Lanes, in the main table.
    pub fn is_ours(&self) -> bool {
        self.protocol == RTPROT_LANES && self.table == u32::from(RouteHeader::RT_TABLE_MAIN)
    }

    /// A Lanes `/32` (`/128`) `scope link` route through an interface: a pod route.
    pub fn is_pod_route(&self) -> bool {
        self.is_ours()
            && self.kind == RouteType::Unicast
            && self.scope == RouteScope::Link
            && self.dst.prefix_len() == self.dst.max_prefix_len()
            && self.oif.is_some()
    }
}

fn route_ip(addr: &rtnetlink::packet_route::route::RouteAddress) -> Option<IpAddr> {
    use rtnetlink::packet_route::route::RouteAddress;
    match addr {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

impl Netlink {
    /// `ip route add ...`: fails with `EEXIST` if a route to the same destination exists.
    pub async fn route_add(&self, msg: RouteMessage, what: &str) -> Result<()> {
        let op = format!("add route {what}{}", self.where_());
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// `ip route replace ...`: idempotent, and takes over a stale route to the same prefix.
    pub async fn route_replace(&self, msg: RouteMessage, what: &str) -> Result<()> {
        let op = format!("replace route {what}{}", self.where_());
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// `ip route del ...`; `Ok(false)` when no route matched (`ESRCH`).
    ///
    /// The kernel only deletes a route matching every field set in `msg`: with the protocol and
    /// output interface set, someone else's route to the same prefix is left alone.
    pub async fn route_del(&self, msg: RouteMessage, what: &str) -> Result<bool> {
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) => match Error::netlink(format!("delete route {what}{}", self.where_()), e) {
                err if err.errno() == Some(Errno::ESRCH as i32) => Ok(false),
                err => Err(err),
            },
        }
    }

    /// `ip route show table all` for IPv4 and IPv6 (`ip -4 route` plus `ip -6 route`).
    pub async fn route_dump(&self) -> Result<Vec<Route>> {
        // AF_UNSPEC makes the kernel walk every family in one dump. Without strict checking it
        // ignores the header fields as filters, so filtering happens here.
        let msgs: Vec<RouteMessage> = self
            .dump(
                || format!("list routes{}", self.where_()),
                |h| h.route().get(RouteMessage::default()).execute(),
            )
            .await?;
        Ok(msgs.iter().filter_map(Route::from_message).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_route_is_scope_link_proto_76() {
        let msg = link_route_msg("10.244.1.5/32".parse().unwrap(), 12);
        let route = Route::from_message(&msg).unwrap();
        assert_eq!(route.dst, "10.244.1.5/32".parse::<IpNet>().unwrap());
        assert_eq!(route.oif, Some(12));
        assert_eq!(u8::from(msg.header.protocol), 76);
        assert!(route.is_pod_route());
    }

    #[test]
    fn default_route_has_no_destination_attribute() {
        let msg = default_via_msg(crate::dataplane::POD_GATEWAY_V4, 4);
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        let route = Route::from_message(&msg).unwrap();
        assert_eq!(route.dst.to_string(), "0.0.0.0/0");
        assert_eq!(route.gateway, Some("169.254.1.1".parse().unwrap()));
        assert!(route.is_ours() && !route.is_pod_route());
    }

    #[test]
    fn blackhole_is_normalised_to_the_network() {
        let route = Route::from_message(&blackhole_msg("10.244.1.7/26".parse().unwrap())).unwrap();
        assert_eq!(route.dst.to_string(), "10.244.1.0/26");
        assert_eq!(route.kind, RouteType::BlackHole);
        let v6 = Route::from_message(&blackhole_msg("fd00:1::/122".parse().unwrap())).unwrap();
        assert_eq!(v6.dst.to_string(), "fd00:1::/122");
    }
}
