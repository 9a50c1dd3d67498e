//! [`Dataplane::sync_encap`]: makes the kernel match an [`EncapPlan`], and the VTEP entries
//! (FDB and neighbours) of VXLAN devices it keeps:
//!
//! ```text
//! bridge fdb replace <vtep_mac> dev vxlan.lanes dst <node_ip> self permanent   # per node
//! ip neigh replace <vtep_ip> lladdr <vtep_mac> dev vxlan.lanes nud permanent   # per node
//! ip route replace <block> via <vtep_ip> dev vxlan.lanes onlink proto 76        # per block
//! bridge fdb del ... / ip neigh del ... / ip route del ...                      # stale ones
//! ```
//!
//! Routes are in [`super::encap_route`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;

use nix::errno::Errno;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::AddressFamily;

use super::encap::{EncapPlan, FdbEntry, NeighEntry, IPIP_DEVICE, VXLAN_DEVICE};
use super::link::format_mac;
use super::vxlan::VxlanLink;
use super::{Dataplane, Error, Netlink, Result};

/// Counts of what [`Dataplane::sync_encap`] changed; all zero when the kernel already matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncapSyncStats {
    pub routes_added: usize,
    pub routes_replaced: usize,
    pub routes_deleted: usize,
    pub fdb_set: usize,
    pub fdb_deleted: usize,
    pub neighbors_set: usize,
    pub neighbors_deleted: usize,
}

impl EncapSyncStats {
    /// The number of kernel objects written or deleted.
    pub fn changes(&self) -> usize {
        self.routes_added
            + self.routes_replaced
            + self.routes_deleted
            + self.fdb_set
            + self.fdb_deleted
            + self.neighbors_set
            + self.neighbors_deleted
    }
}

/// `bridge fdb {replace|del} <mac> dev <index> dst <dst> self permanent`: a VXLAN FDB entry
/// (`AF_BRIDGE`, `NTF_SELF`: the device's own table, not a bridge's).
pub fn fdb_msg(index: u32, mac: [u8; 6], dst: Ipv4Addr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.header.kind = RouteType::Unspec;
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    msg
}

/// `ip neigh {replace|del} <ip> lladdr <mac> dev <index> nud permanent`.
pub fn vtep_neigh_msg(index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg
}

/// `(mac, ipv4 destination, permanent)` of a neighbour or FDB dump entry.
fn decode_neigh(msg: &NeighbourMessage) -> Option<([u8; 6], Ipv4Addr, bool)> {
    let mut mac = None;
    let mut ip = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)) => ip = Some(*addr),
            // AF_BRIDGE dumps (the FDB) leave NDA_DST undecoded.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                ip = <[u8; 4]>::try_from(bytes.as_slice()).ok().map(Ipv4Addr::from)
            }
            _ => {}
        }
    }
    Some((mac?, ip?, msg.header.state == NeighbourState::Permanent))
}

impl Dataplane {
    /// Makes the kernel match `plan` exactly, and returns what it changed (nothing, when called
    /// again with the same plan).
    ///
    /// - Routes: every IPv4 unicast route with `proto 76` and a gateway in the main table is an
    ///   encapsulation route, lanesd's own (pod routes and blackholes have no gateway): missing
    ///   ones are added, differing ones replaced, others deleted by exact key. A planned route
    ///   replaces another owner's route to the same prefix (one owner per pool).
    /// - FDB and neighbour entries on `vxlan.lanes` (and any VXLAN device the plan names):
    ///   missing or different ones replaced, permanent ones not in the plan deleted.
    ///
    /// Tunnel devices the plan uses must exist ([`Dataplane::ensure_vxlan`],
    /// [`Dataplane::ensure_ipip`]); a missing one is an `ENODEV` error naming it, before any
    /// change. FDB and neighbour entries are synced before the routes, so a new route never
    /// points at a missing entry.
    pub async fn sync_encap(&self, plan: &EncapPlan) -> Result<EncapSyncStats> {
        let mut names: BTreeSet<&str> = [VXLAN_DEVICE, IPIP_DEVICE].into();
        names.extend(plan.tunnel_devices());
        names.extend(plan.fdb.iter().map(|e| e.dev.as_str()));
        names.extend(plan.neighbors.iter().map(|e| e.dev.as_str()));
        let mut devices = BTreeMap::new();
        let mut vxlans = Vec::new();
        for name in names {
            match self.host.link_message(name).await? {
                Some(msg) => {
                    let link = VxlanLink::from_message(&msg);
                    if link.is_vxlan {
                        vxlans.push((name, link.index));
                    }
                    devices.insert(name.to_string(), link.index);
                }
                None if plan.uses_tunnel(name) || (name != VXLAN_DEVICE && name != IPIP_DEVICE) => {
                    return Err(Error::Netlink {
                        op: format!("sync encapsulation: get link {name}{}", self.host.where_()),
                        source: io::Error::from_raw_os_error(Errno::ENODEV as i32),
                    })
                }
                None => {}
            }
        }
        let mut stats = EncapSyncStats::default();
        for &(name, index) in &vxlans {
            let fdb: Vec<&FdbEntry> = plan.fdb.iter().filter(|e| e.dev == name).collect();
            let neighbors: Vec<&NeighEntry> = plan.neighbors.iter().filter(|e| e.dev == name).collect();
            self.host.sync_fdb(index, name, &fdb, &mut stats).await?;
            self.host
                .sync_vtep_neighbors(index, name, &neighbors, &mut stats)
                .await?;
        }
        self.host.sync_encap_routes(&plan.routes, &devices, &mut stats).await?;
        Ok(stats)
    }
}

impl Netlink {
    async fn neigh_dump_dev(&self, family: AddressFamily, index: u32, what: &str) -> Result<Vec<NeighbourMessage>> {
        let msgs: Vec<NeighbourMessage> = self
            .dump(
                || format!("list {what}{}", self.where_()),
                |h| h.neighbours().get().set_address_family(family).execute(),
            )
            .await?;
        Ok(msgs.into_iter().filter(|m| m.header.ifindex == index).collect())
    }

    async fn neigh_replace_msg(&self, msg: NeighbourMessage, op: String) -> Result<()> {
        let mut request = self
            .handle
            .neighbours()
            .add(msg.header.ifindex, Ipv4Addr::UNSPECIFIED.into());
        *request.message_mut() = msg;
        request.replace().execute().await.map_err(|e| Error::netlink(op, e))
    }

    /// Deletes a neighbour or FDB entry; one already gone (`ENOENT`) is not an error.
    async fn neigh_del_msg(&self, msg: NeighbourMessage, op: String) -> Result<bool> {
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) => match Error::netlink(op, e) {
                err if err.errno() == Some(Errno::ENOENT as i32) => Ok(false),
                err => Err(err),
            },
        }
    }

    /// `bridge fdb replace` the wanted entries, then `bridge fdb del` every other `(mac, dst)`
    /// of the device (read again, since a replace rewrites a MAC's first remote in place).
    async fn sync_fdb(&self, index: u32, dev: &str, want: &[&FdbEntry], stats: &mut EncapSyncStats) -> Result<()> {
        let want: BTreeSet<([u8; 6], Ipv4Addr)> = want.iter().map(|e| (e.mac, e.dst)).collect();
        let have = |msgs: Vec<NeighbourMessage>| -> BTreeSet<([u8; 6], Ipv4Addr)> {
            msgs.iter()
                .filter_map(decode_neigh)
                .map(|(mac, ip, _)| (mac, ip))
                .collect()
        };
        let before = have(self.neigh_dump_dev(AddressFamily::Bridge, index, "fdb").await?);
        for &(mac, dst) in want.difference(&before) {
            let op = format!(
                "bridge fdb replace {} dev {dev} dst {dst} self permanent",
                format_mac(&mac)
            );
            self.neigh_replace_msg(fdb_msg(index, mac, dst), op).await?;
            stats.fdb_set += 1;
        }
        let after = if stats.fdb_set > 0 {
            have(self.neigh_dump_dev(AddressFamily::Bridge, index, "fdb").await?)
        } else {
            before
        };
        for &(mac, dst) in after.difference(&want) {
            let op = format!("bridge fdb del {} dev {dev} dst {dst} self", format_mac(&mac));
            stats.fdb_deleted += usize::from(self.neigh_del_msg(fdb_msg(index, mac, dst), op).await?);
        }
        Ok(())
    }

    /// `ip neigh replace ... nud permanent` the wanted VTEP entries, `ip neigh del` other
    /// permanent ones on the device (transient entries the kernel made are left to age out).
    async fn sync_vtep_neighbors(
        &self,
        index: u32,
        dev: &str,
        want: &[&NeighEntry],
        stats: &mut EncapSyncStats,
    ) -> Result<()> {
        let have: BTreeMap<Ipv4Addr, ([u8; 6], bool)> = self
            .neigh_dump_dev(AddressFamily::Inet, index, "neighbours")
            .await?
            .iter()
            .filter_map(decode_neigh)
            .map(|(mac, ip, permanent)| (ip, (mac, permanent)))
            .collect();
        for entry in want {
            if have.get(&entry.ip) != Some(&(entry.mac, true)) {
                let mac = format_mac(&entry.mac);
                let op = format!("ip neigh replace {} lladdr {mac} dev {dev} nud permanent", entry.ip);
                self.neigh_replace_msg(vtep_neigh_msg(index, entry.ip, entry.mac), op)
                    .await?;
                stats.neighbors_set += 1;
            }
        }
        let wanted: BTreeSet<Ipv4Addr> = want.iter().map(|e| e.ip).collect();
        for (ip, (mac, _)) in have
            .iter()
            .filter(|(ip, (_, permanent))| *permanent && !wanted.contains(ip))
        {
            let op = format!("ip neigh del {ip} dev {dev}");
            let deleted = self.neigh_del_msg(vtep_neigh_msg(index, *ip, *mac), op).await?;
            stats.neighbors_deleted += usize::from(deleted);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tests/encap.rs"]
mod e2e;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_and_neighbour_messages_round_trip() {
        let mac = [0x02, 0, 0, 0, 0, 0x0b];
        let fdb = fdb_msg(7, mac, Ipv4Addr::new(192, 168, 2, 12));
        assert_eq!(fdb.header.family, AddressFamily::Bridge);
        assert!(fdb.header.flags.contains(NeighbourFlags::Own), "self");
        assert_eq!(decode_neigh(&fdb), Some((mac, Ipv4Addr::new(192, 168, 2, 12), true)));
        // What the kernel's AF_BRIDGE dump decodes to.
        let mut dumped = fdb.clone();
        dumped.attributes[1] = NeighbourAttribute::Destination(NeighbourAddress::Other(vec![192, 168, 2, 12]));
        assert_eq!(decode_neigh(&dumped), decode_neigh(&fdb));
        let neigh = vtep_neigh_msg(7, Ipv4Addr::new(10, 244, 2, 0), mac);
        assert_eq!((neigh.header.family, neigh.header.ifindex), (AddressFamily::Inet, 7));
        assert_eq!(decode_neigh(&neigh), Some((mac, Ipv4Addr::new(10, 244, 2, 0), true)));
    }
}
