//! The idempotent "make this named row look like that" shared by the typed databases.
//!
//! Read, compare, then write only what differs, in one transaction guarded against the races
//! that matter: creating a row carries a `wait` (timeout 0) that no row of that name exists,
//! so two writers cannot both insert one (`Logical_Switch` and `Logical_Router` names are not
//! unique in the schema); attaching it to its parent checks the mutate's row count. A failed
//! guard means someone else changed the row between our read and our write: read again.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::ops::{Cond, Mutation, Op, OpResult, Until};
use crate::value::{self, canonical, Row};
use ovsdb::protocol::Uuid;

const ATTEMPTS: usize = 5;

/// What an `ensure_*` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The row did not exist and was inserted.
    Created,
    /// The row existed and some column was changed.
    Updated,
    /// The row already was as asked: nothing was written.
    Unchanged,
}

/// The row an `ensure_*` call is about, and what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ensured {
    /// The row's `_uuid`.
    pub uuid: Uuid,
    /// Created, updated or unchanged.
    pub action: Action,
}

/// A typed database on a [`Client`]: the name labels every error.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub(crate) client: Client,
    pub(crate) name: &'static str,
}

/// The row that holds the ensured row in one of its uuid-set columns (a bridge's `ports`, a
/// switch's `ports`, the `Open_vSwitch` row's `bridges`).
pub(crate) struct Parent<'a> {
    pub(crate) table: &'static str,
    /// How to find it; `None`: the table's only row (`Open_vSwitch`).
    pub(crate) name: Option<&'a str>,
    pub(crate) column: &'static str,
}

/// The wanted state of a row found by its `name` column.
pub(crate) struct Spec<'a> {
    pub(crate) table: &'static str,
    pub(crate) name: &'a str,
    /// Columns that must equal these values.
    pub(crate) exact: Vec<(&'static str, Value)>,
    /// Map columns shared with other writers (ovn-controller writes `ovn-installed` next to
    /// our `iface-id`): our keys are set, the other keys are left alone.
    pub(crate) merge: Vec<(&'static str, &'a BTreeMap<String, String>)>,
    /// Columns set only on insert (e.g. references to rows inserted with it).
    pub(crate) insert_only: Vec<(&'static str, Value)>,
    /// Inserted in the same transaction before the row itself.
    pub(crate) also_insert: Vec<Op>,
    pub(crate) parent: Option<Parent<'a>>,
}

impl<'a> Spec<'a> {
    pub(crate) fn new(table: &'static str, name: &'a str) -> Self {
        Spec {
            table,
            name,
            exact: vec![],
            merge: vec![],
            insert_only: vec![],
            also_insert: vec![],
            parent: None,
        }
    }
}

impl Db {
    pub(crate) async fn transact(&self, ops: &[Op]) -> Result<Vec<OpResult>> {
        self.client.transact(self.name, ops).await
    }

    pub(crate) fn not_found(&self, table: &'static str, name: &str) -> Error {
        Error::NotFound {
            db: self.name.into(),
            table,
            name: name.into(),
        }
    }

    pub(crate) fn conflict(&self, table: &'static str, name: &str, reason: impl Into<String>) -> Error {
        Error::Conflict {
            db: self.name.into(),
            table,
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// The one row of `table` named `name`, if any; more than one is a conflict.
    pub(crate) async fn by_name(&self, table: &'static str, name: &str, columns: &[&str]) -> Result<Option<Row>> {
        let r = self
            .transact(&[Op::select(table, vec![Cond::eq("name", name)]).columns(columns)])
            .await?;
        self.at_most_one(table, name, first_rows(r))
    }

    pub(crate) fn at_most_one(&self, table: &'static str, name: &str, mut rows: Vec<Row>) -> Result<Option<Row>> {
        match rows.len() {
            0 | 1 => Ok(rows.pop()),
            n => Err(self.conflict(table, name, format!("{n} rows have this name"))),
        }
    }

    /// Makes the row described by `spec` exist and look as asked; see the module docs.
    pub(crate) async fn ensure(&self, spec: &Spec<'_>) -> Result<Ensured> {
        for _ in 0..ATTEMPTS {
            match self.ensure_once(spec).await {
                Err(e) if is_guard_failure(&e) => {}
                Ok(Attempt::Retry) => {}
                Ok(Attempt::Done(ensured)) => return Ok(ensured),
                Err(e) => return Err(e),
            }
            tracing::debug!(
                db = self.name,
                table = spec.table,
                name = spec.name,
                "row changed under us, retrying"
            );
        }
        Err(self.conflict(
            spec.table,
            spec.name,
            format!("kept changing during {ATTEMPTS} attempts"),
        ))
    }

    async fn ensure_once(&self, spec: &Spec<'_>) -> Result<Attempt> {
        let mut columns = vec!["_uuid"];
        columns.extend(spec.exact.iter().map(|(c, _)| *c));
        columns.extend(spec.merge.iter().map(|(c, _)| *c));
        let mut read = vec![Op::select(spec.table, vec![Cond::eq("name", spec.name)]).columns(&columns)];
        if let Some(p) = &spec.parent {
            read.push(Op::select(p.table, parent_conds(p)).columns(&["_uuid", p.column]));
        }
        let mut results = self.transact(&read).await?.into_iter();
        let row = self.at_most_one(
            spec.table,
            spec.name,
            results.next().map(|r| r.rows).unwrap_or_default(),
        )?;
        let parent = match &spec.parent {
            None => None,
            Some(p) => {
                let label = p.name.unwrap_or(p.table);
                let prow = self.at_most_one(p.table, label, results.next().map(|r| r.rows).unwrap_or_default())?;
                Some((p, prow.ok_or_else(|| self.not_found(p.table, label))?))
            }
        };
        let mut ops = vec![];
        let mut parent_ops = vec![];
        let mut insert_index = None;
        let (uuid, action) = match row {
            None => {
                let guard = Op::wait(
                    spec.table,
                    vec![Cond::eq("name", spec.name)],
                    &["name"],
                    Until::Equal,
                    vec![],
                );
                ops.push(guard);
                ops.extend(spec.also_insert.iter().cloned());
                let mut new = json!({"name": spec.name});
                for (c, v) in spec.exact.iter().chain(spec.insert_only.iter()) {
                    new[*c] = v.clone();
                }
                for (c, m) in &spec.merge {
                    new[*c] = value::string_map(m);
                }
                insert_index = Some(ops.len());
                ops.push(Op::insert(spec.table, new).uuid_name("row"));
                if let Some((p, prow)) = &parent {
                    parent_ops.push(attach(p, prow, value::named_uuid("row")));
                }
                (None, Action::Created)
            }
            Some(row) => {
                let uuid = row
                    .uuid()
                    .ok_or_else(|| self.protocol("select returned a row without _uuid"))?;
                if let Some((p, prow)) = &parent {
                    if !prow.uuids(p.column).contains(&uuid) {
                        let label = p.name.unwrap_or(p.table);
                        let reason = format!("exists, but not in {} {label:?}", p.table);
                        return Err(self.conflict(spec.table, spec.name, reason));
                    }
                }
                ops.extend(update_ops(spec, &row, &uuid));
                if ops.is_empty() {
                    return Ok(Attempt::Done(Ensured {
                        uuid,
                        action: Action::Unchanged,
                    }));
                }
                (Some(uuid), Action::Updated)
            }
        };
        let parent_index = ops.len();
        ops.extend(parent_ops);
        let results = self.transact(&ops).await?;
        if parent.is_some() && results.get(parent_index).and_then(|r| r.count) == Some(0) {
            return Ok(Attempt::Retry); // the parent vanished between read and write
        }
        let uuid = uuid
            .or_else(|| insert_index.and_then(|i| results.get(i)?.uuid))
            .ok_or_else(|| self.protocol("insert returned no uuid"))?;
        tracing::debug!(db = self.name, table = spec.table, name = spec.name, ?action, "ensured");
        Ok(Attempt::Done(Ensured { uuid, action }))
    }

    fn protocol(&self, reason: &str) -> Error {
        Error::Protocol {
            db: self.name.into(),
            method: "transact".into(),
            reason: reason.into(),
        }
    }
}

/// `update` for the exact columns that differ and `mutate` for the merged keys that differ.
fn update_ops(spec: &Spec<'_>, row: &Row, uuid: &Uuid) -> Vec<Op> {
    let mut ops = vec![];
    let mut changed = serde_json::Map::new();
    for (c, want) in &spec.exact {
        if row.get(c).map(canonical) != Some(canonical(want)) {
            changed.insert(c.to_string(), want.clone());
        }
    }
    if !changed.is_empty() {
        ops.push(Op::update(spec.table, vec![Cond::uuid(uuid)], Value::Object(changed)));
    }
    let mut mutations = vec![];
    for (c, want) in &spec.merge {
        mutations.extend(merge_mutations(c, &row.string_map(c), want));
    }
    if !mutations.is_empty() {
        ops.push(Op::mutate(spec.table, vec![Cond::uuid(uuid)], mutations));
    }
    ops
}

/// Mutations that set `want`'s keys in map column `column` (currently `have`), or nothing
/// when they already hold. `insert` never overwrites a key, hence delete-then-insert.
pub(crate) fn merge_mutations(
    column: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Vec<Mutation> {
    let differing: BTreeMap<String, String> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if differing.is_empty() {
        return vec![];
    }
    let keys: Vec<&String> = differing.keys().collect();
    vec![
        Mutation::delete(column, value::string_set(&keys)),
        Mutation::insert(column, value::string_map(&differing)),
    ]
}

fn parent_conds(p: &Parent<'_>) -> Vec<Cond> {
    p.name.map(|n| vec![Cond::eq("name", n)]).unwrap_or_default()
}

fn attach(p: &Parent<'_>, prow: &Row, child: Value) -> Op {
    let uuid = prow.uuid().map(|u| vec![Cond::uuid(&u)]).unwrap_or_default();
    Op::mutate(p.table, uuid, vec![Mutation::insert(p.column, json!(["set", [child]]))])
}

/// The rows of the first result.
pub(crate) fn first_rows(results: Vec<OpResult>) -> Vec<Row> {
    results.into_iter().next().map(|r| r.rows).unwrap_or_default()
}

enum Attempt {
    Done(Ensured),
    /// Something changed between our read and our write: read again.
    Retry,
}

/// A `wait` guard (timeout 0) that did not hold: the data changed between read and write.
pub(crate) fn is_guard_failure(e: &Error) -> bool {
    matches!(e, Error::Operation { op: "wait", server, .. } if server.error == "timed out")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn merge_touches_only_differing_keys() {
        let have = m(&[("iface-id", "a"), ("ovn-installed", "true")]);
        assert!(merge_mutations("external_ids", &have, &m(&[("iface-id", "a")])).is_empty());
        let muts = merge_mutations("external_ids", &have, &m(&[("iface-id", "b"), ("sandbox", "c")]));
        assert_eq!(
            muts[0].0,
            json!(["external_ids", "delete", ["set", ["iface-id", "sandbox"]]])
        );
        assert_eq!(
            muts[1].0,
            json!(["external_ids", "insert", ["map", [["iface-id", "b"], ["sandbox", "c"]]]])
        );
    }

    #[test]
    fn update_ops_compare_canonically() {
        let mut spec = Spec::new("Logical_Switch_Port", "p");
        spec.exact = vec![("addresses", value::string_set(&["dynamic"])), ("type", json!(""))];
        let row = Row(json!({"addresses": "dynamic", "type": ""}).as_object().unwrap().clone());
        let u = value::parse_uuid("36bef046-7da7-43a5-905a-c17899216fcb").unwrap();
        assert!(update_ops(&spec, &row, &u).is_empty());
        spec.exact[1].1 = json!("router");
        let ops = update_ops(&spec, &row, &u);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].to_json()["row"], json!({"type": "router"}));
    }
}
