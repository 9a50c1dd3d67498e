//! The address fields of a NAD config: `subnets`, `excludeSubnets` and `gateway`.
//!
//! `subnets` and `excludeSubnets` come as ovn-kubernetes writes them, one comma-separated string
//! (`"10.144.0.0/16,fd00::/64"`, blank for none), or as a JSON list; either way the items' paths
//! are `subnets[1]`. CIDRs are masked as Go's `net.ParseCIDR` masks them (`10.144.0.1/16` reads
//! as `10.144.0.0/16`).

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde_json::Value;

use crate::resources::meta::{show, FieldError, Obj};

/// A CIDR list: ovn-kubernetes' comma-separated string (`"10.0.0.0/16, fd00::/64"`; blank is
/// none) or a JSON list. Each item is paired with its path, `subnets[1]` in both forms.
fn cidr_list(plugin: &Obj<'_>, key: &str) -> Result<Vec<(String, IpNet)>, FieldError> {
    let path = plugin.path_of(key);
    let items: Vec<(String, String)> = match plugin.get(key) {
        None => Vec::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::String(s)) => s
            .split(',')
            .enumerate()
            .map(|(i, item)| (format!("{path}[{i}]"), item.trim().to_string()))
            .collect(),
        Some(Value::Array(_)) => plugin
            .list(key)?
            .into_iter()
            .map(|(p, v)| match v {
                Value::String(s) => Ok((p, s.trim().to_string())),
                other => Err(FieldError::new(p, show(other), "expected a CIDR string")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(FieldError::new(
                path,
                show(other),
                "expected a comma-separated string or a list of CIDRs",
            ))
        }
    };
    items
        .into_iter()
        .map(|(p, s)| match IpNet::from_str(&s) {
            Ok(net) => Ok((p, net.trunc())),
            Err(_) => Err(FieldError::new(p, s, "expected a CIDR such as 10.144.0.0/16")),
        })
        .collect()
}

pub(super) fn subnets(plugin: &Obj<'_>) -> Result<Vec<IpNet>, FieldError> {
    let list = cidr_list(plugin, "subnets")?;
    for (i, (path, net)) in list.iter().enumerate() {
        let max = if net.addr().is_ipv4() { 30 } else { 126 };
        if net.prefix_len() > max {
            return Err(FieldError::new(
                path,
                net.to_string(),
                format!("too small: at most /{max}"),
            ));
        }
        if let Some((other_path, other)) = list[..i].iter().find(|(_, o)| o.contains(net) || net.contains(o)) {
            return Err(FieldError::new(
                path,
                net.to_string(),
                format!("overlaps {other_path} ({other})"),
            ));
        }
    }
    // A layer2 OVN switch has one `subnet` for its IPAM, and pods' secondary interfaces are
    // wired IPv4-only for now: refuse what would otherwise be dropped without a word.
    for (i, (path, net)) in list.iter().enumerate() {
        if net.addr().is_ipv6() {
            return Err(FieldError::new(
                path,
                net.to_string(),
                "IPv6 subnets on secondary networks are not supported yet",
            ));
        }
        if i > 0 {
            return Err(FieldError::new(
                path,
                net.to_string(),
                "more than one subnet per network is not supported yet",
            ));
        }
    }
    Ok(list.into_iter().map(|(_, n)| n).collect())
}

pub(super) fn exclude_subnets(plugin: &Obj<'_>, subnets: &[IpNet]) -> Result<Vec<IpNet>, FieldError> {
    let list = cidr_list(plugin, "excludeSubnets")?;
    for (path, net) in &list {
        if !subnets.iter().any(|s| s.contains(net)) {
            let have: Vec<String> = subnets.iter().map(IpNet::to_string).collect();
            let reason = if have.is_empty() {
                "there are no subnets to exclude from".to_string()
            } else {
                format!("not inside any subnet ({})", have.join(", "))
            };
            return Err(FieldError::new(path, net.to_string(), reason));
        }
    }
    Ok(list.into_iter().map(|(_, n)| n).collect())
}

/// The first host address of `net` (`10.144.0.1` for `10.144.0.0/16`).
pub fn first_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(u32::from(n.network()).saturating_add(1).into()),
        IpNet::V6(n) => IpAddr::V6(u128::from(n.network()).saturating_add(1).into()),
    }
}

/// Whether `ip` is `net`'s network address, or its broadcast address for IPv4.
pub fn is_reserved_address(net: &IpNet, ip: IpAddr) -> bool {
    ip == net.network() || (net.addr().is_ipv4() && ip == net.broadcast())
}

pub(super) fn gateway(plugin: &Obj<'_>, subnets: &[IpNet]) -> Result<Option<IpAddr>, FieldError> {
    let path = plugin.path_of("gateway");
    let gw = match plugin.get("gateway") {
        None | Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {
            return match subnets.first() {
                Some(net) => Ok(Some(first_host(net))),
                None => Err(FieldError::new(
                    path,
                    "true",
                    "needs subnets to take the first address from",
                )),
            }
        }
        Some(Value::String(s)) => {
            IpAddr::from_str(s.trim()).map_err(|_| FieldError::new(&path, s, "expected an IP address"))?
        }
        Some(other) => return Err(FieldError::new(path, show(other), "expected an IP address or true")),
    };
    match subnets.iter().find(|s| s.contains(&gw)) {
        Some(net) if is_reserved_address(net, gw) => Err(FieldError::new(
            path,
            gw.to_string(),
            format!("is the network or broadcast address of {net}"),
        )),
        Some(_) => Ok(Some(gw)),
        None => Err(FieldError::new(path, gw.to_string(), "not inside any subnet")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Fields = (Vec<IpNet>, Vec<IpNet>, Option<IpAddr>);

    fn read(config: Value) -> Result<Fields, FieldError> {
        let o = Obj::new("c", Some(&config))?;
        let nets = subnets(&o)?;
        Ok((nets.clone(), exclude_subnets(&o, &nets)?, gateway(&o, &nets)?))
    }

    #[test]
    fn both_list_forms_read_alike() {
        let text = read(json!({"subnets": " 10.0.0.1/16 ", "gateway": true})).unwrap();
        let list = read(json!({"subnets": ["10.0.0.0/16"], "gateway": "10.0.0.1"})).unwrap();
        assert_eq!(text, list);
        assert_eq!(text.0[0].to_string(), "10.0.0.0/16");
        assert_eq!(read(json!({"subnets": ""})).unwrap(), (vec![], vec![], None));
        let e = read(json!({"subnets": "10.0.0.0/16,"})).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("c.subnets[1]", ""));
        assert_eq!(read(json!({"subnets": 5})).unwrap_err().field, "c.subnets");
    }

    #[test]
    fn first_and_reserved_addresses() {
        let v4: IpNet = "10.144.0.0/16".parse().unwrap();
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(first_host(&v4).to_string(), "10.144.0.1");
        assert_eq!(first_host(&v6).to_string(), "fd00::1");
        assert!(is_reserved_address(&v4, "10.144.0.0".parse().unwrap()));
        assert!(is_reserved_address(&v4, "10.144.255.255".parse().unwrap()));
        assert!(!is_reserved_address(&v4, "10.144.0.1".parse().unwrap()));
        assert!(is_reserved_address(&v6, "fd00::".parse().unwrap()));
        assert!(!is_reserved_address(&v6, "fd00::ffff:ffff:ffff:ffff".parse().unwrap()));
    }
}
