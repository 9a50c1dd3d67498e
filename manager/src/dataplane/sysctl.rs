//! `/proc/sys` reads and writes.
//!
//! `/proc/sys/net` shows the netns of the thread that opens the file, so these functions act on
//! the calling thread's netns: the node's when called from the daemon's runtime, a pod's when
//! called inside [`super::netns::run_in`]. Keys are paths relative to `/proc/sys` with `/`
//! separators, not dotted names, because interface names may contain dots (`eth0.100`).

use std::io;

use super::{validate_ifname, Error, Result};

const PROC_SYS: &str = "/proc/sys";

/// `sysctl -n <key>` (e.g. `net/ipv4/ip_forward`), trimmed.
pub fn read(key: &str) -> Result<String> {
    let path = format!("{PROC_SYS}/{key}");
    std::fs::read_to_string(&path)
        .map(|value| value.trim().to_string())
        .map_err(|source| Error::Sysctl {
            op: format!("read {path}"),
            source,
        })
}

/// `sysctl -w <key>=<value>`, unconditionally (one open + write: the fast path for fresh
/// interfaces, whose values are known defaults).
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = format!("{PROC_SYS}/{key}");
    std::fs::write(&path, value).map_err(|source| Error::Sysctl {
        op: format!("write {value} to {path}"),
        source,
    })
}

/// `sysctl -w <key>=<value>` only if the value differs; returns whether it wrote.
///
/// Reading first keeps this working where `/proc/sys` is read-only (a daemon in a container)
/// as long as the value is already right, and avoids needless writes to global knobs.
pub fn ensure(key: &str, value: &str) -> Result<bool> {
    if read(key)? == value {
        return Ok(false);
    }
    write(key, value).map(|()| true)
}

/// `sysctl -w net.ipv4.conf.<ifname>.proxy_arp=1`: the host veth answers the pod's ARP for
/// 169.254.1.1 (indeed for anything it has a route to) with its own MAC.
pub fn enable_proxy_arp(ifname: &str) -> Result<()> {
    validate_ifname("interface name", ifname)?;
    write(&format!("net/ipv4/conf/{ifname}/proxy_arp"), "1")
}

/// `sysctl -w net.ipv4.neigh.<ifname>.proxy_delay=0`: answer proxy ARP at once. The default
/// delays replies by up to 0.8 s, which would stall the pod's first connection (Calico does
/// the same).
pub fn disable_proxy_delay(ifname: &str) -> Result<()> {
    validate_ifname("interface name", ifname)?;
    write(&format!("net/ipv4/neigh/{ifname}/proxy_delay"), "0")
}

/// `sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1` in the calling thread's
/// netns, writing only what differs. IPv6 being disabled (no `/proc/sys/net/ipv6`) is fine.
pub fn ensure_ip_forwarding() -> Result<()> {
    ensure("net/ipv4/ip_forward", "1")?;
    match ensure("net/ipv6/conf/all/forwarding", "1") {
        Err(Error::Sysctl { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path() {
        let err = read("net/ipv4/conf/lanes-nope/proxy_arp").unwrap_err();
        assert_eq!(err.errno(), Some(2));
        assert!(
            err.to_string()
                .starts_with("read /proc/sys/net/ipv4/conf/lanes-nope/proxy_arp: "),
            "{err}"
        );
    }

    #[test]
    fn interface_names_cannot_escape_proc_sys() {
        assert!(matches!(enable_proxy_arp("../../kernel"), Err(Error::Invalid(_))));
        assert!(matches!(disable_proxy_delay(""), Err(Error::Invalid(_))));
    }
}
