//! Encapsulation routes: the `ip route` messages for [`PlannedRoute`]s, decoding the kernel's
//! own (with their `onlink` flag, which [`super::route::Route`] does not keep), and the pure
//! diff that [`super::Dataplane::sync_encap`] applies:
//!
//! ```text
//! ip route replace <dst> via <gw> dev <tunnel> onlink proto 76   # tunnel
//! ip route replace <dst> via <gw> proto 76                       # native, CrossSubnet
//! ip route del <dst> via <gw> dev <oif> proto 76                 # stale, by exact key
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;

use super::encap::{PlannedRoute, RouteDev};
use super::encap_sync::EncapSyncStats;
use super::{Error, Netlink, Result, RTPROT_LANES};

/// An IPv4 `proto 76` unicast route with a gateway in the main table, as wanted or as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncapRoute {
    pub dst: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// `None`: let the kernel pick the interface towards the gateway (native routes).
    pub oif: Option<u32>,
    pub onlink: bool,
    /// The metric; lanesd installs 0, so anything else is stale.
    pub priority: u32,
}

impl EncapRoute {
    /// `ip route ... <dst> via <gateway> [dev <oif>] [onlink] [metric <priority>] proto 76`.
    pub fn to_message(&self) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = self.dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Other(RTPROT_LANES);
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = RouteScope::Universe;
        if self.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(self.dst.network())));
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(self.gateway)));
        if let Some(oif) = self.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if self.priority != 0 {
            msg.attributes.push(RouteAttribute::Priority(self.priority));
        }
        msg
    }

    /// Decodes a route dump entry if it is an encapsulation route (see the type); pod routes
    /// and blackholes (no gateway), IPv6 and other owners' routes give `None`.
    pub fn from_message(msg: &RouteMessage) -> Option<EncapRoute> {
        let h = &msg.header;
        if h.address_family != AddressFamily::Inet
            || h.protocol != RouteProtocol::Other(RTPROT_LANES)
            || h.kind != RouteType::Unicast
        {
            return None;
        }
        let (mut dst, mut gateway, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
        let (mut table, mut priority) = (u32::from(h.table), 0);
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => priority = *p,
                _ => {}
            }
        }
        (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(())?;
        Some(EncapRoute {
            dst: Ipv4Net::new(dst, h.destination_prefix_length).ok()?,
            gateway: gateway?,
            oif,
            onlink: h.flags.contains(RouteFlags::Onlink),
            priority,
        })
    }

    /// Reads like the `ip route` arguments, for error messages.
    fn describe(&self, devices: &BTreeMap<String, u32>) -> String {
        let mut out = format!("{} via {}", self.dst, self.gateway);
        if let Some(oif) = self.oif {
            match devices.iter().find(|(_, index)| **index == oif) {
                Some((name, _)) => out += &format!(" dev {name}"),
                None => out += &format!(" dev #{oif}"),
            }
        }
        if self.onlink {
            out += " onlink";
        }
        if self.priority != 0 {
            out += &format!(" metric {}", self.priority);
        }
        out + " proto 76"
    }
}

/// What [`diff_routes`] found: routes to add (none of ours to that prefix), to replace (ours,
/// but different) and to delete (ours, not planned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    pub add: Vec<EncapRoute>,
    pub replace: Vec<EncapRoute>,
    pub delete: Vec<EncapRoute>,
}

/// Compares the plan with the kernel's encapsulation routes. `devices` maps tunnel names to
/// ifindexes (a planned tunnel missing from it is an error); a native route matches one of
/// ours with the same gateway through any non-tunnel interface.
pub fn diff_routes(want: &[PlannedRoute], devices: &BTreeMap<String, u32>, have: &[EncapRoute]) -> Result<RouteDiff> {
    let mut diff = RouteDiff::default();
    let mut kept = vec![false; have.len()];
    for planned in want {
        let oif = match &planned.dev {
            RouteDev::Tunnel(name) => Some(*devices.get(name).ok_or_else(|| Error::Netlink {
                op: format!("route {} via {} dev {name}", planned.dst, planned.gateway),
                source: io::Error::from_raw_os_error(Errno::ENODEV as i32),
            })?),
            RouteDev::Underlay => None,
        };
        let route = EncapRoute {
            dst: planned.dst,
            gateway: planned.gateway,
            oif,
            onlink: planned.onlink,
            priority: 0,
        };
        let current = have.iter().position(|h| h.dst == route.dst && h.priority == 0);
        let matches = |h: &EncapRoute| {
            h.gateway == route.gateway
                && h.onlink == route.onlink
                && match route.oif {
                    Some(index) => h.oif == Some(index),
                    None => !h.oif.is_some_and(|index| devices.values().any(|d| *d == index)),
                }
        };
        match current {
            Some(i) => {
                kept[i] = true;
                if !matches(&have[i]) {
                    diff.replace.push(route);
                }
            }
            None => diff.add.push(route),
        }
    }
    diff.delete = have
        .iter()
        .zip(kept)
        .filter(|(_, k)| !k)
        .map(|(h, _)| h.clone())
        .collect();
    Ok(diff)
}

impl Netlink {
    /// `ip -4 route show table main proto 76`, keeping the encapsulation routes.
    pub(crate) async fn encap_route_dump(&self) -> Result<Vec<EncapRoute>> {
        let mut query = RouteMessage::default();
        query.header.address_family = AddressFamily::Inet;
        let msgs: Vec<RouteMessage> = self
            .dump(
                || format!("list routes{}", self.where_()),
                |h| h.route().get(query).execute(),
            )
            .await?;
        Ok(msgs.iter().filter_map(EncapRoute::from_message).collect())
    }

    /// Applies [`diff_routes`]: replaces first (a route is never missing while it changes),
    /// then deletes by exact key, so another owner's route to the same prefix survives.
    pub(crate) async fn sync_encap_routes(
        &self,
        want: &[PlannedRoute],
        devices: &BTreeMap<String, u32>,
        stats: &mut EncapSyncStats,
    ) -> Result<()> {
        let have = self.encap_route_dump().await?;
        let diff = diff_routes(want, devices, &have)?;
        for (routes, count) in [
            (&diff.add, &mut stats.routes_added),
            (&diff.replace, &mut stats.routes_replaced),
        ] {
            for route in routes {
                self.route_replace(route.to_message(), &route.describe(devices)).await?;
                *count += 1;
            }
        }
        for route in &diff.delete {
            let deleted = self.route_del(route.to_message(), &route.describe(devices)).await?;
            stats.routes_deleted += usize::from(deleted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(dst: &str, gw: &str, dev: Option<&str>) -> PlannedRoute {
        PlannedRoute {
            dst: dst.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            dev: dev.map_or(RouteDev::Underlay, |d| RouteDev::Tunnel(d.into())),
            onlink: dev.is_some(),
        }
    }

    fn have(dst: &str, gw: &str, oif: u32, onlink: bool) -> EncapRoute {
        EncapRoute {
            dst: dst.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            oif: Some(oif),
            onlink,
            priority: 0,
        }
    }

    #[test]
    fn messages_round_trip_with_the_onlink_flag() {
        let route = have("10.244.2.0/26", "10.244.2.0", 5, true);
        let msg = route.to_message();
        assert_eq!(u8::from(msg.header.protocol), 76);
        assert!(msg.header.flags.contains(RouteFlags::Onlink));
        assert_eq!(EncapRoute::from_message(&msg), Some(route));
        let native = EncapRoute {
            oif: None,
            onlink: false,
            priority: 7,
            ..have("10.244.3.0/26", "192.168.0.13", 0, false)
        };
        assert_eq!(EncapRoute::from_message(&native.to_message()), Some(native.clone()));
        let devices = BTreeMap::from([("vxlan.lanes".to_string(), 5)]);
        assert_eq!(
            have("10.244.2.0/26", "10.244.2.0", 5, true).describe(&devices),
            "10.244.2.0/26 via 10.244.2.0 dev vxlan.lanes onlink proto 76"
        );
        assert_eq!(
            native.describe(&devices),
            "10.244.3.0/26 via 192.168.0.13 metric 7 proto 76"
        );
    }

    #[test]
    fn pod_routes_blackholes_and_foreign_routes_are_not_encap_routes() {
        let pod = super::super::route::link_route_msg("10.244.1.5/32".parse().unwrap(), 3);
        let blackhole = super::super::route::blackhole_msg("10.244.1.0/26".parse().unwrap());
        assert_eq!(EncapRoute::from_message(&pod), None);
        assert_eq!(EncapRoute::from_message(&blackhole), None);
        let mut bird = have("10.244.9.0/26", "192.168.0.9", 2, false).to_message();
        bird.header.protocol = RouteProtocol::Bird;
        assert_eq!(EncapRoute::from_message(&bird), None);
    }

    #[test]
    fn diff_adds_replaces_and_deletes_only_what_differs() {
        let devices = BTreeMap::from([("vxlan.lanes".to_string(), 5), ("ipip.lanes".to_string(), 6)]);
        let want = [
            planned("10.244.2.0/26", "10.244.2.0", Some("vxlan.lanes")),
            planned("10.244.3.0/26", "192.168.0.13", None),
            planned("10.244.4.0/26", "192.168.2.14", Some("ipip.lanes")),
            planned("10.244.5.0/26", "192.168.0.15", None),
        ];
        let stale = have("10.244.8.0/26", "10.244.8.0", 5, true);
        let metric = EncapRoute {
            priority: 10,
            ..have("10.244.2.0/26", "10.244.2.0", 5, true)
        };
        let existing = [
            have("10.244.2.0/26", "10.244.2.0", 5, true),    // as planned
            have("10.244.3.0/26", "192.168.0.13", 2, false), // native via the uplink: as planned
            have("10.244.4.0/26", "10.244.4.0", 5, true),    // was VXLAN, now IPIP
            have("10.244.5.0/26", "192.168.0.15", 5, true),  // native wanted, found on a tunnel
            stale.clone(),
            metric.clone(),
        ];
        let diff = diff_routes(&want, &devices, &existing).unwrap();
        assert!(diff.add.is_empty(), "{diff:?}");
        let replaced: Vec<String> = diff.replace.iter().map(|r| r.describe(&devices)).collect();
        assert_eq!(
            replaced,
            [
                "10.244.4.0/26 via 192.168.2.14 dev ipip.lanes onlink proto 76",
                "10.244.5.0/26 via 192.168.0.15 proto 76"
            ]
        );
        assert_eq!(diff.delete, [stale, metric]);
        let fresh = diff_routes(&want, &devices, &[]).unwrap();
        assert_eq!((fresh.add.len(), fresh.replace.len(), fresh.delete.len()), (4, 0, 0));
        let missing = diff_routes(&want, &BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(missing.errno(), Some(Errno::ENODEV as i32));
        assert!(missing
            .to_string()
            .starts_with("route 10.244.2.0/26 via 10.244.2.0 dev vxlan.lanes: "));
    }
}
