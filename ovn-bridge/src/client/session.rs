//! The background task behind a [`Client`](super::Client): connect with exponential backoff,
//! re-send monitors, match replies to calls, answer the server's `echo` (its inactivity
//! probe), send our own probe, and start over when the connection drops.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{CallError, CallReply, ClientOptions, Cmd, ConnState, MonitorReg, Stats};
use crate::error::ServerError;
use crate::framing::Framer;
use crate::monitor::{EventKind, MonitorEvent, TableUpdates};
use crate::remote::Remote;

/// The id of our own inactivity probe; ids of real calls are numbers.
const PROBE_ID: &str = "lanes-probe";

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Writer = WriteHalf<Box<dyn Io>>;

enum Pending {
    Call {
        method: &'static str,
        reply: oneshot::Sender<CallReply>,
        monitor: Option<MonitorReg>,
    },
    /// A monitor re-sent after a reconnect.
    Resync(String),
    /// A reply nobody waits for (`monitor_cancel`).
    Ignore,
}

/// Why a session ended.
enum End {
    /// Every handle is gone: stop for good.
    Shutdown,
    /// The connection failed; reconnect.
    Lost(String),
}

pub(crate) struct Task {
    remote: Remote,
    opts: ClientOptions,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    state: watch::Sender<ConnState>,
    stats: Arc<Stats>,
    /// Calls made while disconnected, sent once connected.
    queue: VecDeque<Cmd>,
    monitors: HashMap<String, MonitorReg>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

impl Task {
    pub(crate) fn new(
        remote: Remote,
        opts: ClientOptions,
        cmd_rx: mpsc::UnboundedReceiver<Cmd>,
        state: watch::Sender<ConnState>,
        stats: Arc<Stats>,
    ) -> Self {
        Task {
            remote,
            opts,
            cmd_rx,
            state,
            stats,
            queue: VecDeque::new(),
            monitors: HashMap::new(),
            pending: HashMap::new(),
            next_id: 1,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = self.opts.backoff_min;
        let mut attempts = 0u32;
        loop {
            let remote = self.remote.clone();
            let stream = match self.offline(connect(&remote, self.opts.connect_timeout)).await {
                None => break,
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    attempts += 1;
                    // Loud on attempts 1, 2, 4, 8, ...: an unreachable OVSDB shows without flooding.
                    if attempts.is_power_of_two() {
                        tracing::warn!(remote = %self.remote, attempts, error = %e, "ovsdb connect failed");
                    } else {
                        tracing::debug!(remote = %self.remote, attempts, error = %e, "ovsdb connect failed");
                    }
                    self.state.send_replace(ConnState::Connecting {
                        attempts,
                        last_error: Some(e),
                    });
                    if self.offline(tokio::time::sleep(backoff)).await.is_none() {
                        break;
                    }
                    backoff = (backoff * 2).min(self.opts.backoff_max);
                    continue;
                }
            };
            self.stats.connects.fetch_add(1, Ordering::Relaxed);
            self.state.send_replace(ConnState::Connected);
            tracing::debug!(remote = %self.remote, "ovsdb connected");
            (backoff, attempts) = (self.opts.backoff_min, 0);
            let end = self.session(stream).await;
            for (_, p) in self.pending.drain() {
                if let Pending::Call { reply, .. } = p {
                    let _ = reply.send(Err(CallError::Disconnected));
                }
            }
            match end {
                End::Shutdown => break,
                End::Lost(reason) => {
                    tracing::warn!(remote = %self.remote, %reason, "ovsdb connection lost, reconnecting");
                    self.state.send_replace(ConnState::Connecting {
                        attempts: 0,
                        last_error: Some(reason),
                    });
                }
            }
        }
        self.state.send_replace(ConnState::Closed);
    }

    /// Runs `fut` while disconnected, queueing calls meanwhile. `None`: every handle is gone.
    async fn offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                cmd = self.cmd_rx.recv() => match cmd? {
                    Cmd::CancelMonitor(id) => { self.monitors.remove(&id); }
                    call => self.queue.push_back(call),
                },
            }
        }
    }

    async fn session(&mut self, stream: Box<dyn Io>) -> End {
        let (mut rd, mut wr) = tokio::io::split(stream);
        if let Err(e) = self.resume(&mut wr).await {
            return End::Lost(e);
        }
        let mut framer = Framer::new();
        let mut buf = vec![0u8; 64 * 1024];
        let probe = self.opts.probe_interval;
        let mut last_rx = Instant::now();
        let mut probe_sent: Option<Instant> = None;
        let tick_every = probe.map_or(Duration::from_secs(3600), |p| (p / 4).max(Duration::from_millis(10)));
        let mut tick = tokio::time::interval(tick_every);
        loop {
            let step = tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return End::Shutdown,
                    Some(cmd) => self.send_cmd(&mut wr, cmd).await,
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) => Err("connection closed by server".to_string()),
                    Err(e) => Err(format!("read: {e}")),
                    Ok(n) => {
                        (last_rx, probe_sent) = (Instant::now(), None);
                        framer.extend(&buf[..n]);
                        self.drain(&mut framer, &mut wr).await
                    }
                },
                _ = tick.tick(), if probe.is_some() => {
                    let interval = probe.unwrap_or_default();
                    match probe_sent {
                        Some(at) if at.elapsed() >= interval => {
                            Err(format!("no reply to inactivity probe within {interval:?}"))
                        }
                        None if last_rx.elapsed() >= interval => {
                            probe_sent = Some(Instant::now());
                            self.stats.probes_sent.fetch_add(1, Ordering::Relaxed);
                            write(&mut wr, &json!({"id": PROBE_ID, "method": "echo", "params": []})).await
                        }
                        _ => Ok(()),
                    }
                }
            };
            if let Err(reason) = step {
                return End::Lost(reason);
            }
        }
    }

    /// After (re)connecting: re-send every monitor, then the calls queued while offline.
    async fn resume(&mut self, wr: &mut Writer) -> Result<(), String> {
        let monitors: Vec<(String, Value)> = self
            .monitors
            .values()
            .map(|m| (m.id.clone(), json!([m.db, m.id, m.requests])))
            .collect();
        for (id, params) in monitors {
            self.send(wr, "monitor", params, Pending::Resync(id)).await?;
        }
        while let Some(cmd) = self.queue.pop_front() {
            self.send_cmd(wr, cmd).await?;
        }
        Ok(())
    }

    async fn send_cmd(&mut self, wr: &mut Writer, cmd: Cmd) -> Result<(), String> {
        match cmd {
            Cmd::Call {
                method,
                params,
                reply,
                monitor,
            } => {
                if reply.is_closed() {
                    return Ok(()); // the caller timed out while this waited for a connection
                }
                self.send(wr, method, params, Pending::Call { method, reply, monitor })
                    .await
            }
            Cmd::CancelMonitor(id) => match self.monitors.remove(&id) {
                Some(_) => self.send(wr, "monitor_cancel", json!([id]), Pending::Ignore).await,
                None => Ok(()),
            },
        }
    }

    async fn send(&mut self, wr: &mut Writer, method: &str, params: Value, pending: Pending) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        write(wr, &json!({"id": id, "method": method, "params": params})).await
    }

    async fn drain(&mut self, framer: &mut Framer, wr: &mut Writer) -> Result<(), String> {
        while let Some(msg) = framer.next_message().map_err(|e| e.to_string())? {
            self.handle(msg, wr).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, msg: Value, wr: &mut Writer) -> Result<(), String> {
        match msg.get("method").and_then(Value::as_str) {
            Some("echo") => {
                self.stats.echoes_answered.fetch_add(1, Ordering::Relaxed);
                let params = msg.get("params").cloned().unwrap_or_else(|| json!([]));
                write(wr, &json!({"id": msg.get("id"), "result": params, "error": null})).await
            }
            Some("update") => {
                let (Some(id), Some(updates)) = (msg["params"][0].as_str(), msg["params"].get(1)) else {
                    return Err(format!("malformed update notification: {msg}"));
                };
                let event = MonitorEvent {
                    kind: EventKind::Update,
                    updates: TableUpdates::from_json(updates),
                };
                self.deliver(wr, id, event).await
            }
            Some(other) => {
                tracing::debug!(remote = %self.remote, method = other, "ignoring request from server");
                Ok(())
            }
            None => self.reply(msg, wr).await,
        }
    }

    async fn reply(&mut self, msg: Value, wr: &mut Writer) -> Result<(), String> {
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            return Ok(()); // our probe's reply, or something we never asked for
        };
        let Some(pending) = self.pending.remove(&id) else {
            return Ok(());
        };
        let outcome = match msg.get("error").and_then(ServerError::from_json) {
            Some(e) => Err(e),
            None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
        };
        match (pending, outcome) {
            (Pending::Ignore, _) => Ok(()),
            (
                Pending::Call {
                    reply, monitor: None, ..
                },
                outcome,
            ) => {
                let _ = reply.send(outcome.map_err(CallError::Server));
                Ok(())
            }
            (
                Pending::Call {
                    reply,
                    monitor: Some(reg),
                    ..
                },
                Ok(initial),
            ) => {
                let event = MonitorEvent {
                    kind: EventKind::Initial,
                    updates: TableUpdates::from_json(&initial),
                };
                let id = reg.id.clone();
                if reg.tx.send(event).is_err() {
                    // The caller gave up (timed out) before the server answered.
                    return self.send(wr, "monitor_cancel", json!([id]), Pending::Ignore).await;
                }
                self.monitors.insert(id, reg);
                let _ = reply.send(Ok(Value::Null));
                Ok(())
            }
            (
                Pending::Call {
                    reply,
                    monitor: Some(_),
                    ..
                },
                Err(e),
            ) => {
                let _ = reply.send(Err(CallError::Server(e)));
                Ok(())
            }
            (Pending::Resync(id), Ok(contents)) => {
                let event = MonitorEvent {
                    kind: EventKind::Resync,
                    updates: TableUpdates::from_json(&contents),
                };
                self.deliver(wr, &id, event).await
            }
            (Pending::Resync(id), Err(e)) => {
                // Dropping the registration closes the Monitor's channel: its reader sees None.
                tracing::warn!(remote = %self.remote, monitor = %id, error = %e, "server refused re-sent monitor");
                self.monitors.remove(&id);
                Ok(())
            }
        }
    }

    async fn deliver(&mut self, wr: &mut Writer, id: &str, event: MonitorEvent) -> Result<(), String> {
        let Some(reg) = self.monitors.get(id) else {
            return Ok(());
        };
        if reg.tx.send(event).is_err() {
            self.monitors.remove(id);
            return self.send(wr, "monitor_cancel", json!([id]), Pending::Ignore).await;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Call { method, .. } => write!(f, "Call({method})"),
            Pending::Resync(id) => write!(f, "Resync({id})"),
            Pending::Ignore => f.write_str("Ignore"),
        }
    }
}

async fn write(wr: &mut Writer, msg: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(msg).map_err(|e| format!("encode: {e}"))?;
    wr.write_all(&bytes).await.map_err(|e| format!("write: {e}"))?;
    wr.flush().await.map_err(|e| format!("write: {e}"))
}

async fn connect(remote: &Remote, timeout: Duration) -> Result<Box<dyn Io>, String> {
    let attempt = async {
        match remote {
            Remote::Unix(path) => UnixStream::connect(path).await.map(|s| Box::new(s) as Box<dyn Io>),
            Remote::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                // Small request/reply messages: don't let Nagle hold them back.
                s.set_nodelay(true)?;
                Ok(Box::new(s) as Box<dyn Io>)
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect {remote}: {e}")),
        Err(_) => Err(format!("connect {remote}: timed out after {timeout:?}")),
    }
}
