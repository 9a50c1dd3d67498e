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
    let result = rt.block_on(lanes_manager::daemon::run(cfg, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("lanesd: {e}");
    ExitCode::FAILURE
}
