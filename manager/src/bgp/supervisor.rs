//! Runs BIRD as lanesd's child and keeps it running.
//!
//! BIRD runs as `bird -f -c <run>/bird.conf -s <run>/bird.ctl -P <run>/bird.pid` (plus `-R`,
//! graceful-restart recovery, when it replaces a BIRD that died or left routes behind), in
//! lanesd's network namespace or the one given. Its stderr goes to lanesd's log line by line.
//!
//! * [`Supervisor::apply`] checks a config with `bird -p -c`, renames it over `bird.conf` and
//!   `configure`s BIRD, or starts it. Calls within [`DEBOUNCE`] coalesce: the first caller
//!   spawns a flush task that waits 100 ms, then takes the *latest* text and applies it once;
//!   every caller whose text was taken (or superseded) gets that one outcome.
//! * [`Supervisor::run`] restarts BIRD with `-R` when it exits unexpectedly ([`Backoff`]).
//! * [`Supervisor::stop`] ends BIRD without withdrawing anything (see [`StopMode`]).
//!
//! What BIRD 2.0.12 did here (two netns, kernel protocol with `learn; persist; graceful restart`):
//! after SIGKILL, SIGTERM or `birdc graceful restart` the kernel routes stayed. SIGTERM sends the
//! peers a Cease (they drop our routes at once); `graceful restart` and SIGKILL do not (the peers
//! keep our routes as stale until the new BIRD's End-of-RIB). A second restart before the peers
//! got that End-of-RIB (BIRD 2.0.12 sends it up to ~4 s after Established) makes them drop the
//! stale routes (RFC 4724), and a BIRD still recovering has no session to send a Cease on.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::sync::watch;

use super::birdctl::{BirdCtl, CtlError};

mod process;
use process::{blocking, end_stale_bird, kernel_has_bird_routes, lock, spawn_bird, Proc};

/// How long `apply` waits for more calls before applying.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
const CTL_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdConfig {
    /// `bird`, or a path to it.
    pub bird_path: PathBuf,
    /// `bird.conf`, `bird.ctl` and `bird.pid` live here.
    pub run_dir: PathBuf,
    /// A netns file (`/run/netns/x`) to run BIRD in; usually `None`: lanesd's own.
    pub netns: Option<PathBuf>,
}

impl BirdConfig {
    pub fn conf_path(&self) -> PathBuf {
        self.run_dir.join("bird.conf")
    }
    pub fn ctl_path(&self) -> PathBuf {
        self.run_dir.join("bird.ctl")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.run_dir.join("bird.pid")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Applied {
    Started,
    Reconfigured,
    /// The text equals the running `bird.conf`.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BirdError {
    /// `bird -p` refused the config: BIRD's `file:line:col message`, the file kept as
    /// `bird.conf.rejected`.
    #[error("bird rejected the config: {0}")]
    Rejected(String),
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    #[error("start bird: {0}")]
    Start(String),
    #[error(transparent)]
    Ctl(#[from] CtlError),
    #[error("the bird supervisor is stopped")]
    Stopped,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BirdError {
    let what = what.into();
    move |e| BirdError::Io {
        what,
        message: e.to_string(),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SupervisorStats {
    /// Unexpected exits of BIRD (each followed by a restart attempt).
    pub restarts: u64,
    /// Coalesced applies (one per `bird -p` + `configure`/start), not calls.
    pub applies_ok: u64,
    pub applies_failed: u64,
    pub last_error: Option<String>,
    /// The running BIRD's PID.
    pub pid: Option<u32>,
}

/// How [`Supervisor::stop_with`] ends BIRD. Kernel routes stay either way (`persist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `birdc graceful restart`: peers keep our routes until a BIRD started with `-R` comes back
    /// (or their restart timer runs out). For lanesd restarts and upgrades.
    GracefulRestart,
    /// SIGTERM: BIRD sends Cease, peers drop our routes now. For taking the node out.
    Withdraw,
}

/// Restart delays: 0.5 s doubling to 30 s, back to 0.5 s after 60 s of healthy running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        let initial = Duration::from_millis(500);
        Backoff {
            initial,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            next: initial,
        }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last BIRD ran.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.reset_after {
            self.next = self.initial;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

#[derive(Debug, Default)]
struct State {
    child: Option<Arc<Proc>>,
    /// A checked config is in place: BIRD should be running.
    wanted: bool,
    stopped: bool,
    stats: SupervisorStats,
}

#[derive(Debug, Default)]
struct Batch {
    seq: u64,
    latest: Option<String>,
    flush_pending: bool,
}

#[derive(Debug, Clone, Default)]
struct Flushed {
    upto: u64,
    result: Option<Result<Applied, BirdError>>,
}

#[derive(Debug)]
struct Shared {
    cfg: BirdConfig,
    /// Serialises starting, configuring and stopping.
    op: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    batch: Mutex<Batch>,
    flushed: watch::Sender<Flushed>,
    /// Bumped whenever a new BIRD starts, so that `run` picks it up.
    started: watch::Sender<u64>,
}

/// Owns the BIRD of one run dir. Dropping it leaves BIRD running, as a lanesd crash would; the
/// next `Supervisor` on that run dir finds it by its pid file and replaces it (graceful restart).
#[derive(Debug)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    pub fn new(mut cfg: BirdConfig) -> Self {
        // BIRD resolves `configure "FILE"` against its own cwd: keep every path absolute.
        if cfg.run_dir.is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                cfg.run_dir = cwd.join(&cfg.run_dir);
            }
        }
        let shared = Shared {
            cfg,
            op: tokio::sync::Mutex::new(()),
            state: Mutex::default(),
            batch: Mutex::default(),
            flushed: watch::Sender::new(Flushed::default()),
            started: watch::Sender::new(0),
        };
        Supervisor {
            shared: Arc::new(shared),
        }
    }

    pub fn config(&self) -> &BirdConfig {
        &self.shared.cfg
    }

    /// Check `text` with `bird -p -c`; on success replace `bird.conf` atomically and `configure`
    /// the running BIRD, or start it. A config that fails the check never replaces the good one.
    pub async fn apply(&self, text: &str) -> Result<Applied, BirdError> {
        if lock(&self.shared.state).stopped {
            return Err(BirdError::Stopped);
        }
        let mut rx = self.shared.flushed.subscribe();
        let (mine, leader) = {
            let mut b = lock(&self.shared.batch);
            b.seq += 1;
            b.latest = Some(text.to_string());
            let leader = !b.flush_pending;
            b.flush_pending = true;
            (b.seq, leader)
        };
        if leader {
            // A task, not this future: followers must get their answer even if we are dropped.
            tokio::spawn(self.shared.clone().flush());
        }
        let done = rx.wait_for(|f| f.upto >= mine).await.map_err(|_| BirdError::Stopped)?;
        done.result.clone().unwrap_or(Err(BirdError::Stopped))
    }

    /// Supervise until `shutdown` turns true: restart BIRD with `-R` after an unexpected exit.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let s = &self.shared;
        let mut started = s.started.subscribe();
        let mut backoff = Backoff::default();
        loop {
            let (child, wanted, stopped) = {
                let st = lock(&s.state);
                (st.child.clone(), st.wanted, st.stopped)
            };
            if stopped || *shutdown.borrow() {
                return;
            }
            match &child {
                Some(c) => {
                    if c.exit_status().is_none() {
                        started.mark_unchanged();
                        tokio::select! {
                            _ = c.wait() => {}
                            _ = started.changed() => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                    if lock(&s.state).stopped {
                        return;
                    }
                    let mut st = lock(&s.state);
                    st.stats.restarts += 1;
                    let msg = format!(
                        "bird (pid {}) exited: {}; last output: {}",
                        c.pid,
                        c.exit_status().unwrap_or_default(),
                        c.tail()
                    );
                    tracing::error!(restarts = st.stats.restarts, "{msg}");
                    st.stats.last_error = Some(msg);
                    // An apply may have started a new BIRD meanwhile: only forget this one.
                    if st.child.as_ref().is_some_and(|now| Arc::ptr_eq(now, c)) {
                        (st.child, st.stats.pid) = (None, None);
                    }
                }
                None if wanted => {}
                None => {
                    tokio::select! {
                        _ = started.changed() => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            }
            let delay = backoff.next_delay(child.map_or(Duration::ZERO, |c| c.started.elapsed()));
            tracing::info!(?delay, "restarting bird with -R after the backoff");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            let _op = s.op.lock().await;
            match s.start_locked(true).await {
                Ok(()) => {}
                Err(BirdError::Stopped) => return,
                Err(e) => {
                    tracing::error!(error = %e, "restarting bird failed");
                    lock(&s.state).stats.last_error = Some(e.to_string());
                }
            }
        }
    }

    /// Stop BIRD for a lanesd restart: [`StopMode::GracefulRestart`]. Kernel routes stay.
    pub async fn stop(&self) {
        self.stop_with(StopMode::GracefulRestart).await
    }

    /// Stop BIRD (and supervision, and later applies). Falls back to SIGTERM, then SIGKILL after
    /// 10 s.
    pub async fn stop_with(&self, mode: StopMode) {
        lock(&self.shared.state).stopped = true;
        let _op = self.shared.op.lock().await;
        let Some(c) = lock(&self.shared.state).child.clone() else {
            return;
        };
        if c.exit_status().is_some() {
            return;
        }
        let graceful = match mode {
            StopMode::GracefulRestart => match self.ctl().await {
                Ok(mut ctl) => ctl.graceful_restart().await.map_err(BirdError::from),
                Err(e) => Err(e),
            },
            StopMode::Withdraw => Err(BirdError::Stopped),
        };
        if let Err(e) = graceful {
            if mode == StopMode::GracefulRestart {
                tracing::warn!(error = %e, "bird: graceful restart failed, sending SIGTERM");
            }
            c.signal(Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, c.wait()).await.is_err() {
            tracing::warn!(pid = c.pid, "bird did not exit in {STOP_TIMEOUT:?}; SIGKILL");
            c.signal(Signal::SIGKILL);
            c.wait().await;
        }
        tracing::info!(pid = c.pid, ?mode, "bird stopped; kernel routes left in place");
        lock(&self.shared.state).stats.pid = None;
    }

    /// A new control connection to the running BIRD.
    pub async fn ctl(&self) -> Result<BirdCtl, BirdError> {
        Ok(BirdCtl::connect(self.shared.cfg.ctl_path(), CTL_TIMEOUT).await?)
    }

    pub fn metrics(&self) -> SupervisorStats {
        lock(&self.shared.state).stats.clone()
    }
}

impl Shared {
    async fn flush(self: Arc<Self>) {
        tokio::time::sleep(DEBOUNCE).await;
        let _op = self.op.lock().await;
        let (text, upto) = {
            let mut b = lock(&self.batch);
            b.flush_pending = false;
            (b.latest.take().unwrap_or_default(), b.seq)
        };
        let result = if lock(&self.state).stopped {
            Err(BirdError::Stopped)
        } else {
            self.apply_locked(&text).await
        };
        {
            let mut st = lock(&self.state);
            match &result {
                Ok(applied) => {
                    st.stats.applies_ok += 1;
                    tracing::info!(?applied, "bird config applied");
                }
                Err(e) => {
                    st.stats.applies_failed += 1;
                    st.stats.last_error = Some(e.to_string());
                    tracing::error!(error = %e, "bird config not applied");
                }
            }
        }
        self.flushed.send_replace(Flushed {
            upto,
            result: Some(result),
        });
    }

    async fn apply_locked(&self, text: &str) -> Result<Applied, BirdError> {
        let cfg = &self.cfg;
        let (conf, new, rejected) = (
            cfg.conf_path(),
            cfg.run_dir.join("bird.conf.new"),
            cfg.run_dir.join("bird.conf.rejected"),
        );
        fs::create_dir_all(&cfg.run_dir).map_err(io_err(format!("create {}", cfg.run_dir.display())))?;
        write_synced(&new, text)?;
        let mut check = Command::new(&cfg.bird_path);
        check.arg("-p").arg("-c").arg(&new).stdin(Stdio::null());
        let out = blocking(check)
            .await
            .map_err(io_err(format!("run {} -p", cfg.bird_path.display())))?;
        if !out.status.success() {
            let _ = fs::rename(&new, &rejected);
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let msg = msg.strip_prefix("bird: ").unwrap_or(&msg);
            return Err(BirdError::Rejected(
                msg.replace(&*new.to_string_lossy(), &rejected.to_string_lossy()),
            ));
        }
        let running = lock(&self.state)
            .child
            .as_ref()
            .is_some_and(|c| c.exit_status().is_none());
        let old = fs::read_to_string(&conf).ok();
        if running && old.as_deref() == Some(text) {
            let _ = fs::remove_file(&new);
            return Ok(Applied::Unchanged);
        }
        rename_synced(&new, &conf)?;
        lock(&self.state).wanted = true;
        if !running {
            return self.start_locked(false).await.map(|()| Applied::Started);
        }
        let configured = match BirdCtl::connect(cfg.ctl_path(), CTL_TIMEOUT).await {
            Ok(mut ctl) => ctl.configure(&conf).await,
            Err(e) => Err(e),
        };
        if let Err(e) = configured {
            // BIRD still runs the old config: put its text back so the file matches.
            if let Some(old) = old {
                write_synced(&new, &old).and_then(|()| rename_synced(&new, &conf))?;
            }
            return Err(e.into());
        }
        Ok(Applied::Reconfigured)
    }

    /// Start BIRD unless it runs; caller holds `op`. `recover`: add `-R` (also added when a
    /// stale BIRD was found or the kernel has `proto bird` routes).
    async fn start_locked(&self, recover: bool) -> Result<(), BirdError> {
        {
            let st = lock(&self.state);
            if st.stopped {
                return Err(BirdError::Stopped);
            }
            if st.child.as_ref().is_some_and(|c| c.exit_status().is_none()) {
                return Ok(());
            }
        }
        let cfg = &self.cfg;
        let stale = end_stale_bird(cfg).await;
        let recover = recover || stale || kernel_has_bird_routes(cfg).await;
        let proc = Arc::new(spawn_bird(cfg, recover).map_err(io_err(format!("spawn {}", cfg.bird_path.display())))?);
        tracing::info!(pid = proc.pid, recover, "bird started");
        {
            let mut st = lock(&self.state);
            st.stats.pid = Some(proc.pid);
            st.child = Some(proc.clone());
        }
        self.started.send_modify(|g| *g += 1);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = proc.exit_status() {
                lock(&self.state).stats.pid = None;
                return Err(BirdError::Start(format!("bird exited ({status}): {}", proc.tail())));
            }
            if BirdCtl::connect(cfg.ctl_path(), CTL_TIMEOUT).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BirdError::Start(format!(
                    "{} did not open in {START_TIMEOUT:?}",
                    cfg.ctl_path().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn write_synced(path: &Path, text: &str) -> Result<(), BirdError> {
    let mut f = File::create(path).map_err(io_err(format!("create {}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(format!("write {}", path.display())))
}

fn rename_synced(from: &Path, to: &Path) -> Result<(), BirdError> {
    fs::rename(from, to).map_err(io_err(format!("rename {} to {}", from.display(), to.display())))?;
    if let Some(dir) = to.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
