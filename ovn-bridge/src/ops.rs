//! Transaction operations (RFC 7047 §5.2) as plain values, built before any socket exists, and
//! the parsing of a `transact` reply into per-operation results or an error that names the
//! database, the operation, its table and the server's `error`/`details`.
//!
//! `ovsdb`'s `Operation` only knows `select` with `where` as a list of strings, so operations
//! are built here as JSON.

use serde_json::{json, Value};

use crate::error::{Error, Result, ServerError};
use crate::value::{self, Row};
use ovsdb::protocol::Uuid;

/// One `where` clause: `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond(pub(crate) Value);

impl Cond {
    /// `column == value`
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Cond(json!([column, "==", value.into()]))
    }
    /// `column != value`
    pub fn ne(column: &str, value: impl Into<Value>) -> Self {
        Cond(json!([column, "!=", value.into()]))
    }
    /// `column includes value`: for maps, every pair of `value` is in the column.
    pub fn includes(column: &str, value: impl Into<Value>) -> Self {
        Cond(json!([column, "includes", value.into()]))
    }
    /// `column excludes value`
    pub fn excludes(column: &str, value: impl Into<Value>) -> Self {
        Cond(json!([column, "excludes", value.into()]))
    }
    /// `_uuid == uuid`
    pub fn uuid(u: &Uuid) -> Self {
        Cond::eq("_uuid", value::uuid(u))
    }
}

/// One mutation: `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation(pub(crate) Value);

impl Mutation {
    /// Adds set elements or map pairs; pairs whose key is already present are left alone.
    pub fn insert(column: &str, value: impl Into<Value>) -> Self {
        Mutation(json!([column, "insert", value.into()]))
    }
    /// Removes set elements, map pairs, or (given a set of keys) map keys.
    pub fn delete(column: &str, value: impl Into<Value>) -> Self {
        Mutation(json!([column, "delete", value.into()]))
    }
    /// Any other RFC 7047 mutator (`+=`, `-=`, `*=`, `/=`, `%=`).
    pub fn other(column: &str, mutator: &str, value: impl Into<Value>) -> Self {
        Mutation(json!([column, mutator, value.into()]))
    }
}

/// `wait`'s `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Wait until the selected columns of the matching rows equal `rows`.
    Equal,
    /// Wait until they differ from `rows`.
    NotEqual,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    op: &'static str,
    table: String,
    body: serde_json::Map<String, Value>,
}

impl Op {
    fn new(op: &'static str, table: &str) -> Self {
        let mut body = serde_json::Map::new();
        body.insert("op".into(), op.into());
        if !table.is_empty() {
            body.insert("table".into(), table.into());
        }
        Op {
            op,
            table: table.to_string(),
            body,
        }
    }

    fn with(mut self, key: &str, v: Value) -> Self {
        self.body.insert(key.to_string(), v);
        self
    }

    fn conds(conds: Vec<Cond>) -> Value {
        Value::Array(conds.into_iter().map(|c| c.0).collect())
    }

    /// `insert` of `row` (a JSON object of column → value).
    pub fn insert(table: &str, row: Value) -> Self {
        Op::new("insert", table).with("row", row)
    }
    /// Names the inserted row so later operations can refer to it with
    /// [`value::named_uuid`].
    pub fn uuid_name(self, name: &str) -> Self {
        self.with("uuid-name", name.into())
    }
    /// `select` of the rows matching all `conds` (no conds: every row).
    pub fn select(table: &str, conds: Vec<Cond>) -> Self {
        Op::new("select", table).with("where", Op::conds(conds))
    }
    /// Restricts the columns a `select` returns, or the columns a `wait` compares.
    pub fn columns(self, columns: &[&str]) -> Self {
        self.with("columns", json!(columns))
    }
    /// `update`: sets the columns in `row` on every matching row.
    pub fn update(table: &str, conds: Vec<Cond>, row: Value) -> Self {
        Op::new("update", table)
            .with("where", Op::conds(conds))
            .with("row", row)
    }
    /// `mutate`: applies `mutations`, in order, to every matching row.
    pub fn mutate(table: &str, conds: Vec<Cond>, mutations: Vec<Mutation>) -> Self {
        let m = Value::Array(mutations.into_iter().map(|m| m.0).collect());
        Op::new("mutate", table)
            .with("where", Op::conds(conds))
            .with("mutations", m)
    }
    /// `delete` of every matching row.
    pub fn delete(table: &str, conds: Vec<Cond>) -> Self {
        Op::new("delete", table).with("where", Op::conds(conds))
    }
    /// `wait` until the `columns` of the matching rows compare `until` to `rows`. The timeout
    /// is 0: the operation (and the transaction) fails at once when the condition does not
    /// hold, which turns `wait` into a guard for optimistic concurrency.
    pub fn wait(table: &str, conds: Vec<Cond>, columns: &[&str], until: Until, rows: Vec<Value>) -> Self {
        let until = match until {
            Until::Equal => "==",
            Until::NotEqual => "!=",
        };
        Op::new("wait", table)
            .with("where", Op::conds(conds))
            .with("columns", json!(columns))
            .with("until", until.into())
            .with("rows", Value::Array(rows))
            .with("timeout", 0.into())
    }
    /// Overrides a `wait`'s timeout (milliseconds).
    pub fn timeout_ms(self, ms: u64) -> Self {
        self.with("timeout", ms.into())
    }
    /// `comment`: recorded in the database log, handy to tell who changed what.
    pub fn comment(text: &str) -> Self {
        Op::new("comment", "").with("comment", text.into())
    }

    /// The operation name (`insert`, `select`, ...).
    pub fn kind(&self) -> &'static str {
        self.op
    }
    /// The table it works on (empty for `comment`).
    pub fn table(&self) -> &str {
        &self.table
    }
    /// The operation as it goes on the wire.
    pub fn to_json(&self) -> Value {
        Value::Object(self.body.clone())
    }
}

/// The result of one successful operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpResult {
    /// `insert`: the new row's uuid.
    pub uuid: Option<Uuid>,
    /// `select`: the rows.
    pub rows: Vec<Row>,
    /// `update`, `mutate`, `delete`: how many rows matched.
    pub count: Option<u64>,
}

/// `transact` params: `[db, op, op, ...]`.
pub(crate) fn transact_params(db: &str, ops: &[Op]) -> Value {
    let mut p = vec![Value::from(db)];
    p.extend(ops.iter().map(Op::to_json));
    Value::Array(p)
}

/// Turns a `transact` result into per-operation results, or the first error: an operation's
/// (at its index) or the commit's (one element past the operations).
pub(crate) fn parse_transact_reply(db: &str, ops: &[Op], reply: Value) -> Result<Vec<OpResult>> {
    let protocol = |reason: String| Error::Protocol {
        db: db.into(),
        method: "transact".into(),
        reason,
    };
    let Value::Array(items) = reply else {
        return Err(protocol(format!("result is not an array: {reply}")));
    };
    for (index, item) in items.iter().enumerate() {
        if item.get("error").is_none_or(Value::is_null) {
            continue;
        }
        let Some(server) = ServerError::from_json(item) else {
            continue;
        };
        return Err(match ops.get(index) {
            Some(op) => Error::Operation {
                db: db.into(),
                index,
                op: op.op,
                table: op.table.clone(),
                server,
            },
            None => Error::Commit {
                db: db.into(),
                tables: tables_of(ops),
                server,
            },
        });
    }
    if items.len() < ops.len() {
        return Err(protocol(format!(
            "{} results for {} operations",
            items.len(),
            ops.len()
        )));
    }
    Ok(items.into_iter().take(ops.len()).map(op_result).collect())
}

fn op_result(item: Value) -> OpResult {
    let mut r = OpResult::default();
    if let Value::Object(mut o) = item {
        r.uuid = o.remove("uuid").and_then(|u| serde_json::from_value(u).ok());
        r.count = o.get("count").and_then(Value::as_u64);
        if let Some(Value::Array(rows)) = o.remove("rows") {
            r.rows = rows
                .into_iter()
                .filter_map(|row| match row {
                    Value::Object(m) => Some(Row(m)),
                    _ => None,
                })
                .collect();
        }
    }
    r
}

fn tables_of(ops: &[Op]) -> String {
    let mut t: Vec<&str> = ops.iter().map(|o| o.table.as_str()).filter(|t| !t.is_empty()).collect();
    t.sort_unstable();
    t.dedup();
    t.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_wire_operations() {
        let op = Op::insert("Bridge", json!({"name": "br-int"})).uuid_name("br");
        assert_eq!(
            op.to_json(),
            json!({"op": "insert", "table": "Bridge", "row": {"name": "br-int"}, "uuid-name": "br"})
        );
        let op = Op::select("Bridge", vec![Cond::eq("name", "br-int")]).columns(&["_uuid", "ports"]);
        assert_eq!(
            op.to_json(),
            json!({"op": "select", "table": "Bridge", "where": [["name", "==", "br-int"]], "columns": ["_uuid", "ports"]})
        );
        let op = Op::mutate(
            "Bridge",
            vec![],
            vec![Mutation::insert("ports", value::named_uuid("p"))],
        );
        assert_eq!(
            op.to_json()["mutations"],
            json!([["ports", "insert", ["named-uuid", "p"]]])
        );
        let op = Op::wait("Port", vec![Cond::eq("name", "p")], &["name"], Until::Equal, vec![]);
        assert_eq!(op.to_json()["until"], "==");
        assert_eq!(op.to_json()["timeout"], 0);
        assert_eq!(
            Op::comment("lanes").to_json(),
            json!({"op": "comment", "comment": "lanes"})
        );
        assert_eq!(transact_params("db", &[Op::comment("c")])[0], "db");
    }

    #[test]
    fn parses_results() {
        let ops = [
            Op::insert("A", json!({})),
            Op::select("A", vec![]),
            Op::delete("A", vec![]),
        ];
        let reply = json!([
            {"uuid": ["uuid", "36bef046-7da7-43a5-905a-c17899216fcb"]},
            {"rows": [{"name": "x"}]},
            {"count": 2}
        ]);
        let r = parse_transact_reply("db", &ops, reply).unwrap();
        assert!(r[0].uuid.is_some());
        assert_eq!(r[1].rows[0].string("name").as_deref(), Some("x"));
        assert_eq!(r[2].count, Some(2));
    }

    #[test]
    fn errors_name_the_operation_or_the_commit() {
        let ops = [Op::select("A", vec![]), Op::insert("Logical_Switch_Port", json!({}))];
        let reply = json!([{"rows": []}, {"error": "constraint violation", "details": "name dup"}]);
        let e = parse_transact_reply("OVN_Northbound", &ops, reply).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OVN_Northbound: insert on Logical_Switch_Port (operation 1) failed: constraint violation: name dup"
        );
        let reply = json!([{"rows": []}, {"uuid": ["uuid", "36bef046-7da7-43a5-905a-c17899216fcb"]},
                          {"error": "referential integrity violation", "details": "x"}]);
        let e = parse_transact_reply("db", &ops, reply).unwrap_err();
        assert!(matches!(e, Error::Commit { .. }), "{e}");
        assert!(e.to_string().contains("A,Logical_Switch_Port"), "{e}");
    }
}
