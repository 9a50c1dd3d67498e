//! OVSDB remotes in the `ovs-vsctl --db=` notation: `unix:PATH` and `tcp:HOST:PORT`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where an OVSDB server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `unix:/run/openvswitch/db.sock`
    Unix(PathBuf),
    /// `tcp:192.168.122.10:6641` or `tcp:[::1]:6641`; the host may be a name.
    Tcp { host: String, port: u16 },
}

impl Remote {
    /// Parses `unix:PATH` or `tcp:HOST:PORT` (IPv6 hosts in brackets). `ssl:` and the passive
    /// forms (`punix:`, `ptcp:`) are refused: a client connects actively and Lanes has no TLS.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidRemote {
            remote: s.to_string(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            // ovs tools resolve relative unix paths against OVS_RUNDIR, not the cwd; refuse
            // them rather than guess.
            if !path.starts_with('/') {
                return Err(bad("unix socket path must be absolute"));
            }
            return Ok(Remote::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
                let (h, p) = v6.split_once("]:").ok_or_else(|| bad("expected tcp:[V6ADDR]:PORT"))?;
                (h, p)
            } else {
                rest.rsplit_once(':').ok_or_else(|| bad("expected tcp:HOST:PORT"))?
            };
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            let port = port.parse::<u16>().map_err(|_| bad("port is not a number 0-65535"))?;
            return Ok(Remote::Tcp {
                host: host.to_string(),
                port,
            });
        }
        if s.starts_with("ssl:") {
            return Err(bad("ssl remotes are not supported"));
        }
        Err(bad("expected unix:PATH or tcp:HOST:PORT"))
    }
}

impl std::str::FromStr for Remote {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Remote::parse(s)
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
            Remote::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Remote::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_tcp() {
        assert_eq!(
            Remote::parse("unix:/run/ovs/db.sock").unwrap(),
            Remote::Unix("/run/ovs/db.sock".into())
        );
        assert_eq!(
            Remote::parse("tcp:192.168.122.10:6641").unwrap(),
            Remote::Tcp {
                host: "192.168.122.10".into(),
                port: 6641
            }
        );
        assert_eq!(
            Remote::parse("tcp:[::1]:6642").unwrap(),
            Remote::Tcp {
                host: "::1".into(),
                port: 6642
            }
        );
        assert_eq!(Remote::parse("tcp:[::1]:6642").unwrap().to_string(), "tcp:[::1]:6642");
        assert_eq!(Remote::parse("unix:/a").unwrap().to_string(), "unix:/a");
    }

    #[test]
    fn refuses_what_it_cannot_connect_to() {
        for bad in [
            "unix:",
            "unix:rel/db.sock",
            "tcp:host",
            "tcp::1",
            "tcp:h:99999",
            "ssl:h:1",
            "ptcp:6641",
            "x",
        ] {
            let e = Remote::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
