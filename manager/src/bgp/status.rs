//! Parsers for BIRD 2's `show protocols all`, `show route [all]` and `show route count`, and the
//! `calicoctl node status` view of the BGP sessions. Pure: they take the text `birdc` would print
//! (see [`reply_text`](super::birdctl::reply_text)) and never fail; lines they do not know are
//! skipped, so a newer BIRD that adds fields still parses.
//!
//! The fixtures in `testdata/` are real BIRD 2.0.12 output, captured from two BIRD instances in
//! network namespaces (`capture_a.conf`, `capture_b.conf`; see `status_tests.rs`).

use serde::{Deserialize, Serialize};

/// One protocol from `show protocols all` (or plain `show protocols`: then only the summary).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtocolStatus {
    /// `Mesh_10_0_0_2`, `kernel4`, …
    pub name: String,
    /// `BGP`, `Kernel`, `Static`, `Device`, `Direct`.
    pub proto: String,
    /// The main channel's table, `---` for protocols without one (BGP, Device).
    pub table: String,
    /// BIRD's protocol state: `up`, `down`, `start`, `stop` (or `flush`).
    pub state: String,
    /// The time of the last state change, as BIRD printed it (`timeformat protocol`).
    pub since: String,
    /// The rest of the summary line, whitespace collapsed: `Established`,
    /// `Active Socket: Connection refused`, `Idle Received: Bad peer AS`.
    pub info: String,
    /// The `BGP state:` block, for BGP protocols.
    pub bgp: Option<BgpStatus>,
    pub channels: Vec<ChannelStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// `Established`, `Active`, `Connect`, `Idle`, `OpenSent`, `OpenConfirm`, `Passive`, `Down`.
    pub state: String,
    pub neighbor_address: Option<String>,
    pub neighbor_as: Option<u32>,
    pub local_as: Option<u32>,
    pub neighbor_id: Option<String>,
    /// e.g. `internal multihop AS4`, `external AS4`.
    pub session: Option<String>,
    pub source_address: Option<String>,
    /// e.g. `Socket: Connection refused`, `Received: Bad peer AS`.
    pub last_error: Option<String>,
    pub hold_timer: Option<Timer>,
    pub keepalive_timer: Option<Timer>,
}

/// A running BGP timer, `Hold timer: 204.707/240`: seconds left of the configured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub remaining: f64,
    pub configured: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// `ipv4`, `ipv6`.
    pub name: String,
    /// `UP`, `DOWN`, `START`, `FEED`, `FLUSH`.
    pub state: String,
    pub table: String,
    /// From `Routes: 2 imported, 4 exported, 1 preferred`; absent while the channel is down.
    pub routes: Option<RouteStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStats {
    pub imported: u64,
    /// Only printed by BIRD when non-zero or with `import keep filtered`.
    pub filtered: u64,
    pub exported: u64,
    pub preferred: u64,
}

impl ProtocolStatus {
    /// Route counts summed over all channels (a BGP session may carry ipv4 and ipv6).
    pub fn routes(&self) -> RouteStats {
        self.channels
            .iter()
            .filter_map(|c| c.routes)
            .fold(RouteStats::default(), |a, r| RouteStats {
                imported: a.imported + r.imported,
                filtered: a.filtered + r.filtered,
                exported: a.exported + r.exported,
                preferred: a.preferred + r.preferred,
            })
    }
}

/// Parse `show protocols` or `show protocols all`.
pub fn parse_protocols(text: &str) -> Vec<ProtocolStatus> {
    let mut out: Vec<ProtocolStatus> = Vec::new();
    // Which block of the current protocol the indented lines belong to.
    enum Block {
        None,
        Bgp,
        Channel,
    }
    let mut block = Block::None;
    for line in text.lines() {
        if line.trim().is_empty() || is_banner(line) || line.starts_with("Name ") {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            if let Some(p) = parse_summary(line) {
                out.push(p);
            }
            block = Block::None;
            continue;
        }
        let Some(p) = out.last_mut() else { continue };
        let trimmed = line.trim();
        if indent == 2 {
            if let Some(name) = trimmed.strip_prefix("Channel ") {
                p.channels.push(ChannelStatus {
                    name: name.trim().to_string(),
                    ..Default::default()
                });
                block = Block::Channel;
            } else if let Some(state) = trimmed.strip_prefix("BGP state:") {
                p.bgp = Some(BgpStatus {
                    state: state.trim().to_string(),
                    ..Default::default()
                });
                block = Block::Bgp;
            } else {
                block = Block::None;
            }
            continue;
        }
        // Only the block's own keys (indent 4); deeper lines are capabilities and stats tables.
        let (4, Some((key, value))) = (indent, trimmed.split_once(':')) else {
            continue;
        };
        let value = value.trim();
        match block {
            Block::Bgp => {
                let Some(b) = p.bgp.as_mut() else { continue };
                match key {
                    "Neighbor address" => b.neighbor_address = Some(value.to_string()),
                    "Neighbor AS" => b.neighbor_as = value.parse().ok(),
                    "Local AS" => b.local_as = value.parse().ok(),
                    "Neighbor ID" => b.neighbor_id = Some(value.to_string()),
                    "Session" => b.session = Some(value.to_string()),
                    "Source address" => b.source_address = Some(value.to_string()),
                    "Last error" => b.last_error = Some(value.to_string()),
                    "Hold timer" => b.hold_timer = parse_timer(value),
                    "Keepalive timer" => b.keepalive_timer = parse_timer(value),
                    _ => {}
                }
            }
            Block::Channel => {
                let Some(c) = p.channels.last_mut() else { continue };
                match key {
                    "State" => c.state = value.to_string(),
                    "Table" => c.table = value.to_string(),
                    "Routes" => c.routes = Some(parse_route_stats(value)),
                    _ => {}
                }
            }
            Block::None => {}
        }
    }
    out
}

fn is_banner(line: &str) -> bool {
    line.starts_with("BIRD ") && line.trim_end().ends_with("ready.")
}

/// `name proto table state since  info`: BIRD prints `%-10s %-10s %-10s %-6s %-12s  %s`, so the
/// first four fields never contain spaces, and `since` (which may, with `timeformat "%F %T"`)
/// is followed by at least two spaces.
fn parse_summary(line: &str) -> Option<ProtocolStatus> {
    let mut rest = line;
    let mut fields = [""; 4];
    for f in &mut fields {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        *f = &t[..end];
        rest = &t[end..];
    }
    if fields.iter().any(|f| f.is_empty()) {
        return None;
    }
    let rest = rest.trim_start();
    let (since, info) = rest.split_once("  ").unwrap_or((rest, ""));
    Some(ProtocolStatus {
        name: fields[0].to_string(),
        proto: fields[1].to_string(),
        table: fields[2].to_string(),
        state: fields[3].to_string(),
        since: since.trim().to_string(),
        info: info.split_whitespace().collect::<Vec<_>>().join(" "),
        ..Default::default()
    })
}

fn parse_timer(value: &str) -> Option<Timer> {
    let (remaining, configured) = value.split_once('/')?;
    Some(Timer {
        remaining: remaining.trim().parse().ok()?,
        configured: configured.trim().parse().ok()?,
    })
}

/// `2 imported, 1 filtered, 4 exported, 1 preferred`
fn parse_route_stats(value: &str) -> RouteStats {
    let mut s = RouteStats::default();
    for part in value.split(',') {
        let mut words = part.split_whitespace();
        let (Some(Ok(n)), Some(what)) = (words.next().map(str::parse::<u64>), words.next()) else {
            continue;
        };
        match what {
            "imported" => s.imported = n,
            "filtered" => s.filtered = n,
            "exported" => s.exported = n,
            "preferred" => s.preferred = n,
            _ => {}
        }
    }
    s
}

/// One route from `show route [all]`. A network with several routes (from several protocols)
/// gives several `Route`s with the same prefix; only the one with `primary` is the best.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `master4`, `master6`.
    pub table: String,
    pub prefix: String,
    /// `unicast`, `blackhole`, `unreachable`, `prohibit`.
    pub kind: String,
    pub protocol: String,
    /// When the route changed last, as BIRD printed it (`timeformat route`).
    pub since: String,
    /// The BGP neighbor it came from when that differs from the next hop (`from 10.0.0.1`).
    pub from: Option<String>,
    /// `*`: the preferred route for the network.
    pub primary: bool,
    pub preference: Option<u32>,
    /// The bracketed BGP summary, e.g. `AS64512i`, `i`.
    pub bgp: Option<String>,
    /// Several for ECMP.
    pub next_hops: Vec<NextHop>,
    /// `show route all` only: (`Type`, `BGP univ`), (`BGP.as_path`, `64512`), …
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub gateway: Option<String>,
    pub interface: Option<String>,
    pub weight: Option<u32>,
}

/// Parse `show route [all] [table …] [protocol …]`.
pub fn parse_routes(text: &str) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let mut table = String::new();
    let mut prefix = String::new();
    for line in text.lines() {
        if line.trim().is_empty() || is_banner(line) {
            continue;
        }
        if let Some(t) = line.strip_prefix("Table ") {
            table = t.trim_end().trim_end_matches(':').to_string();
            continue;
        }
        if line.starts_with('\t') {
            let Some(r) = out.last_mut() else { continue };
            let l = line.trim();
            if l.starts_with("via ") || l.starts_with("dev ") {
                r.next_hops.push(parse_next_hop(l));
            } else if let Some((k, v)) = l.split_once(':') {
                r.attributes.push((k.to_string(), v.trim().to_string()));
            }
            continue;
        }
        // A route line; an indented one continues the previous network (another route to it).
        if !line.starts_with(' ') {
            prefix = line.split_whitespace().next().unwrap_or_default().to_string();
        }
        if let Some(mut r) = parse_route_line(line.trim()) {
            r.table = table.clone();
            r.prefix = prefix.clone();
            out.push(r);
        }
    }
    out
}

/// `10.0.0.0/26  unicast [Mesh_10_0_0_1 12:57:49.854 from 10.0.0.1] * (100) [AS64512i]`, with
/// or without the prefix in front.
fn parse_route_line(line: &str) -> Option<Route> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let head: Vec<&str> = line[..open].split_whitespace().collect();
    let kind = head.last()?.to_string();
    let mut inner = line[open + 1..close].split_whitespace();
    let protocol = inner.next()?.to_string();
    let rest: Vec<&str> = inner.collect();
    let (since, from) = match rest.iter().position(|w| *w == "from") {
        Some(i) => (rest[..i].join(" "), rest.get(i + 1).map(|s| s.to_string())),
        None => (rest.join(" "), None),
    };
    let tail = &line[close + 1..];
    let preference = tail
        .split_once('(')
        .and_then(|(_, p)| p.split([')', '/']).next())
        .and_then(|p| p.trim().parse().ok());
    let bgp = tail
        .rfind('[')
        .and_then(|i| tail[i + 1..].split(']').next())
        .map(str::to_string);
    Some(Route {
        kind,
        protocol,
        since,
        from,
        primary: tail.split_whitespace().next() == Some("*"),
        preference,
        bgp,
        ..Default::default()
    })
}

/// `via 10.0.0.1 on eth0 weight 1` or `dev eth0`.
fn parse_next_hop(line: &str) -> NextHop {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    NextHop {
        gateway: after("via").map(str::to_string),
        interface: after("on").or_else(|| after("dev")).map(str::to_string),
        weight: after("weight").and_then(|w| w.parse().ok()),
    }
}

/// `show route count`: one entry per table, and BIRD's total line when it printed one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCount {
    pub tables: Vec<TableCount>,
    pub total: Option<TableCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Empty for the total.
    pub table: String,
    /// Routes that passed the command's filters (`4 of 12 routes`: 4).
    pub routes: u64,
    /// All routes in the table (`4 of 12 routes`: 12).
    pub total_routes: u64,
    pub networks: u64,
}

/// Parse `12 of 12 routes for 10 networks in table master4` lines and the `Total: …` line.
pub fn parse_route_count(text: &str) -> RouteCount {
    let mut out = RouteCount::default();
    for line in text.lines() {
        let (is_total, l) = match line.trim().strip_prefix("Total:") {
            Some(rest) => (true, rest.trim()),
            None => (false, line.trim()),
        };
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 6 || w[1] != "of" || w[3] != "routes" || w[4] != "for" {
            continue;
        }
        let (Ok(routes), Ok(total_routes), Ok(networks)) = (w[0].parse(), w[2].parse(), w[5].parse()) else {
            continue;
        };
        let table = match w.iter().position(|x| *x == "table") {
            Some(i) if !is_total => w.get(i + 1).unwrap_or(&"").to_string(),
            _ => String::new(),
        };
        let c = TableCount {
            table,
            routes,
            total_routes,
            networks,
        };
        if is_total {
            out.total = Some(c);
        } else {
            out.tables.push(c);
        }
    }
    out
}

/// One row of `calicoctl node status`: PEER ADDRESS | PEER TYPE | STATE | SINCE | INFO, plus the
/// prefix counts Calico does not show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRow {
    /// The BIRD protocol, e.g. `Mesh_10_0_0_2`.
    pub name: String,
    pub peer_address: String,
    /// `node-to-node mesh`, `node specific`, `global`.
    pub peer_type: String,
    /// `up`, `down`, `start`.
    pub state: String,
    pub since: String,
    pub info: String,
    pub ipv6: bool,
    /// The peer's AS, when BIRD printed it (`show protocols all`).
    pub remote_as: Option<u32>,
    pub routes_imported: u64,
    pub routes_exported: u64,
}

/// The BGP sessions lanesd configured (names `Mesh_…`, `Node_…`, `Global_…`, as Calico names
/// them), as `calicoctl node status` lists them. Other protocols are left out.
pub fn peer_rows(protocols: &[ProtocolStatus]) -> Vec<PeerRow> {
    protocols
        .iter()
        .filter(|p| p.proto == "BGP")
        .filter_map(|p| {
            let (peer_type, rest) = [
                ("Mesh_", "node-to-node mesh"),
                ("Node_", "node specific"),
                ("Global_", "global"),
            ]
            .iter()
            .find_map(|(prefix, t)| p.name.strip_prefix(prefix).map(|rest| (*t, rest)))?;
            let peer_address = p
                .bgp
                .as_ref()
                .and_then(|b| b.neighbor_address.clone())
                .unwrap_or_else(|| address_from_name(rest));
            let routes = p.routes();
            Some(PeerRow {
                name: p.name.clone(),
                ipv6: peer_address.contains(':'),
                remote_as: p.bgp.as_ref().and_then(|b| b.neighbor_as),
                peer_address,
                peer_type: peer_type.to_string(),
                state: p.state.clone(),
                since: p.since.clone(),
                info: p.info.clone(),
                routes_imported: routes.imported,
                routes_exported: routes.exported,
            })
        })
        .collect()
}

/// Calico's naming turned back into an address: `10_0_0_1` → `10.0.0.1`, `fd00__1` → `fd00::1`,
/// dropping a `_port_N` suffix. Used when BIRD did not print the neighbor (plain `show protocols`).
pub fn address_from_name(rest: &str) -> String {
    let id = rest.split("_port_").next().unwrap_or(rest);
    let parts: Vec<&str> = id.split('_').collect();
    let is_v4 = parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok());
    id.replace('_', if is_v4 { "." } else { ":" })
}

/// The kernel's TCP MD5 counters of this network namespace (`/proc/net/netstat`, `TcpExt:`):
/// segments dropped for a wrong signature, a missing one, or an unexpected one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Md5Counters {
    pub failure: u64,
    pub not_found: u64,
    pub unexpected: u64,
}

/// Reads [`Md5Counters`] from the text of `/proc/net/netstat` (a header line and a value line
/// per group). Missing counters read as 0.
pub fn parse_md5_counters(netstat: &str) -> Md5Counters {
    let mut lines = netstat.lines();
    let mut c = Md5Counters::default();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some(names), Some(values)) = (names.strip_prefix("TcpExt:"), values.strip_prefix("TcpExt:")) else {
            continue;
        };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let v = value.parse().unwrap_or(0);
            match name {
                "TCPMD5Failure" => c.failure = v,
                "TCPMD5NotFound" => c.not_found = v,
                "TCPMD5Unexpected" => c.unexpected = v,
                _ => {}
            }
        }
    }
    c
}

/// BIRD cannot tell a TCP MD5 mismatch from a silent peer: the kernel drops the segments. For a
/// session with a password that is not up, say so in INFO, with the kernel's counters (they
/// only grow while a signature is wrong or missing on one side).
pub fn md5_hint(row: &PeerRow, counters: Md5Counters) -> Option<String> {
    if row.state == "up" {
        return None;
    }
    let dropped = counters.failure + counters.not_found + counters.unexpected;
    Some(if dropped > 0 {
        format!(
            "TCP MD5 password set, kernel dropped {dropped} segments for a bad or missing \
             signature (TCPMD5Failure {}, NotFound {}, Unexpected {}): passwords likely differ",
            counters.failure, counters.not_found, counters.unexpected
        )
    } else {
        "TCP MD5 password set, no signature failures seen yet".to_string()
    })
}

#[cfg(test)]
mod tests;
