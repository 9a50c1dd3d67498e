//! `lanes-cni`: the CNI plugin binary (installed as `lanes` in the CNI bin dir).
//!
//! It does not interpret CNI: it forwards the `CNI_*` environment and the raw
//! stdin to lanesd over gRPC on a unix socket, prints the bytes the daemon
//! answers and exits 0 or 1 as the daemon says. It only answers VERSION
//! itself (so version probes work while the daemon is down) and, when the
//! daemon cannot be reached, prints a spec error naming the socket and the
//! OS error: code 11 "try again later", or 50 "plugin not available" for
//! STATUS.

use std::io::{Read, Write};
use std::time::Duration;

use lanes_proto::v1::{cni_client::CniClient, CniRequest, CniResponse};

const DEFAULT_SOCKET: &str = "/run/lanes/lanes.sock";
const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Long enough for an ADD that waits on OVN, short of a runtime's own limit.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(150);

/// The few stdin keys the shim itself needs; everything else is the daemon's.
#[derive(serde::Deserialize, Default)]
struct ShimConf {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    socket: Option<String>,
    #[serde(rename = "timeoutSeconds")]
    timeout_seconds: Option<u64>,
}

#[derive(Clone, Copy)]
enum Verb {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

fn main() {
    let code = run();
    std::process::exit(code);
}

fn run() -> i32 {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail("", 5, "failed to read stdin", &e.to_string());
    }
    // A config that isn't JSON is the daemon's to report (code 6, with the
    // position); the shim just falls back to defaults for its own keys.
    let conf: ShimConf = serde_json::from_slice(&stdin).unwrap_or_default();
    let version = conf.cni_version.clone().unwrap_or_else(|| "1.1.0".into());

    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let verb = match command.as_str() {
        "ADD" => Verb::Add,
        "DEL" => Verb::Del,
        "CHECK" => Verb::Check,
        "STATUS" => Verb::Status,
        "GC" => Verb::Gc,
        "VERSION" => Verb::Version,
        "" => {
            return fail(
                &version,
                4,
                "CNI_COMMAND missing",
                "set CNI_COMMAND to ADD, DEL, CHECK, STATUS, GC or VERSION",
            )
        }
        other => {
            return fail(
                &version,
                4,
                "unknown CNI_COMMAND",
                &format!("CNI_COMMAND={other}: expected ADD, DEL, CHECK, STATUS, GC or VERSION"),
            )
        }
    };
    if let Verb::Version = verb {
        let out = serde_json::json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS});
        return print(&serde_json::to_vec(&out).unwrap_or_default(), 0);
    }

    let socket = std::env::var("LANES_SOCKET")
        .ok()
        .or(conf.socket)
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let timeout = conf
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let env = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_") || k.starts_with("K8S_"))
        .collect();
    let request = CniRequest { env, stdin };

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&version, 999, "failed to start the shim runtime", &e.to_string()),
    };
    match runtime.block_on(call(&socket, timeout, verb, request)) {
        Ok(resp) => {
            let code = if resp.error.is_some() { 1 } else { 0 };
            print(&resp.output, code)
        }
        Err(e) => {
            let unavailable = if let Verb::Status = verb { 50 } else { 11 };
            match e {
                CallError::Connect(detail) => fail(
                    &version,
                    unavailable,
                    "lanesd unreachable",
                    &format!("connect to lanesd socket {socket}: {detail}"),
                ),
                CallError::Rpc(status) => {
                    // lanesd answers every CNI call with a response, errors included, so a
                    // bare gRPC status here means the call itself broke (lanesd restarting,
                    // the connection cut): worth a retry, unlike a protocol mismatch.
                    let code = match status.code() {
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => unavailable,
                        tonic::Code::DeadlineExceeded => 11,
                        _ => 999,
                    };
                    fail(
                        &version,
                        code,
                        "lanesd call failed",
                        &format!("socket {socket}: {:?}: {}", status.code(), status.message()),
                    )
                }
            }
        }
    }
}

enum CallError {
    Connect(String),
    Rpc(tonic::Status),
}

async fn call(socket: &str, timeout: Duration, verb: Verb, request: CniRequest) -> Result<CniResponse, CallError> {
    let connect = async {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok::<_, std::io::Error>(send)
    };
    let send = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(send)) => send,
        Ok(Err(e)) => return Err(CallError::Connect(root_cause(&e))),
        Err(_) => return Err(CallError::Connect(format!("timed out after {CONNECT_TIMEOUT:?}"))),
    };
    // "localhost" as authority: h2 rejects a socket path there.
    let origin = http::Uri::from_static("http://localhost");
    let mut client = CniClient::with_origin(H2(send), origin);
    let call = async {
        match verb {
            Verb::Add => client.add(request).await,
            Verb::Del => client.del(request).await,
            Verb::Check => client.check(request).await,
            Verb::Status => client.status(request).await,
            Verb::Gc => client.gc(request).await,
            Verb::Version => unreachable!("VERSION is answered locally"),
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(reply) => reply.map(|r| r.into_inner()).map_err(CallError::Rpc),
        Err(_) => Err(CallError::Rpc(tonic::Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        )))),
    }
}

/// One HTTP/2 connection as the tower service tonic's client wants.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// tonic says only "transport error"; the OS error (ENOENT, ECONNREFUSED,
/// EACCES) is what tells an operator what is wrong.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn fail(version: &str, code: u32, msg: &str, details: &str) -> i32 {
    let out = serde_json::json!({"cniVersion": version, "code": code, "msg": msg, "details": details});
    print(&serde_json::to_vec(&out).unwrap_or_default(), 1)
}

fn print(bytes: &[u8], code: i32) -> i32 {
    let mut stdout = std::io::stdout().lock();
    // Nothing sensible is left to do if stdout is gone; the exit code still tells.
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
    code
}
