//! The OVSDB client handle. One background task per [`Client`] owns the connection (see
//! `session.rs`); handles are cheap clones that send it commands.

mod session;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result, ServerError};
use crate::monitor::{monitor_requests, Monitor, MonitorRequest};
use crate::ops::{parse_transact_reply, transact_params, Op, OpResult};
use crate::remote::Remote;

/// Timeouts, probing and reconnect backoff.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline for each call, waiting for a connection included. Default 10 s.
    pub call_timeout: Duration,
    /// Send our own `echo` after this long without hearing from the server, and drop the
    /// connection if the next interval passes in silence too (what OVS's own clients do).
    /// `None` disables it. Default 5 s.
    pub probe_interval: Option<Duration>,
    /// First reconnect delay; it doubles per failed attempt. Default 0.5 s.
    pub backoff_min: Duration,
    /// Longest reconnect delay. Default 30 s.
    pub backoff_max: Duration,
    /// Deadline for one connect attempt. Default 5 s.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            call_timeout: Duration::from_secs(10),
            probe_interval: Some(Duration::from_secs(5)),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Connection state, as the background task last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Not connected; `attempts` failed so far, the last one with `last_error`.
    Connecting { attempts: u32, last_error: Option<String> },
    /// Connected.
    Connected,
    /// The background task has ended.
    Closed,
}

impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnState::Connecting {
                last_error: Some(e),
                attempts,
            } => {
                write!(f, "not connected after {attempts} attempts: {e}")
            }
            ConnState::Connecting { .. } => f.write_str("not connected yet"),
            ConnState::Connected => f.write_str("connected"),
            ConnState::Closed => f.write_str("closed"),
        }
    }
}

/// Counters, mostly for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    connects: AtomicU64,
    echoes_answered: AtomicU64,
    probes_sent: AtomicU64,
}

/// A snapshot of [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful connects (1 + reconnects).
    pub connects: u64,
    /// `echo` requests from the server (its inactivity probe) we answered.
    pub echoes_answered: u64,
    /// `echo` requests we sent as our own inactivity probe.
    pub probes_sent: u64,
}

pub(crate) enum CallError {
    Server(ServerError),
    Disconnected,
}

pub(crate) type CallReply = std::result::Result<Value, CallError>;

/// A monitor being set up or re-established: enough to re-send it after a reconnect.
pub(crate) struct MonitorReg {
    pub(crate) id: String,
    pub(crate) db: String,
    pub(crate) requests: Value,
    pub(crate) tx: mpsc::UnboundedSender<crate::monitor::MonitorEvent>,
}

pub(crate) enum Cmd {
    Call {
        method: &'static str,
        params: Value,
        reply: oneshot::Sender<CallReply>,
        monitor: Option<MonitorReg>,
    },
    CancelMonitor(String),
}

/// An OVSDB client: a cheap, cloneable handle to one connection that reconnects by itself.
///
/// Calls made while disconnected wait (within their timeout) for the connection; calls in
/// flight when it drops fail with [`Error::Disconnected`], since they may or may not have
/// been applied. Monitors are re-sent after every reconnect.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    remote: Remote,
    opts: ClientOptions,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<ConnState>,
    stats: Arc<Stats>,
    next_monitor: AtomicU64,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Call { method, .. } => write!(f, "Call({method})"),
            Cmd::CancelMonitor(id) => write!(f, "CancelMonitor({id})"),
        }
    }
}

impl Client {
    /// Starts a client for `remote` (`unix:PATH` or `tcp:HOST:PORT`) with default options.
    /// It connects in the background: this returns at once and never fails for an unreachable
    /// server. Must be called inside a tokio runtime.
    pub fn new(remote: &str) -> Result<Self> {
        Client::with_options(remote, ClientOptions::default())
    }

    /// [`Client::new`] with explicit options.
    pub fn with_options(remote: &str, opts: ClientOptions) -> Result<Self> {
        let remote = Remote::parse(remote)?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ConnState::Connecting {
            attempts: 0,
            last_error: None,
        });
        let stats = Arc::new(Stats::default());
        let task = session::Task::new(remote.clone(), opts.clone(), cmd_rx, state_tx, stats.clone());
        tokio::spawn(task.run());
        let inner = Inner {
            remote,
            opts,
            cmd_tx,
            state,
            stats,
            next_monitor: AtomicU64::new(1),
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The remote this client connects to.
    pub fn remote(&self) -> &Remote {
        &self.inner.remote
    }

    /// The current connection state.
    pub fn state(&self) -> ConnState {
        self.inner.state.borrow().clone()
    }

    /// Counters since the client started.
    pub fn stats(&self) -> ClientStats {
        let s = &self.inner.stats;
        ClientStats {
            connects: s.connects.load(Ordering::Relaxed),
            echoes_answered: s.echoes_answered.load(Ordering::Relaxed),
            probes_sent: s.probes_sent.load(Ordering::Relaxed),
        }
    }

    /// Waits until connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let mut state = self.inner.state.clone();
        let connected = async {
            let s = state
                .wait_for(|s| matches!(s, ConnState::Connected | ConnState::Closed))
                .await;
            s.map(|s| *s == ConnState::Connected).unwrap_or(false)
        };
        match tokio::time::timeout(timeout, connected).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Closed {
                remote: self.inner.remote.to_string(),
            }),
            Err(_) => Err(self.timeout_error("", "connect", timeout)),
        }
    }

    fn timeout_error(&self, db: &str, method: &str, after: Duration) -> Error {
        Error::Timeout {
            remote: self.inner.remote.to_string(),
            db: db.to_string(),
            method: method.to_string(),
            after,
            state: self.state().to_string(),
        }
    }

    /// Sends one JSON-RPC request and waits for its reply, at most `timeout`.
    /// `db` only labels errors.
    async fn call(
        &self,
        db: &str,
        method: &'static str,
        params: Value,
        monitor: Option<MonitorReg>,
        timeout: Duration,
    ) -> Result<Value> {
        let (reply, rx) = oneshot::channel();
        let closed = || Error::Closed {
            remote: self.inner.remote.to_string(),
        };
        self.inner
            .cmd_tx
            .send(Cmd::Call {
                method,
                params,
                reply,
                monitor,
            })
            .map_err(|_| closed())?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(self.timeout_error(db, method, timeout)),
            Ok(Err(_)) => Err(closed()),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(CallError::Disconnected))) => Err(Error::Disconnected {
                remote: self.inner.remote.to_string(),
                db: db.to_string(),
                method: method.to_string(),
            }),
            Ok(Ok(Err(CallError::Server(server)))) => Err(Error::Rpc {
                db: db.to_string(),
                method: method.to_string(),
                server,
            }),
        }
    }

    /// `transact`: runs `ops` atomically in `db`, within the default call timeout.
    pub async fn transact(&self, db: &str, ops: &[Op]) -> Result<Vec<OpResult>> {
        self.transact_timeout(db, ops, self.inner.opts.call_timeout).await
    }

    /// `transact` with an explicit timeout.
    pub async fn transact_timeout(&self, db: &str, ops: &[Op], timeout: Duration) -> Result<Vec<OpResult>> {
        tracing::trace!(db, ops = %transact_params(db, ops), "transact");
        let reply = self
            .call(db, "transact", transact_params(db, ops), None, timeout)
            .await?;
        parse_transact_reply(db, ops, reply)
    }

    /// `monitor`: returns once the server has accepted it; the initial contents are the
    /// monitor's first event.
    pub async fn monitor(&self, db: &str, requests: &[MonitorRequest]) -> Result<Monitor> {
        let id = format!(
            "lanes-monitor-{}",
            self.inner.next_monitor.fetch_add(1, Ordering::Relaxed)
        );
        let requests = monitor_requests(requests);
        let (tx, rx) = mpsc::unbounded_channel();
        // Built before the call so that a timeout (which drops it) cancels the monitor.
        let handle = Monitor {
            id: id.clone(),
            db: db.to_string(),
            rx,
            cmd_tx: self.inner.cmd_tx.clone(),
        };
        let params = json!([db, id.clone(), requests.clone()]);
        let reg = MonitorReg {
            id,
            db: db.to_string(),
            requests,
            tx,
        };
        self.call(db, "monitor", params, Some(reg), self.inner.opts.call_timeout)
            .await?;
        Ok(handle)
    }

    /// `echo`: the server returns `payload` unchanged.
    pub async fn echo(&self, payload: Value) -> Result<Value> {
        self.call("", "echo", payload, None, self.inner.opts.call_timeout).await
    }

    /// `list_dbs`
    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let v = self
            .call("", "list_dbs", json!([]), None, self.inner.opts.call_timeout)
            .await?;
        serde_json::from_value(v.clone()).map_err(|_| Error::Protocol {
            db: String::new(),
            method: "list_dbs".into(),
            reason: format!("not a list of names: {v}"),
        })
    }

    /// `get_schema`, parsed with `ovsdb`'s schema types.
    pub async fn get_schema(&self, db: &str) -> Result<ovsdb::schema::Schema> {
        let mut v = self
            .call(db, "get_schema", json!([db]), None, self.inner.opts.call_timeout)
            .await?;
        wrap_single_enums(&mut v);
        serde_json::from_value(v).map_err(|e| Error::Protocol {
            db: db.to_string(),
            method: "get_schema".into(),
            reason: e.to_string(),
        })
    }

    /// Checks that the server's `db` schema has every `(table, columns)` listed: a clear error
    /// at start-up instead of a failed transaction later (e.g. an OVN too old for a column).
    pub async fn check_schema(&self, db: &str, needs: &[(&str, &[&str])]) -> Result<()> {
        let schema = self.get_schema(db).await?;
        missing_from_schema(&schema, needs).map_or(Ok(()), |reason| {
            Err(Error::Protocol {
                db: db.to_string(),
                method: "get_schema".into(),
                reason,
            })
        })
    }
}

/// `ovsdb-server` sends a one-value enum as the bare atom (`Meter_Band.action` in
/// OVN_Northbound: `"enum": "drop"`, though the schema file says `["set", ["drop"]]`), which
/// `ovsdb`'s `BaseKind` cannot read (it wants a `Set`). Put the set notation back.
fn wrap_single_enums(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                let is_set = child
                    .as_array()
                    .is_some_and(|a| a.first().and_then(Value::as_str) == Some("set"));
                if k == "enum" && !is_set {
                    *child = json!(["set", [child.take()]]);
                } else {
                    wrap_single_enums(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_single_enums),
        _ => {}
    }
}

/// The first table or column of `needs` that `schema` lacks, described.
pub(crate) fn missing_from_schema(schema: &ovsdb::schema::Schema, needs: &[(&str, &[&str])]) -> Option<String> {
    for (table, columns) in needs {
        let Some(t) = schema.tables().iter().find(|t| t.name() == *table) else {
            return Some(format!(
                "schema {} {} has no table {table}",
                schema.name(),
                schema.version()
            ));
        };
        if let Some(c) = columns
            .iter()
            .find(|c| !t.columns().iter().any(|col| col.name() == **c))
        {
            return Some(format!(
                "schema {} {} has no column {table}.{c}",
                schema.name(),
                schema.version()
            ));
        }
    }
    None
}
