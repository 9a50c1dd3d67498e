//! One error type for the crate. Every variant names what it was about (remote, database,
//! table, operation, row) so a caller can log it as it is.

use std::time::Duration;

/// The server's own words about a failure: RFC 7047 `error` and optional `details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Short error tag, e.g. `constraint violation`, `referential integrity violation`.
    pub error: String,
    /// Free text the server added, if any.
    pub details: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.details {
            Some(d) if !d.is_empty() => write!(f, "{}: {}", self.error, d),
            _ => f.write_str(&self.error),
        }
    }
}

impl ServerError {
    /// Parses the JSON-RPC `error` member or an operation's error object. `ovsdb-server` sends
    /// either a plain string (`"unknown method"`) or an object with `error` and `details`.
    pub(crate) fn from_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(Self {
                error: s.clone(),
                details: None,
            }),
            serde_json::Value::Object(o) => Some(Self {
                error: o
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("unknown error")
                    .to_string(),
                details: o.get("details").and_then(|d| d.as_str()).map(str::to_string),
            }),
            other => Some(Self {
                error: other.to_string(),
                details: None,
            }),
        }
    }
}

/// Errors of the OVSDB client and of the typed `Open_vSwitch` / `OVN_Northbound` operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote string is not `unix:PATH` or `tcp:HOST:PORT`.
    #[error("invalid ovsdb remote {remote:?}: {reason}")]
    InvalidRemote { remote: String, reason: &'static str },

    /// A call got no reply in time. `state` tells whether the client was connected at all.
    #[error("{remote}: {db} {method} timed out after {after:?} ({state})")]
    Timeout {
        remote: String,
        db: String,
        method: String,
        after: Duration,
        state: String,
    },

    /// The connection dropped while the call was in flight: it may or may not have been applied.
    #[error("{remote}: connection lost during {db} {method}")]
    Disconnected { remote: String, db: String, method: String },

    /// The client's background task is gone (all handles dropped or it panicked).
    #[error("{remote}: ovsdb client is closed")]
    Closed { remote: String },

    /// The server rejected a whole JSON-RPC call (unknown database, bad monitor request, ...).
    #[error("{db} {method} rejected: {server}")]
    Rpc {
        db: String,
        method: String,
        server: ServerError,
    },

    /// One operation of a transaction failed; the whole transaction was aborted.
    #[error("{db}: {op} on {table} (operation {index}) failed: {server}")]
    Operation {
        db: String,
        index: usize,
        op: &'static str,
        table: String,
        server: ServerError,
    },

    /// Every operation succeeded but the commit failed (e.g. a referential integrity violation).
    #[error("{db}: transaction on {tables} failed at commit: {server}")]
    Commit {
        db: String,
        tables: String,
        server: ServerError,
    },

    /// The reply did not have the shape RFC 7047 promises.
    #[error("{db} {method}: unexpected reply: {reason}")]
    Protocol { db: String, method: String, reason: String },

    /// A row the operation needs does not exist.
    #[error("{db}: {table} {name:?} not found")]
    NotFound {
        db: String,
        table: &'static str,
        name: String,
    },

    /// The database holds something that contradicts the request (duplicate names, a port that
    /// belongs to another bridge, a row that kept changing under us).
    #[error("{db}: {table} {name:?}: {reason}")]
    Conflict {
        db: String,
        table: &'static str,
        name: String,
        reason: String,
    },

    /// A bounded wait for a column value ended without seeing it.
    #[error("{table} {name:?}: {column} did not become {expected:?} within {waited:?}")]
    WaitTimeout {
        table: &'static str,
        name: String,
        column: String,
        expected: String,
        waited: Duration,
    },

    /// A wait was cancelled by its caller.
    #[error("{table} {name:?}: wait for {column}={expected:?} cancelled after {waited:?}")]
    Cancelled {
        table: &'static str,
        name: String,
        column: String,
        expected: String,
        waited: Duration,
    },
}

impl Error {
    /// True for failures that a retry may cure: no reply, a dropped connection, a wait that
    /// ran out. Operation, schema and conflict errors need someone to change something first.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. } | Error::Disconnected { .. } | Error::WaitTimeout { .. }
        )
    }

    /// The server's `error`/`details`, when the server said why.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Rpc { server, .. } | Error::Operation { server, .. } | Error::Commit { server, .. } => Some(server),
            _ => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_error_from_string_and_object() {
        let s = ServerError::from_json(&json!("unknown method")).unwrap();
        assert_eq!(s.to_string(), "unknown method");
        let o = ServerError::from_json(&json!({"error": "constraint violation", "details": "dup name"})).unwrap();
        assert_eq!(o.to_string(), "constraint violation: dup name");
        assert!(ServerError::from_json(&json!(null)).is_none());
    }

    #[test]
    fn operation_error_names_db_table_and_op() {
        let e = Error::Operation {
            db: "OVN_Northbound".into(),
            index: 2,
            op: "insert",
            table: "Logical_Switch_Port".into(),
            server: ServerError {
                error: "constraint violation".into(),
                details: Some("dup".into()),
            },
        };
        assert_eq!(
            e.to_string(),
            "OVN_Northbound: insert on Logical_Switch_Port (operation 2) failed: constraint violation: dup"
        );
        assert!(!e.is_transient());
        assert_eq!(e.server_error().unwrap().error, "constraint violation");
    }
}
