//! `monitor` (RFC 7047 §4.1.5): the request, the `<table-updates>` it yields, and the handle a
//! caller reads them from. `ovsdb` has no monitor support at all; all of this is ours.
//!
//! A [`Monitor`] first yields the initial contents ([`EventKind::Initial`]), then every change
//! ([`EventKind::Update`]). When the client reconnects it re-sends the monitor and yields the
//! fresh contents as [`EventKind::Resync`]: changes made while disconnected are not replayed,
//! so a consumer that keeps a replica must replace it with what a `Resync` carries.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::client::Cmd;
use crate::value::Row;

/// What to monitor in one table.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRequest {
    pub(crate) table: String,
    columns: Option<Vec<String>>,
    initial: bool,
    insert: bool,
    delete: bool,
    modify: bool,
}

impl MonitorRequest {
    /// Every column, every kind of change, initial contents included.
    pub fn new(table: &str) -> Self {
        MonitorRequest {
            table: table.to_string(),
            columns: None,
            initial: true,
            insert: true,
            delete: true,
            modify: true,
        }
    }
    /// Only these columns.
    pub fn columns(mut self, columns: &[&str]) -> Self {
        self.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        self
    }
    /// Chooses which kinds of change are reported (RFC 7047 `select`).
    pub fn select(mut self, initial: bool, insert: bool, delete: bool, modify: bool) -> Self {
        (self.initial, self.insert, self.delete, self.modify) = (initial, insert, delete, modify);
        self
    }

    fn to_json(&self) -> Value {
        let mut o = json!({"select": {
            "initial": self.initial, "insert": self.insert, "delete": self.delete, "modify": self.modify
        }});
        if let Some(c) = &self.columns {
            o["columns"] = json!(c);
        }
        o
    }
}

/// `<monitor-requests>`: table name → request.
pub(crate) fn monitor_requests(reqs: &[MonitorRequest]) -> Value {
    let mut m = serde_json::Map::new();
    for r in reqs {
        m.insert(r.table.clone(), r.to_json());
    }
    Value::Object(m)
}

/// One row's change. For a modification, `old` holds only the columns that changed and
/// `new` every monitored column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowUpdate {
    /// The row before (absent on insert and in initial contents).
    pub old: Option<Row>,
    /// The row after (absent on delete).
    pub new: Option<Row>,
}

/// `<table-updates>`: table → row uuid (text) → change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableUpdates(pub BTreeMap<String, BTreeMap<String, RowUpdate>>);

impl TableUpdates {
    pub(crate) fn from_json(v: &Value) -> Self {
        let mut out = BTreeMap::new();
        for (table, rows) in v.as_object().into_iter().flatten() {
            let mut t = BTreeMap::new();
            for (uuid, change) in rows.as_object().into_iter().flatten() {
                let row = |k: &str| change.get(k).and_then(Value::as_object).map(|o| Row(o.clone()));
                t.insert(
                    uuid.clone(),
                    RowUpdate {
                        old: row("old"),
                        new: row("new"),
                    },
                );
            }
            out.insert(table.clone(), t);
        }
        TableUpdates(out)
    }

    /// The changes to one table.
    pub fn table(&self, table: &str) -> impl Iterator<Item = (&String, &RowUpdate)> {
        self.0.get(table).into_iter().flatten()
    }

    /// True when no table has a change.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeMap::is_empty)
    }
}

/// Why an event was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The contents when the monitor was set up.
    Initial,
    /// A change.
    Update,
    /// The full contents again, after a reconnect: replaces everything seen before.
    Resync,
}

/// What a [`Monitor`] yields.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorEvent {
    /// Initial, update or resync.
    pub kind: EventKind,
    /// The rows.
    pub updates: TableUpdates,
}

/// A live monitor. Dropping it sends `monitor_cancel`.
///
/// Events are queued without bound so the connection never stalls on a slow reader; read
/// them promptly.
#[derive(Debug)]
pub struct Monitor {
    pub(crate) id: String,
    pub(crate) db: String,
    pub(crate) rx: mpsc::UnboundedReceiver<MonitorEvent>,
    pub(crate) cmd_tx: mpsc::UnboundedSender<Cmd>,
}

impl Monitor {
    /// The next event; `None` once the client is closed or the server refused a re-sent monitor.
    pub async fn next(&mut self) -> Option<MonitorEvent> {
        self.rx.recv().await
    }

    /// The database monitored.
    pub fn db(&self) -> &str {
        &self.db
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.cmd_tx.send(Cmd::CancelMonitor(self.id.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_requests() {
        let r = monitor_requests(&[
            MonitorRequest::new("Interface").columns(&["name", "external_ids"]),
            MonitorRequest::new("Port").select(false, true, true, false),
        ]);
        assert_eq!(r["Interface"]["columns"], json!(["name", "external_ids"]));
        assert_eq!(r["Interface"]["select"]["initial"], true);
        assert_eq!(
            r["Port"]["select"],
            json!({"initial": false, "insert": true, "delete": true, "modify": false})
        );
        assert!(r["Port"].get("columns").is_none());
    }

    #[test]
    fn parses_table_updates() {
        let u = TableUpdates::from_json(&json!({"Interface": {
            "36bef046-7da7-43a5-905a-c17899216fcb": {"old": {"external_ids": ["map", []]},
                                                     "new": {"name": "p1", "external_ids": ["map", [["a", "b"]]]}},
            "46bef046-7da7-43a5-905a-c17899216fcb": {"old": {"name": "p2"}}
        }}));
        let rows: Vec<_> = u.table("Interface").collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].1.new.as_ref().unwrap().map_get("external_ids", "a").as_deref(),
            Some("b")
        );
        assert!(rows[1].1.new.is_none());
        assert_eq!(u.table("Port").count(), 0);
        assert!(!u.is_empty());
        assert!(TableUpdates::from_json(&json!({})).is_empty());
    }
}
