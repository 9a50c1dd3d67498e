//! lanesctl: the CLI over lanesd's gRPC API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use lanes_manager::ctl::table::Table;
use lanes_proto::v1::{self as pb, node_client::NodeClient};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(name = "lanesctl", version, about = "Inspect and drive a node's lanesd")]
struct Args {
    /// lanesd's gRPC unix socket.
    #[arg(long, global = true, default_value = "/run/lanes/lanes.sock", env = "LANES_SOCKET")]
    socket: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// This node: readiness, attachments, rejected resources.
    Node {
        #[command(subcommand)]
        what: NodeCmd,
    },
    /// IP pools and blocks.
    Ipam {
        #[command(subcommand)]
        what: IpamCmd,
    },
    /// Workloads attached on this node (container, pod, interface, IPs).
    Attachments {
        /// Only this pod namespace.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Routes: BIRD's table and the kernel routes it and lanesd own.
    Routes,
    /// Follow the node's events until interrupted.
    Events,
    /// gRPC health check (what the DaemonSet's probes run): exit 0 when lanesd is serving.
    Health,
}

#[derive(Subcommand)]
enum NodeCmd {
    Status,
}

#[derive(Subcommand)]
enum IpamCmd {
    /// Pools with usage, then blocks with affinity, state and use.
    Show {
        /// Also list every allocation.
        #[arg(long)]
        allocations: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("lanesctl: {msg}");
    ExitCode::FAILURE
}

async fn connect(socket: &std::path::Path) -> Result<NodeClient<Channel>, String> {
    Ok(NodeClient::new(channel(socket).await?))
}

async fn channel(socket: &std::path::Path) -> Result<Channel, String> {
    lanes_manager::api::client::unix_channel(socket)
        .await
        .map_err(|e| format!("connect to {}: {}", socket.display(), root_cause(&e)))
}

/// `grpc.health.v1.Health/Check` for the whole server.
async fn health(socket: &std::path::Path) -> Result<(), String> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let mut client = HealthClient::new(channel(socket).await?);
    let reply = tokio::time::timeout(Duration::from_secs(3), client.check(HealthCheckRequest::default()))
        .await
        .map_err(|_| "no health answer within 3 s".to_string())?
        .map_err(rpc)?;
    match reply.into_inner().status() {
        ServingStatus::Serving => {
            println!("SERVING");
            Ok(())
        }
        other => Err(format!("{other:?}")),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn rpc(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

async fn run(args: Args) -> Result<(), String> {
    if matches!(args.command, Cmd::Health) {
        return health(&args.socket).await;
    }
    let mut c = connect(&args.socket).await?;
    let json = matches!(args.output, Output::Json);
    match args.command {
        Cmd::Node { what: NodeCmd::Status } => {
            let s = c
                .get_node_status(pb::GetNodeStatusRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            let bgp = c
                .get_bgp_status(pb::GetBgpStatusRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                let mut v = lanes_manager::ctl::json::node_status(&s);
                v["bgp"] = lanes_manager::ctl::json::bgp_status(&bgp);
                return print_json(&v);
            }
            println!(
                "Lanes process is running on node {} (lanesd {}).",
                s.node_name, s.version
            );
            if s.ready {
                println!("Ready: yes");
            } else {
                println!("Ready: no: {}", s.not_ready_reason);
            }
            println!("Attachments: {}", s.attachments);
            println!();
            print!("{}", lanes_manager::ctl::bgp_table(&bgp));
            if !s.rejected_resources.is_empty() {
                println!("\nRejected resources (the last good version of each stays in force):");
                for r in &s.rejected_resources {
                    println!("  {r}");
                }
            }
        }
        Cmd::Ipam {
            what: IpamCmd::Show { allocations },
        } => {
            let usage = c.ipam_usage(pb::IpamUsageRequest {}).await.map_err(rpc)?.into_inner();
            let blocks = c
                .list_ipam_blocks(pb::ListIpamBlocksRequest::default())
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                return print_json(&lanes_manager::ctl::json::ipam(&usage, &blocks));
            }
            let mut t = Table::new(&[
                "POOL",
                "CIDR",
                "BLOCK SIZE",
                "SELECTOR",
                "SIZE",
                "USED",
                "FREE",
                "BLOCKS",
                "LOCAL",
                "BORROWED",
            ]);
            for p in &usage.pools {
                let name = if p.disabled {
                    format!("{} (disabled)", p.name)
                } else {
                    p.name.clone()
                };
                t.row(vec![
                    name,
                    p.cidr.clone(),
                    p.block_size.to_string(),
                    p.node_selector.clone(),
                    p.size.to_string(),
                    p.used.to_string(),
                    p.free.to_string(),
                    p.blocks.to_string(),
                    p.blocks_local.to_string(),
                    p.borrowed.to_string(),
                ]);
            }
            print!("{}", t.render());
            println!();
            let mut t = Table::new(&[
                "BLOCK",
                "POOL",
                "AFFINITY",
                "STATE",
                "USED",
                "FREE",
                "BORROWED BY OTHERS",
            ]);
            for b in &blocks.blocks {
                t.row(vec![
                    b.cidr.clone(),
                    b.pool.clone(),
                    b.affinity.clone(),
                    b.state.clone(),
                    b.used.to_string(),
                    (b.size - b.used).to_string(),
                    b.borrowed_by_others.to_string(),
                ]);
            }
            print!("{}", t.render());
            if allocations {
                println!();
                let mut t = Table::new(&["IP", "BLOCK", "HANDLE", "NODE", "POD", "BORROWED"]);
                for b in &blocks.blocks {
                    for a in &b.allocations {
                        let pod = if a.pod_name.is_empty() {
                            String::new()
                        } else {
                            format!("{}/{}", a.pod_namespace, a.pod_name)
                        };
                        t.row(vec![
                            a.ip.clone(),
                            b.cidr.clone(),
                            a.handle.clone(),
                            a.node.clone(),
                            pod,
                            if a.borrowed { "yes" } else { "" }.into(),
                        ]);
                    }
                }
                print!("{}", t.render());
            }
        }
        Cmd::Attachments { namespace } => {
            let r = c
                .list_attachments(pb::ListAttachmentsRequest {
                    pod_namespace: namespace.unwrap_or_default(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                return print_json(&lanes_manager::ctl::json::attachments(&r.attachments));
            }
            let mut t = Table::new(&["CONTAINER", "POD", "INTERFACE", "HOST IFACE", "NETWORK", "IPS"]);
            for a in &r.attachments {
                let pod = if a.pod_name.is_empty() {
                    "-".to_string()
                } else {
                    format!("{}/{}", a.pod_namespace, a.pod_name)
                };
                t.row(vec![
                    short(&a.container_id),
                    pod,
                    a.ifname.clone(),
                    a.host_ifname.clone(),
                    a.network.clone(),
                    a.ips.join(","),
                ]);
            }
            print!("{}", t.render());
        }
        Cmd::Routes => {
            let r = c.list_routes(pb::ListRoutesRequest {}).await.map_err(rpc)?.into_inner();
            if json {
                return print_json(&lanes_manager::ctl::json::routes(&r.routes));
            }
            let mut t = Table::new(&["PREFIX", "NEXT HOPS", "DEVICE", "KIND", "PROTOCOL", "SOURCE"]);
            for r in &r.routes {
                t.row(vec![
                    r.prefix.clone(),
                    r.next_hops.join(","),
                    r.device.clone(),
                    r.kind.clone(),
                    r.protocol.clone(),
                    r.source.clone(),
                ]);
            }
            print!("{}", t.render());
        }
        Cmd::Health => unreachable!("answered above"),
        Cmd::Events => {
            let mut s = c.watch(pb::WatchRequest {}).await.map_err(rpc)?.into_inner();
            while let Some(ev) = s.next().await {
                let ev = ev.map_err(rpc)?;
                if json {
                    print_json(&lanes_manager::ctl::json::event(&ev))?;
                } else {
                    println!("{} {:<20} {}", ev.time_unix_ms, ev.kind, ev.message);
                }
            }
        }
    }
    Ok(())
}

/// Container ids are 64 hex chars from runtimes; 12 is what people recognise.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn print_json(v: &serde_json::Value) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    Ok(())
}
