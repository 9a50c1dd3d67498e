//! lanesd: the Lanes node network daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lanes_manager::config::{Config, Overrides};

/// Node network daemon: the routed primary network (eth0) and the OVN lanes.
#[derive(Parser)]
#[command(name = "lanesd", version)]
struct Args {
    /// YAML config; every key can also be a kebab-case flag, and a flag wins.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        },
        None => Config::default(),
    };
    cfg.apply(args.overrides);
    let cfg = match cfg.finish() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANES_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(async {
        // Handlers first: a SIGTERM during start-up must still be a clean stop.
        let shutdown = shutdown_signal()?;
        // On a worker, not on this thread: tasks spawned from a worker (the server's
        // connections, each CNI call) start on it, rather than waking another thread.
        tokio::spawn(lanes_manager::daemon::run(cfg, shutdown))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Installs the SIGTERM/SIGINT handlers now; the future resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("lanesd: {e}");
    ExitCode::FAILURE
}
