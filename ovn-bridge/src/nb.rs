//! Typed, idempotent operations on `OVN_Northbound` (what `ovn-nbctl` does).
//!
//! The switches, ports and routers Lanes creates are Lanes' own, so `ensure_*` sets their
//! columns exactly (a key dropped from a NAD disappears from `other_config`). Columns that
//! `ovn-northd` writes (`dynamic_addresses`, `up`) are never touched.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::client::Client;
use crate::ensure::{first_rows, is_guard_failure, Db, Ensured, Parent, Spec};
use crate::error::Result;
use crate::ops::{Cond, Mutation, Op, Until};
use crate::value::{self, Row};
use ovsdb::protocol::Uuid;

/// The database name.
pub const OVN_NORTHBOUND: &str = "OVN_Northbound";

const LSP_COLUMNS: &[&str] = &[
    "_uuid",
    "name",
    "type",
    "addresses",
    "port_security",
    "external_ids",
    "options",
    "dynamic_addresses",
    "up",
];

/// A logical switch port as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lsp {
    /// Row uuid.
    pub uuid: Uuid,
    /// Port name (the `iface-id` an OVS interface binds with).
    pub name: String,
    /// `""` for a VIF, `router`, `localnet`, ...
    pub lsp_type: String,
    /// `addresses` (`"MAC IP..."`, `dynamic`, `router`).
    pub addresses: Vec<String>,
    /// `port_security`.
    pub port_security: Vec<String>,
    /// `external_ids`.
    pub external_ids: BTreeMap<String, String>,
    /// `options` (e.g. `router-port`).
    pub options: BTreeMap<String, String>,
    /// What ovn-northd allocated for `dynamic` addresses, if it has.
    pub dynamic_addresses: Option<String>,
    /// Whether ovn-northd reports the port as bound and up.
    pub up: Option<bool>,
}

impl Lsp {
    fn from_row(r: &Row) -> Option<Self> {
        Some(Lsp {
            uuid: r.uuid()?,
            name: r.string("name")?,
            lsp_type: r.string("type").unwrap_or_default(),
            addresses: r.strings("addresses"),
            port_security: r.strings("port_security"),
            external_ids: r.string_map("external_ids"),
            options: r.string_map("options"),
            dynamic_addresses: r.string("dynamic_addresses"),
            up: r.bool("up"),
        })
    }
}

/// A `"MAC IP [IP...]"` address string split up (`addresses` entries, `dynamic_addresses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LspAddresses {
    /// The MAC, lowercase as OVN writes it.
    pub mac: String,
    /// The IPs after it (none when OVN assigned only a MAC).
    pub ips: Vec<IpAddr>,
}

impl LspAddresses {
    /// Parses `"0a:58:0a:01:00:02 10.1.0.2 fd00::2"`; `None` for `dynamic`, `router`, or junk.
    pub fn parse(s: &str) -> Option<Self> {
        let mut words = s.split_whitespace();
        let mac = words.next()?;
        let is_mac = mac.len() == 17
            && mac.split(':').count() == 6
            && mac
                .split(':')
                .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        if !is_mac {
            return None;
        }
        let ips = words.map(|w| w.parse().ok()).collect::<Option<Vec<IpAddr>>>()?;
        Some(LspAddresses {
            mac: mac.to_ascii_lowercase(),
            ips,
        })
    }
}

/// The `OVN_Northbound` database.
#[derive(Debug, Clone)]
pub struct NbDb {
    db: Db,
}

impl NbDb {
    /// Wraps a client connected to the OVN northbound `ovsdb-server`.
    pub fn new(client: Client) -> Self {
        NbDb {
            db: Db {
                client,
                name: OVN_NORTHBOUND,
            },
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.db.client
    }

    /// Fails early if the server's schema lacks a table or column used here.
    pub async fn check_schema(&self) -> Result<()> {
        let needs: &[(&str, &[&str])] = &[
            ("Logical_Switch", &["name", "ports", "other_config", "external_ids"]),
            (
                "Logical_Switch_Port",
                LSP_COLUMNS.split_first().map_or(&[], |(_, rest)| rest),
            ),
            ("Logical_Router", &["name", "ports", "external_ids"]),
            ("Logical_Router_Port", &["name", "mac", "networks"]),
        ];
        self.db.client.check_schema(OVN_NORTHBOUND, needs).await
    }

    /// `ovn-nbctl --may-exist ls-add NAME -- set logical_switch NAME other_config:..
    /// external_ids:..`. `other_config` carries OVN IPAM's `subnet`, `exclude_ips` and `mtu`.
    pub async fn ensure_logical_switch(
        &self,
        name: &str,
        other_config: &BTreeMap<String, String>,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<Ensured> {
        let mut spec = Spec::new("Logical_Switch", name);
        spec.exact = vec![
            ("other_config", value::string_map(other_config)),
            ("external_ids", value::string_map(external_ids)),
        ];
        self.db.ensure(&spec).await
    }

    /// `ovn-nbctl --may-exist lsp-add SWITCH NAME -- lsp-set-addresses .. -- lsp-set-port-security
    /// ..`: a plain VIF port. A port of that name on another switch is a conflict.
    pub async fn ensure_lsp(
        &self,
        switch: &str,
        name: &str,
        addresses: &[String],
        port_security: &[String],
        external_ids: &BTreeMap<String, String>,
    ) -> Result<Ensured> {
        self.ensure_lsp_spec(
            switch,
            name,
            "",
            addresses,
            port_security,
            external_ids,
            &BTreeMap::new(),
        )
        .await
    }

    /// The switch side of a switch-router link (`ovn-nbctl lsp-add SWITCH NAME -- lsp-set-type
    /// NAME router -- lsp-set-addresses NAME router -- lsp-set-options NAME router-port=LRP`).
    pub async fn ensure_router_lsp(&self, switch: &str, name: &str, router_port: &str) -> Result<Ensured> {
        let options = BTreeMap::from([("router-port".to_string(), router_port.to_string())]);
        let addresses = ["router".to_string()];
        self.ensure_lsp_spec(switch, name, "router", &addresses, &[], &BTreeMap::new(), &options)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn ensure_lsp_spec(
        &self,
        switch: &str,
        name: &str,
        lsp_type: &str,
        addresses: &[String],
        port_security: &[String],
        external_ids: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
    ) -> Result<Ensured> {
        let mut spec = Spec::new("Logical_Switch_Port", name);
        spec.exact = vec![
            ("type", lsp_type.into()),
            ("addresses", value::string_set(addresses)),
            ("port_security", value::string_set(port_security)),
            ("external_ids", value::string_map(external_ids)),
            ("options", value::string_map(options)),
        ];
        spec.parent = Some(Parent {
            table: "Logical_Switch",
            name: Some(switch),
            column: "ports",
        });
        self.db.ensure(&spec).await
    }

    /// `ovn-nbctl --if-exists lsp-del NAME`, limited to `switch`: removes the port from the
    /// switch's `ports` and deletes the row. `false` when it was not there.
    pub async fn delete_lsp(&self, switch: &str, name: &str) -> Result<bool> {
        let read = [
            Op::select("Logical_Switch", vec![Cond::eq("name", switch)]).columns(&["_uuid", "ports"]),
            Op::select("Logical_Switch_Port", vec![Cond::eq("name", name)]).columns(&["_uuid"]),
        ];
        let r = self.db.transact(&read).await?;
        let Some(lsp) = r[1].rows.first().and_then(Row::uuid) else {
            return Ok(false);
        };
        let Some(ls) = r[0].rows.iter().find(|s| s.uuids("ports").contains(&lsp)) else {
            tracing::debug!(switch, lsp = name, "port is not on this switch, not deleting");
            return Ok(false);
        };
        let ls = ls.uuid().ok_or_else(|| self.db.not_found("Logical_Switch", switch))?;
        self.db.transact(&detach_and_delete(&ls, &[lsp])).await?;
        Ok(true)
    }

    /// Deletes every logical switch port whose `external_ids` hold `key=value` (e.g. every port
    /// of one pod), from whichever switch holds it. Returns how many were deleted.
    pub async fn delete_lsps_by_external_id(&self, key: &str, value: &str) -> Result<usize> {
        let pair = BTreeMap::from([(key.to_string(), value.to_string())]);
        let read = [
            Op::select(
                "Logical_Switch_Port",
                vec![Cond::includes("external_ids", value::string_map(&pair))],
            )
            .columns(&["_uuid"]),
            Op::select("Logical_Switch", vec![]).columns(&["_uuid", "ports"]),
        ];
        let r = self.db.transact(&read).await?;
        let doomed: Vec<Uuid> = r[0].rows.iter().filter_map(Row::uuid).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut ops = vec![];
        for ls in &r[1].rows {
            let here: Vec<Uuid> = ls.uuids("ports").into_iter().filter(|u| doomed.contains(u)).collect();
            if let (false, Some(ls)) = (here.is_empty(), ls.uuid()) {
                ops.extend(detach_and_delete(&ls, &here));
            }
        }
        // Ports in no switch cannot exist (the table is not a root table): nothing else to do.
        let results = self.db.transact(&ops).await?;
        let deleted = ops.iter().zip(&results).filter(|(op, _)| op.kind() == "delete");
        Ok(deleted.map(|(_, r)| r.count.unwrap_or(0) as usize).sum())
    }

    /// The ports of `switch`, sorted by name.
    pub async fn list_lsps(&self, switch: &str) -> Result<Vec<Lsp>> {
        let ls = self.db.by_name("Logical_Switch", switch, &["ports"]).await?;
        let ls = ls.ok_or_else(|| self.db.not_found("Logical_Switch", switch))?;
        let selects: Vec<Op> = ls
            .uuids("ports")
            .iter()
            .map(|u| Op::select("Logical_Switch_Port", vec![Cond::uuid(u)]).columns(LSP_COLUMNS))
            .collect();
        if selects.is_empty() {
            return Ok(vec![]);
        }
        let results = self.db.transact(&selects).await?;
        let mut lsps: Vec<Lsp> = results
            .iter()
            .flat_map(|r| r.rows.iter().filter_map(Lsp::from_row))
            .collect();
        lsps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(lsps)
    }

    /// One logical switch port by name, `None` if absent.
    pub async fn get_lsp(&self, name: &str) -> Result<Option<Lsp>> {
        let row = self.db.by_name("Logical_Switch_Port", name, LSP_COLUMNS).await?;
        Ok(row.as_ref().and_then(Lsp::from_row))
    }

    /// What ovn-northd allocated to a `dynamic` port (`"MAC IP"`), `None` until it has; an
    /// absent port is [`Error::NotFound`](crate::Error::NotFound). Parse with
    /// [`LspAddresses::parse`].
    pub async fn get_lsp_dynamic_addresses(&self, name: &str) -> Result<Option<String>> {
        let row = self
            .db
            .by_name("Logical_Switch_Port", name, &["dynamic_addresses"])
            .await?;
        let row = row.ok_or_else(|| self.db.not_found("Logical_Switch_Port", name))?;
        Ok(row.string("dynamic_addresses"))
    }

    /// `ovn-nbctl --may-exist lr-add NAME` with `external_ids` set exactly.
    pub async fn ensure_logical_router(&self, name: &str, external_ids: &BTreeMap<String, String>) -> Result<Ensured> {
        let mut spec = Spec::new("Logical_Router", name);
        spec.exact = vec![("external_ids", value::string_map(external_ids))];
        self.db.ensure(&spec).await
    }

    /// `ovn-nbctl --may-exist lrp-add ROUTER NAME MAC NETWORK...` (networks like
    /// `10.1.0.1/24`). A port of that name on another router is a conflict.
    pub async fn ensure_lrp(&self, router: &str, name: &str, mac: &str, networks: &[String]) -> Result<Ensured> {
        let mut spec = Spec::new("Logical_Router_Port", name);
        spec.exact = vec![("mac", mac.into()), ("networks", value::string_set(networks))];
        spec.parent = Some(Parent {
            table: "Logical_Router",
            name: Some(router),
            column: "ports",
        });
        self.db.ensure(&spec).await
    }

    /// Gives `switch` a gateway on `router`: the router port `lrp` (`mac`, `networks`) and the
    /// switch's `router`-type port `lsp` pointing at it. Returns (router port, switch port).
    pub async fn connect_switch_to_router(
        &self,
        switch: &str,
        router: &str,
        lrp: &str,
        lsp: &str,
        mac: &str,
        networks: &[String],
    ) -> Result<(Ensured, Ensured)> {
        let rp = self.ensure_lrp(router, lrp, mac, networks).await?;
        let sp = self.ensure_router_lsp(switch, lsp, lrp).await?;
        Ok((rp, sp))
    }

    /// `ovn-nbctl ls-del NAME [-- lr-del ROUTER]`, but only while nothing but router-type ports
    /// is on the switch: a `wait` guard on its `ports` makes the check and the delete one
    /// transaction, so a port another node adds meanwhile keeps the switch. The switch's ports
    /// and the router's ports go with them (they are not root tables). `false` when the switch
    /// is absent or in use.
    pub async fn delete_idle_logical_switch(&self, name: &str, router: Option<&str>) -> Result<bool> {
        let read = [
            Op::select("Logical_Switch", vec![Cond::eq("name", name)]).columns(&["_uuid", "ports"]),
            Op::select("Logical_Switch_Port", vec![Cond::eq("type", "router")]).columns(&["_uuid"]),
        ];
        let r = self.db.transact(&read).await?;
        let Some(ls) = r[0].rows.first() else {
            return Ok(false);
        };
        let ports = ls.uuids("ports");
        let router_ports: Vec<Uuid> = r[1].rows.iter().filter_map(Row::uuid).collect();
        if ports.iter().any(|p| !router_ports.contains(p)) {
            return Ok(false);
        }
        let mut ops = vec![
            Op::wait(
                "Logical_Switch",
                vec![Cond::eq("name", name)],
                &["ports"],
                Until::Equal,
                vec![serde_json::json!({ "ports": value::uuid_set(&ports) })],
            ),
            Op::delete("Logical_Switch", vec![Cond::eq("name", name)]),
        ];
        if let Some(router) = router {
            ops.push(Op::delete("Logical_Router", vec![Cond::eq("name", router)]));
        }
        match self.db.transact(&ops).await {
            Ok(_) => Ok(true),
            Err(e) if is_guard_failure(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The logical switches whose `external_ids` hold `key`: (name, that key's value).
    pub async fn logical_switches_with(&self, key: &str) -> Result<Vec<(String, String)>> {
        let rows = first_rows(
            self.db
                .transact(&[Op::select("Logical_Switch", vec![]).columns(&["name", "external_ids"])])
                .await?,
        );
        let mut out: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| Some((r.string("name")?, r.map_get("external_ids", key)?)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// All logical switch names, sorted (handy for reconciling).
    pub async fn list_logical_switches(&self) -> Result<Vec<String>> {
        let rows = first_rows(
            self.db
                .transact(&[Op::select("Logical_Switch", vec![]).columns(&["name"])])
                .await?,
        );
        let mut names: Vec<String> = rows.iter().filter_map(|r| r.string("name")).collect();
        names.sort();
        Ok(names)
    }
}

/// Removes `lsps` from switch `ls`'s ports and deletes them, explicitly rather than leaving it
/// to garbage collection, so the intent shows in the database log.
fn detach_and_delete(ls: &Uuid, lsps: &[Uuid]) -> Vec<Op> {
    let mut ops = vec![Op::mutate(
        "Logical_Switch",
        vec![Cond::uuid(ls)],
        vec![Mutation::delete("ports", value::uuid_set(lsps))],
    )];
    ops.extend(
        lsps.iter()
            .map(|u| Op::delete("Logical_Switch_Port", vec![Cond::uuid(u)])),
    );
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_dynamic_addresses() {
        let a = LspAddresses::parse("0A:58:0a:01:00:02 10.1.0.2 fd00::2").unwrap();
        assert_eq!(a.mac, "0a:58:0a:01:00:02");
        assert_eq!(
            a.ips,
            vec!["10.1.0.2".parse::<IpAddr>().unwrap(), "fd00::2".parse().unwrap()]
        );
        assert!(LspAddresses::parse("0a:58:0a:01:00:02").unwrap().ips.is_empty());
        for bad in [
            "dynamic",
            "router",
            "",
            "0a:58:0a:01:00:02 10.1.0.300",
            "0a:58:0a:01:00 10.1.0.2",
        ] {
            assert!(LspAddresses::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn detach_then_delete() {
        let ls = value::parse_uuid("36bef046-7da7-43a5-905a-c17899216fcb").unwrap();
        let p = value::parse_uuid("46bef046-7da7-43a5-905a-c17899216fcb").unwrap();
        let ops = detach_and_delete(&ls, &[p]);
        assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), ["mutate", "delete"]);
        assert_eq!(
            ops[0].to_json()["mutations"],
            json!([[
                "ports",
                "delete",
                ["set", [["uuid", "46bef046-7da7-43a5-905a-c17899216fcb"]]]
            ]])
        );
    }
}
