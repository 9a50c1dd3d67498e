//! `check_pod`: compares a pod's live wiring with its [`PodSpec`] (CNI CHECK).

use ipnet::{IpNet, Ipv4Net};

use super::link::Link;
use super::route::Route;
use super::{netns, sysctl, CheckError, Dataplane, PodSpec, POD_GATEWAY_V4};

impl Dataplane {
    /// Verifies everything [`Dataplane::setup_pod`] makes is still there, naming each missing or
    /// wrong item in [`CheckError::Mismatch`].
    ///
    /// Equivalent to inspecting `ip link show <host>`, `sysctl net.ipv4.conf.<host>.proxy_arp`,
    /// `ip route show proto 76`, and in the pod `ip -n <netns> link/addr/route show dev <if>`.
    /// Read failures (e.g. the netns is gone) are [`CheckError::Dataplane`].
    pub async fn check_pod(&self, spec: &PodSpec) -> Result<(), CheckError> {
        spec.validate()?;
        let mut problems = Vec::new();

        let host_link = self.host.link_get(&spec.host_ifname).await?;
        match &host_link {
            None => problems.push(format!("host veth {} missing", spec.host_ifname)),
            Some(link) => {
                check_link(&mut problems, link, spec.mtu, "");
                let key = format!("net/ipv4/conf/{}/proxy_arp", link.name);
                match sysctl::read(&key) {
                    Ok(value) if value == "1" => {}
                    Ok(value) => problems.push(format!("{key} is {value}, want 1")),
                    Err(err) => problems.push(err.to_string()),
                }
                let routes = self.host.route_dump().await?;
                for addr in &spec.addresses {
                    let found = routes
                        .iter()
                        .any(|r| r.is_pod_route() && r.dst == *addr && r.oif == Some(link.index));
                    if !found {
                        problems.push(format!("route {addr} dev {} scope link proto 76 missing", link.name));
                    }
                }
            }
        }

        let ns = netns::open(&spec.netns)?;
        let pod = netns::netlink_in_file(&ns, &spec.netns, &self.rt)?;
        let in_pod = pod.where_();
        let Some(link) = pod.link_get(&spec.container_ifname).await? else {
            problems.push(format!("interface {}{in_pod} missing", spec.container_ifname));
            return Err(CheckError::Mismatch(problems));
        };
        check_link(&mut problems, &link, spec.mtu, &in_pod);
        if let Some(host) = &host_link {
            if link.peer_index != Some(host.index) {
                problems.push(format!("{}{in_pod} is not the peer of {}", link.name, host.name));
            }
        }
        let addresses = pod.addr_list(link.index, &link.name).await?;
        for addr in &spec.addresses {
            if !addresses.contains(addr) {
                problems.push(format!("address {addr} dev {}{in_pod} missing", link.name));
            }
        }
        let routes = pod.route_dump().await?;
        let gateway = IpNet::V4(Ipv4Net::from(POD_GATEWAY_V4));
        let on_link = |r: &Route| r.is_ours() && r.oif == Some(link.index);
        if !routes
            .iter()
            .any(|r| on_link(r) && r.is_pod_route() && r.dst == gateway)
        {
            problems.push(format!(
                "route {gateway} dev {} scope link proto 76{in_pod} missing",
                link.name
            ));
        }
        let default = IpNet::V4(Ipv4Net::default());
        let via = Some(POD_GATEWAY_V4.into());
        if !routes
            .iter()
            .any(|r| on_link(r) && r.dst == default && r.gateway == via)
        {
            problems.push(format!(
                "route default via {POD_GATEWAY_V4} dev {} proto 76{in_pod} missing",
                link.name
            ));
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(CheckError::Mismatch(problems))
        }
    }
}

fn check_link(problems: &mut Vec<String>, link: &Link, mtu: u32, in_ns: &str) {
    if !link.is_veth {
        problems.push(format!("{}{in_ns} is not a veth", link.name));
    }
    if !link.up {
        problems.push(format!("{}{in_ns} is down", link.name));
    }
    if link.mtu != Some(mtu) {
        problems.push(format!("{}{in_ns} has mtu {:?}, want {mtu}", link.name, link.mtu));
    }
}
