//! Typed, idempotent operations on the local `Open_vSwitch` database (what `ovs-vsctl` does).
//!
//! OVS rows are shared with `ovs-vswitchd`, `ovn-controller` and the admin, so map columns
//! (`external_ids`, `other_config`) are merged: our keys are set and other keys are kept.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Client;
use crate::ensure::{first_rows, is_guard_failure, merge_mutations, Action, Db, Ensured, Parent, Spec};
use crate::error::{Error, Result};
use crate::monitor::MonitorRequest;
use crate::ops::{Cond, Mutation, Op, Until};
use crate::value::{self, Row};
use ovsdb::protocol::Uuid;

/// The database name.
pub const OPEN_VSWITCH: &str = "Open_vSwitch";

/// A bridge's `fail_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Only the controller's flows (what OVN wants for `br-int`).
    Secure,
    /// Act as a learning switch when no controller is connected.
    Standalone,
}

impl FailMode {
    fn as_str(self) -> &'static str {
        match self {
            FailMode::Secure => "secure",
            FailMode::Standalone => "standalone",
        }
    }
}

/// An OVS interface found by [`OvsDb::find_ports_by_external_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The Interface (and, as Lanes creates them, Port) name.
    pub name: String,
    /// The Interface row's uuid.
    pub uuid: Uuid,
    /// Interface `type` (`""` for a veth, `internal`, ...).
    pub iface_type: String,
    /// Interface `external_ids`.
    pub external_ids: BTreeMap<String, String>,
}

/// The `Open_vSwitch` database of one node.
#[derive(Debug, Clone)]
pub struct OvsDb {
    db: Db,
}

impl OvsDb {
    /// Wraps a client connected to an `ovsdb-server` that serves `Open_vSwitch`.
    pub fn new(client: Client) -> Self {
        OvsDb {
            db: Db {
                client,
                name: OPEN_VSWITCH,
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
            ("Open_vSwitch", &["bridges", "external_ids"]),
            (
                "Bridge",
                &["name", "ports", "datapath_type", "fail_mode", "other_config"],
            ),
            ("Port", &["name", "interfaces"]),
            ("Interface", &["name", "type", "external_ids"]),
        ];
        self.db.client.check_schema(OPEN_VSWITCH, needs).await
    }

    /// Creates the single `Open_vSwitch` row if the database has none (`ovs-vsctl init`).
    pub async fn init(&self) -> Result<Ensured> {
        for _ in 0..3 {
            if let Some(uuid) = self.root_row(&["_uuid"]).await?.and_then(|r| r.uuid()) {
                return Ok(Ensured {
                    uuid,
                    action: Action::Unchanged,
                });
            }
            let guard = Op::wait(OPEN_VSWITCH, vec![], &["_uuid"], Until::Equal, vec![]);
            match self.db.transact(&[guard, Op::insert(OPEN_VSWITCH, json!({}))]).await {
                Ok(r) => {
                    let uuid = r[1].uuid.ok_or_else(|| self.db.not_found("Open_vSwitch", "."))?;
                    return Ok(Ensured {
                        uuid,
                        action: Action::Created,
                    });
                }
                Err(e) if is_guard_failure(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(self
            .db
            .conflict("Open_vSwitch", ".", "row appeared and vanished repeatedly"))
    }

    async fn root_row(&self, columns: &[&str]) -> Result<Option<Row>> {
        let r = self
            .db
            .transact(&[Op::select(OPEN_VSWITCH, vec![]).columns(columns)])
            .await?;
        self.db.at_most_one("Open_vSwitch", ".", first_rows(r))
    }

    /// `ovs-vsctl --may-exist add-br NAME -- set bridge NAME datapath_type=.. fail_mode=..
    /// other_config:k=v`: creates the bridge with its local internal port, or brings an
    /// existing one's columns in line (other_config keys merged).
    pub async fn ensure_bridge(
        &self,
        name: &str,
        datapath_type: &str,
        fail_mode: Option<FailMode>,
        other_config: &BTreeMap<String, String>,
    ) -> Result<Ensured> {
        let fail_mode = fail_mode.map_or_else(value::empty_set, |f| f.as_str().into());
        let mut spec = Spec::new("Bridge", name);
        spec.exact = vec![("datapath_type", datapath_type.into()), ("fail_mode", fail_mode)];
        spec.merge = vec![("other_config", other_config)];
        spec.also_insert = vec![
            Op::insert("Interface", json!({"name": name, "type": "internal"})).uuid_name("local_iface"),
            Op::insert(
                "Port",
                json!({"name": name, "interfaces": value::named_uuid("local_iface")}),
            )
            .uuid_name("local_port"),
        ];
        spec.insert_only = vec![("ports", value::named_uuid("local_port"))];
        spec.parent = Some(Parent {
            table: "Open_vSwitch",
            name: None,
            column: "bridges",
        });
        self.db.ensure(&spec).await
    }

    /// `ovs-vsctl --may-exist add-port BRIDGE PORT -- set interface PORT type=..
    /// external_ids:k=v`: a Port with one Interface of the same name on `bridge`. If it
    /// exists, its interface type is set and `external_ids` keys are merged in (so
    /// ovn-controller's `ovn-installed` survives). A port of that name on another bridge is a
    /// conflict.
    pub async fn ensure_port(
        &self,
        bridge: &str,
        port: &str,
        iface_type: &str,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<Ensured> {
        let iface = json!({"name": port, "type": iface_type, "external_ids": value::string_map(external_ids)});
        let mut spec = Spec::new("Port", port);
        spec.also_insert = vec![Op::insert("Interface", iface).uuid_name("iface")];
        spec.insert_only = vec![("interfaces", value::named_uuid("iface"))];
        spec.parent = Some(Parent {
            table: "Bridge",
            name: Some(bridge),
            column: "ports",
        });
        let ensured = self.db.ensure(&spec).await?;
        if ensured.action == Action::Created {
            return Ok(ensured);
        }
        let read = [
            Op::select("Port", vec![Cond::uuid(&ensured.uuid)]).columns(&["interfaces"]),
            Op::select("Interface", vec![Cond::eq("name", port)]).columns(&["_uuid", "type", "external_ids"]),
        ];
        let r = self.db.transact(&read).await?;
        let members = r[0].rows.first().map(|p| p.uuids("interfaces")).unwrap_or_default();
        let iface = r[1]
            .rows
            .first()
            .filter(|i| i.uuid().is_some_and(|u| members.contains(&u)));
        let Some(iface) = iface else {
            return Err(self
                .db
                .conflict("Port", port, "exists without an interface of the same name"));
        };
        let iface_uuid = iface.uuid().ok_or_else(|| self.db.not_found("Interface", port))?;
        let mut ops = vec![];
        if iface.string("type").unwrap_or_default() != iface_type {
            ops.push(Op::update(
                "Interface",
                vec![Cond::uuid(&iface_uuid)],
                json!({"type": iface_type}),
            ));
        }
        let muts = merge_mutations("external_ids", &iface.string_map("external_ids"), external_ids);
        if !muts.is_empty() {
            ops.push(Op::mutate("Interface", vec![Cond::uuid(&iface_uuid)], muts));
        }
        if ops.is_empty() {
            return Ok(ensured);
        }
        self.db.transact(&ops).await?;
        Ok(Ensured {
            uuid: ensured.uuid,
            action: Action::Updated,
        })
    }

    /// `ovs-vsctl --if-exists del-port BRIDGE PORT`: removes the port from the bridge (the
    /// Port and its Interfaces go with it). `false` when there was nothing to remove, also
    /// when the port sits on another bridge (then it is left alone).
    pub async fn delete_port(&self, bridge: &str, port: &str) -> Result<bool> {
        let read = [
            Op::select("Bridge", vec![Cond::eq("name", bridge)]).columns(&["_uuid", "ports"]),
            Op::select("Port", vec![Cond::eq("name", port)]).columns(&["_uuid"]),
        ];
        let r = self.db.transact(&read).await?;
        let (Some(b), Some(p)) = (r[0].rows.first(), r[1].rows.first().and_then(Row::uuid)) else {
            return Ok(false);
        };
        if !b.uuids("ports").contains(&p) {
            tracing::debug!(bridge, port, "port is not on this bridge, not deleting");
            return Ok(false);
        }
        let b = b.uuid().ok_or_else(|| self.db.not_found("Bridge", bridge))?;
        let m = Mutation::delete("ports", value::uuid_set(&[p]));
        let r = self
            .db
            .transact(&[Op::mutate("Bridge", vec![Cond::uuid(&b)], vec![m])])
            .await?;
        Ok(r[0].count == Some(1))
    }

    /// Interfaces whose `external_ids` hold `key=value` (e.g. `sandbox=<container id>` to find
    /// what a pod left behind).
    pub async fn find_ports_by_external_id(&self, key: &str, value: &str) -> Result<Vec<PortInfo>> {
        let pair = BTreeMap::from([(key.to_string(), value.to_string())]);
        let select = Op::select(
            "Interface",
            vec![Cond::includes("external_ids", value::string_map(&pair))],
        )
        .columns(&["_uuid", "name", "type", "external_ids"]);
        let rows = first_rows(self.db.transact(&[select]).await?);
        let mut ports: Vec<PortInfo> = rows
            .iter()
            .filter_map(|r| {
                Some(PortInfo {
                    name: r.string("name")?,
                    uuid: r.uuid()?,
                    iface_type: r.string("type").unwrap_or_default(),
                    external_ids: r.string_map("external_ids"),
                })
            })
            .collect();
        ports.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ports)
    }

    /// The port names on `bridge`, sorted (`ovs-vsctl list-ports`, plus the bridge's own port).
    pub async fn list_ports(&self, bridge: &str) -> Result<Vec<String>> {
        let b = self.db.by_name("Bridge", bridge, &["ports"]).await?;
        let b = b.ok_or_else(|| self.db.not_found("Bridge", bridge))?;
        let selects: Vec<Op> = b
            .uuids("ports")
            .iter()
            .map(|u| Op::select("Port", vec![Cond::uuid(u)]).columns(&["name"]))
            .collect();
        if selects.is_empty() {
            return Ok(vec![]);
        }
        let mut names: Vec<String> = self
            .db
            .transact(&selects)
            .await?
            .iter()
            .flat_map(|r| r.rows.iter().filter_map(|p| p.string("name")))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `ovs-vsctl set open . external_ids:k=v ...`: merges `ids` into the `Open_vSwitch` row's
    /// `external_ids` (system-id, hostname, ovn-remote, ovn-encap-ip, ovn-encap-type,
    /// ovn-bridge-datapath-type, ...).
    pub async fn set_open_vswitch_external_ids(&self, ids: &BTreeMap<String, String>) -> Result<Action> {
        let row = self.root_row(&["_uuid", "external_ids"]).await?;
        let row = row.ok_or_else(|| self.db.not_found("Open_vSwitch", ". (run ovs-vsctl init)"))?;
        let uuid = row.uuid().ok_or_else(|| self.db.not_found("Open_vSwitch", "."))?;
        let muts = merge_mutations("external_ids", &row.string_map("external_ids"), ids);
        if muts.is_empty() {
            return Ok(Action::Unchanged);
        }
        self.db
            .transact(&[Op::mutate(OPEN_VSWITCH, vec![Cond::uuid(&uuid)], muts)])
            .await?;
        Ok(Action::Updated)
    }

    /// Interface `external_ids`, `None` when there is no such interface.
    pub async fn interface_external_ids(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let row = self.db.by_name("Interface", name, &["external_ids"]).await?;
        Ok(row.map(|r| r.string_map("external_ids")))
    }

    /// Waits until interface `name` has `column` == `expected`, where `column` is a column name
    /// or `column:key` for a map column (`external_ids:ovn-installed`). Watches a `monitor` of
    /// the Interface table, so it reacts as soon as ovn-controller writes, and also works if
    /// the interface appears only later. Returns how long it waited; ends with
    /// [`Error::WaitTimeout`] after `timeout` or [`Error::Cancelled`] when `cancel` completes.
    pub async fn wait_interface_column(
        &self,
        name: &str,
        column: &str,
        expected: &str,
        timeout: Duration,
        cancel: impl Future<Output = ()>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let (col, key) = column.split_once(':').map_or((column, None), |(c, k)| (c, Some(k)));
        let matches = |row: &Row| {
            row.string("name").as_deref() == Some(name)
                && match key {
                    Some(k) => row.map_get(col, k).as_deref() == Some(expected),
                    None => row.get(col).is_some_and(|v| value_is(v, expected)),
                }
        };
        let watch = async {
            let columns: &[&str] = if col == "name" { &["name"] } else { &["name", col] };
            let req = MonitorRequest::new("Interface")
                .columns(columns)
                .select(true, true, false, true);
            let mut mon = self.db.client.monitor(OPEN_VSWITCH, &[req]).await?;
            while let Some(event) = mon.next().await {
                if event
                    .updates
                    .table("Interface")
                    .any(|(_, u)| u.new.as_ref().is_some_and(matches))
                {
                    return Ok(start.elapsed());
                }
            }
            Err(Error::Closed {
                remote: self.db.client.remote().to_string(),
            })
        };
        let what = |waited| (name.to_string(), column.to_string(), expected.to_string(), waited);
        tokio::select! {
            r = tokio::time::timeout(timeout, watch) => match r {
                Ok(r) => r,
                Err(_) => {
                    let (name, column, expected, waited) = what(start.elapsed());
                    Err(Error::WaitTimeout { table: "Interface", name, column, expected, waited })
                }
            },
            () = cancel => {
                let (name, column, expected, waited) = what(start.elapsed());
                Err(Error::Cancelled { table: "Interface", name, column, expected, waited })
            }
        }
    }
}

/// A scalar column equals `expected` when it is that string, or (for non-string atoms) its
/// JSON text: `ofport` == `"1"`, `admin_state` == `"up"`.
fn value_is(v: &Value, expected: &str) -> bool {
    match crate::value::canonical(v) {
        Value::String(s) => s == expected,
        // Not `other == expected`: serde_json compares a Value to a str as a JSON string.
        other => serde_json::to_string(&other).is_ok_and(|text| text == expected),
    }
}
