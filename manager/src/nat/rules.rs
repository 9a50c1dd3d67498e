//! Pure rendering of the `natOutgoing` tables as an `nft -j` batch (libnftables-json).

use std::fmt::Write as _;

use ipnet::IpNet;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Our table, in both families: `table ip lanes`, `table ip6 lanes`.
pub const TABLE: &str = "lanes";
/// The base chain: `type nat hook postrouting priority srcnat`.
pub const CHAIN: &str = "postrouting";
/// Every pool CIDR, for the "not to a pool" test.
pub const POOLS_SET: &str = "lanes-pools";
/// The CIDRs of pools with `natOutgoing`.
pub const MASQ_SET: &str = "lanes-masq-pools";
/// `srcnat` (NF_IP_PRI_NAT_SRC) as a number, which every version of the JSON parser takes.
pub const SRCNAT_PRIORITY: i32 = 100;
/// The start of the masquerade rule's comment; the digest of the family's state follows.
pub const COMMENT_PREFIX: &str = "lanes natOutgoing sha256:";

/// What the rules need of one `IPPool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatPool {
    pub cidr: IpNet,
    pub nat_outgoing: bool,
}

/// An nftables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ip,
    Ip6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ip, Family::Ip6];

    /// `ip` / `ip6`: the table family and the payload protocol.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    fn set_type(self) -> &'static str {
        match self {
            Family::Ip => "ipv4_addr",
            Family::Ip6 => "ipv6_addr",
        }
    }
}

/// The state of one family's table: both sets, aggregated (no overlaps, which an interval
/// set refuses) and sorted. `masq` is never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRules {
    pub family: Family,
    pub pools: Vec<IpNet>,
    pub masq: Vec<IpNet>,
}

/// The whole wanted state: `None` for a family means "no table".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatRules {
    pub v4: Option<FamilyRules>,
    pub v6: Option<FamilyRules>,
}

impl NatRules {
    /// Derives the state from the pools; a family without a `natOutgoing` pool gets no table.
    pub fn from_pools(pools: &[NatPool]) -> NatRules {
        let (mut v4, mut v6): (Vec<&NatPool>, Vec<&NatPool>) = (Vec::new(), Vec::new());
        for pool in pools {
            match pool.cidr {
                IpNet::V4(_) => v4.push(pool),
                IpNet::V6(_) => v6.push(pool),
            }
        }
        NatRules {
            v4: family_rules(Family::Ip, &v4),
            v6: family_rules(Family::Ip6, &v6),
        }
    }

    /// The wanted state of `family`.
    pub fn get(&self, family: Family) -> Option<&FamilyRules> {
        match family {
            Family::Ip => self.v4.as_ref(),
            Family::Ip6 => self.v6.as_ref(),
        }
    }
}

fn family_rules(family: Family, pools: &[&NatPool]) -> Option<FamilyRules> {
    let masq = aggregate(pools.iter().filter(|p| p.nat_outgoing).map(|p| p.cidr));
    if masq.is_empty() {
        return None;
    }
    Some(FamilyRules {
        family,
        pools: aggregate(pools.iter().map(|p| p.cidr)),
        masq,
    })
}

/// Normalises, merges and sorts CIDRs of one family (`IpNet::aggregate`).
fn aggregate(cidrs: impl Iterator<Item = IpNet>) -> Vec<IpNet> {
    IpNet::aggregate(&cidrs.map(|c| c.trunc()).collect())
}

impl FamilyRules {
    /// Identifies this state: the first 16 hex digits of the SHA-256 of the table's JSON
    /// (without the comment). Kept in the rule's comment, so `nft` need not be re-run when the
    /// loaded table already has it.
    pub fn digest(&self) -> String {
        let body = self.objects(None).to_string();
        Sha256::digest(body.as_bytes())
            .iter()
            .take(8)
            .fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            })
    }

    /// The comment carried by the masquerade rule.
    pub fn comment(&self) -> String {
        format!("{COMMENT_PREFIX}{}", self.digest())
    }

    /// The `add` commands of the table's contents (chain, sets, rule).
    fn objects(&self, comment: Option<String>) -> Value {
        let family = self.family.name();
        let set = |name: &str, cidrs: &[IpNet]| {
            let mut set = json!({
                "family": family, "table": TABLE, "name": name,
                "type": self.family.set_type(), "flags": ["interval"],
            });
            if !cidrs.is_empty() {
                let elem: Vec<Value> = cidrs
                    .iter()
                    .map(|c| json!({"prefix": {"addr": c.network().to_string(), "len": c.prefix_len()}}))
                    .collect();
                set["elem"] = Value::Array(elem);
            }
            json!({"add": {"set": set}})
        };
        let field = |name: &str| json!({"payload": {"protocol": family, "field": name}});
        let mut rule = json!({
            "family": family, "table": TABLE, "chain": CHAIN,
            "expr": [
                {"match": {"op": "==", "left": field("saddr"), "right": format!("@{MASQ_SET}")}},
                {"match": {"op": "!=", "left": field("daddr"), "right": format!("@{POOLS_SET}")}},
                {"counter": {"packets": 0, "bytes": 0}},
                {"masquerade": {"flags": "fully-random"}},
            ],
        });
        if let Some(comment) = comment {
            rule["comment"] = Value::String(comment);
        }
        json!([
            {"add": {"chain": {
                "family": family, "table": TABLE, "name": CHAIN,
                "type": "nat", "hook": "postrouting", "prio": SRCNAT_PRIORITY, "policy": "accept",
            }}},
            set(POOLS_SET, &self.pools),
            set(MASQ_SET, &self.masq),
            {"add": {"rule": rule}},
        ])
    }
}

/// `{"family": ..., "name": "lanes"}`.
fn table(family: Family) -> Value {
    json!({"table": {"family": family.name(), "name": TABLE}})
}

/// The batch for `nft -j -f -` that makes both tables match `rules`, as one transaction:
/// per family `add table` (so the delete cannot fail), `delete table`, and, when wanted,
/// `add table` again with its contents. Only the families in `families` are touched.
pub fn render(rules: &NatRules, families: &[Family]) -> Value {
    let mut commands = vec![json!({"metainfo": {"json_schema_version": 1}})];
    for &family in families {
        commands.push(json!({"add": table(family)}));
        commands.push(json!({"delete": table(family)}));
        if let Some(state) = rules.get(family) {
            commands.push(json!({"add": table(family)}));
            if let Value::Array(objects) = state.objects(Some(state.comment())) {
                commands.extend(objects);
            }
        }
    }
    json!({ "nftables": commands })
}

/// The batch that deletes both tables (`nft delete table ip lanes; nft delete table ip6
/// lanes`), whether they exist or not.
pub fn render_remove() -> Value {
    render(&NatRules::default(), &Family::ALL)
}

/// The digest comment of our masquerade rule in an `nft -j list table` reply, if any.
pub fn loaded_digest(listing: &Value) -> Option<String> {
    let objects = listing.get("nftables")?.as_array()?;
    objects.iter().find_map(|o| {
        let rule = o.get("rule")?;
        (rule.get("chain")? == CHAIN).then_some(())?;
        let comment = rule.get("comment")?.as_str()?;
        comment.strip_prefix(COMMENT_PREFIX).map(str::to_string)
    })
}
