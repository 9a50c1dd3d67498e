//! BIRD as an OS process: spawning it (in a network namespace), forwarding its stderr to the
//! log, waiting for it and signalling it, and finding what an earlier lanesd left behind.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::BirdConfig;
use crate::bgp::birdctl::BirdCtl;

const STDERR_TAIL: usize = 20;

/// A BIRD process we started. A waiter thread waits for its exit without reaping it
/// (`waitid(WNOWAIT)`), then reaps it under `reaped`; signals are sent under the same lock, so a
/// signal never reaches a recycled PID.
#[derive(Debug)]
pub(super) struct Proc {
    pub(super) pid: u32,
    pub(super) started: Instant,
    exit: watch::Receiver<Option<String>>,
    reaped: Arc<Mutex<bool>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    pub(super) fn signal(&self, sig: Signal) -> bool {
        let reaped = lock(&self.reaped);
        !*reaped && kill(Pid::from_raw(self.pid as i32), sig).is_ok()
    }
    pub(super) fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }
    pub(super) async fn wait(&self) -> String {
        let mut rx = self.exit.clone();
        let r = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        r.ok().flatten().unwrap_or_else(|| "unknown".into())
    }
    pub(super) fn tail(&self) -> String {
        lock(&self.tail).iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run a short command to completion off the async threads.
pub(super) async fn blocking(mut cmd: Command) -> io::Result<std::process::Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(io::Error::other)?
}

/// Run `f` on a fresh thread that has entered `netns` (when given); processes it spawns are
/// born there. The thread ends with `f`, so no other code ever runs in the namespace.
pub(super) fn in_netns<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let Some(ns) = netns else { return f() };
    let file = File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    })
}

pub(super) fn spawn_bird(cfg: &BirdConfig, recover: bool) -> io::Result<Proc> {
    let mut cmd = Command::new(&cfg.bird_path);
    cmd.arg("-f")
        .arg("-c")
        .arg(cfg.conf_path())
        .arg("-s")
        .arg(cfg.ctl_path())
        .arg("-P")
        .arg(cfg.pid_path());
    if recover {
        cmd.arg("-R");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child: Child = in_netns(cfg.netns.as_deref(), || cmd.spawn())?;
    let pid = child.id();
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        std::thread::Builder::new().name("bird-stderr".into()).spawn(move || {
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                log_bird_line(pid, &line);
                let mut t = lock(&tail);
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })?;
    }
    let (tx, exit) = watch::channel(None);
    let reaped = Arc::new(Mutex::new(false));
    let reaped2 = reaped.clone();
    std::thread::Builder::new().name("bird-wait".into()).spawn(move || {
        while let Err(nix::errno::Errno::EINTR) = waitid(
            Id::Pid(Pid::from_raw(pid as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {}
        let mut reaped = lock(&reaped2);
        let status = child
            .wait()
            .map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
        *reaped = true;
        drop(reaped);
        let _ = tx.send(Some(status));
    })?;
    Ok(Proc {
        pid,
        started: Instant::now(),
        exit,
        reaped,
        tail,
    })
}

/// BIRD's stderr lines look like `2024-01-02 10:00:00.000 <RMT> Mesh_x: Received: Bad peer AS`.
fn log_bird_line(pid: u32, line: &str) {
    let level = line.split('<').nth(1).and_then(|r| r.split('>').next()).unwrap_or("");
    match level {
        "FATAL" | "BUG" | "ERR" => tracing::error!(target: "bird", pid, "{line}"),
        "WARN" | "AUTH" | "RMT" | "" => tracing::warn!(target: "bird", pid, "{line}"),
        "INFO" => tracing::info!(target: "bird", pid, "{line}"),
        _ => tracing::debug!(target: "bird", pid, "{line}"),
    }
}

/// A BIRD left by an earlier lanesd (pid file, process alive, its `-s` is our socket): ask it
/// for `graceful restart` (routes stay in the kernel and at the peers), else SIGKILL that PID.
pub(super) async fn end_stale_bird(cfg: &BirdConfig) -> bool {
    let Some(pid) = fs::read_to_string(cfg.pid_path())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return false;
    };
    let ctl = cfg.ctl_path();
    let ours = || {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let alive = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        alive
            && cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == ctl.as_os_str().as_encoded_bytes())
    };
    if !ours() {
        return false;
    }
    tracing::warn!(
        pid,
        "found a bird from an earlier lanesd on {}; replacing it",
        ctl.display()
    );
    if let Ok(mut c) = BirdCtl::connect(&ctl, Duration::from_secs(2)).await {
        let _ = c.graceful_restart().await;
    }
    for _ in 0..100 {
        if !ours() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if ours() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    true
}

/// Whether the kernel (in BIRD's netns) has routes BIRD installed: then lanesd restarted, and
/// BIRD starts with `-R` so that it keeps them until its sessions are back.
pub(super) async fn kernel_has_bird_routes(cfg: &BirdConfig) -> bool {
    match bird_routes(cfg.netns.as_deref()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not list kernel routes; starting bird without -R");
            false
        }
    }
}

/// `ip route show table all proto bird` (both families) is not empty, read over rtnetlink in
/// `netns` (`None`: the daemon's own).
async fn bird_routes(netns: Option<&Path>) -> crate::dataplane::Result<bool> {
    let rt = tokio::runtime::Handle::current();
    let nl = match netns {
        Some(path) => crate::dataplane::netns::netlink_in_file(&crate::dataplane::netns::open(path)?, path, &rt)?,
        None => crate::dataplane::Netlink::open_here(&rt)?,
    };
    let routes = nl.route_dump().await?;
    Ok(routes.iter().any(|r| r.protocol == RTPROT_BIRD))
}

/// The `rtm_protocol` BIRD gives the routes it installs (`/etc/iproute2/rt_protos`: `bird`).
const RTPROT_BIRD: u8 = 12;
