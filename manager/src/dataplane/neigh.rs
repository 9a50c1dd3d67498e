//! Neighbours: the `ip neigh` wrapper methods.

use std::net::IpAddr;

use rtnetlink::packet_route::neighbour::NeighbourState;

use super::{Error, Netlink, Result};

impl Netlink {
    /// `ip neigh replace <ip> lladdr <mac> dev <name> nud permanent`.
    ///
    /// The pod's entry for 169.254.1.1 points straight at the host veth, so
    /// the pod never ARPs for its gateway: proxy ARP would only answer if the
    /// node had a route to 169.254.1.1 out of another interface (a default
    /// route), which a node need not have.
    pub async fn neigh_replace_permanent(&self, index: u32, name: &str, ip: IpAddr, mac: &str) -> Result<()> {
        let lladdr = parse_mac(mac).ok_or_else(|| Error::Invalid(format!("mac {mac:?} of {name}")))?;
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&lladdr)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!("neigh replace {ip} lladdr {mac} dev {name}{}", self.where_()),
                    e,
                )
            })
    }
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let bytes: Option<Vec<u8>> = mac.split(':').map(|b| u8::from_str_radix(b, 16).ok()).collect();
    bytes.filter(|b| b.len() == 6)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_macs() {
        assert_eq!(super::parse_mac("0a:58:0A:00:00:0b"), Some(vec![10, 88, 10, 0, 0, 11]));
        assert_eq!(super::parse_mac("0a:58"), None);
        assert_eq!(super::parse_mac("zz:58:0a:00:00:0b"), None);
    }
}
