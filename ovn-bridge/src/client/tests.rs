//! The client against a scripted fake server on a unix socket: the wire exchanges that a real
//! `ovsdb-server` makes hard to provoke on demand (its echo, a silent peer, split writes,
//! a drop mid-call).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::*;
use crate::framing::Framer;
use crate::monitor::EventKind;

struct Peer {
    s: UnixStream,
    framer: Framer,
}

impl Peer {
    async fn accept(l: &UnixListener) -> Peer {
        let (s, _) = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .unwrap()
            .unwrap();
        Peer {
            s,
            framer: Framer::new(),
        }
    }
    async fn recv(&mut self) -> Value {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(v) = self.framer.next_message().unwrap() {
                return v;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "client closed");
            self.framer.extend(&buf[..n]);
        }
    }
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }
    async fn send(&mut self, v: Value) {
        self.send_raw(&serde_json::to_vec(&v).unwrap()).await;
    }
}

fn setup(opts: ClientOptions) -> (tempfile::TempDir, std::path::PathBuf, Client) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("db.sock");
    let client = Client::with_options(&format!("unix:{}", sock.display()), opts).unwrap();
    (dir, sock, client)
}

fn fast() -> ClientOptions {
    ClientOptions {
        call_timeout: Duration::from_secs(5),
        probe_interval: None,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn answers_server_echo_with_its_id_and_params() {
    let (_d, sock, client) = setup(fast());
    let l = UnixListener::bind(&sock).unwrap();
    let mut p = Peer::accept(&l).await;
    p.send(json!({"id": "echo", "method": "echo", "params": ["hello"]}))
        .await;
    assert_eq!(
        p.recv().await,
        json!({"id": "echo", "result": ["hello"], "error": null})
    );
    assert_eq!(client.stats().echoes_answered, 1);
}

#[tokio::test]
async fn probes_a_silent_server_then_reconnects() {
    let opts = ClientOptions {
        probe_interval: Some(Duration::from_millis(100)),
        ..fast()
    };
    let (_d, sock, client) = setup(opts);
    let l = UnixListener::bind(&sock).unwrap();
    let mut p = Peer::accept(&l).await;
    let probe = p.recv().await;
    assert_eq!(probe["method"], "echo");
    // No reply: the client must give up on this connection and dial again.
    let _p2 = Peer::accept(&l).await;
    assert!(client.stats().probes_sent >= 1);
    client.wait_connected(Duration::from_secs(2)).await.unwrap();
    assert_eq!(client.stats().connects, 2);
}

#[tokio::test]
async fn answered_probes_keep_the_connection() {
    let opts = ClientOptions {
        probe_interval: Some(Duration::from_millis(50)),
        ..fast()
    };
    let (_d, sock, client) = setup(opts);
    let l = UnixListener::bind(&sock).unwrap();
    let mut p = Peer::accept(&l).await;
    for _ in 0..3 {
        let probe = p.recv().await;
        p.send(json!({"id": probe["id"], "result": [], "error": null})).await;
    }
    assert_eq!(client.stats().connects, 1);
    assert!(client.stats().probes_sent >= 3);
}

#[tokio::test]
async fn reassembles_split_and_joined_messages() {
    let (_d, sock, client) = setup(fast());
    let l = UnixListener::bind(&sock).unwrap();
    let c2 = client.clone();
    let call = tokio::spawn(async move { c2.echo(json!(["a{\"b", "c"])).await });
    let mut p = Peer::accept(&l).await;
    let req = p.recv().await;
    let reply = serde_json::to_vec(&json!({"id": req["id"], "result": ["a{\"b", "c"], "error": null})).unwrap();
    let (a, b) = reply.split_at(7);
    p.send_raw(a).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut rest = b.to_vec();
    rest.extend_from_slice(br#"{"id":"echo","method":"echo","params":[]}"#);
    p.send_raw(&rest).await;
    assert_eq!(call.await.unwrap().unwrap(), json!(["a{\"b", "c"]));
    assert_eq!(p.recv().await["id"], "echo");
}

#[tokio::test]
async fn queues_calls_until_connected() {
    let (_d, sock, client) = setup(fast());
    let c2 = client.clone();
    let call = tokio::spawn(async move { c2.list_dbs().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(client.state(), ConnState::Connecting { attempts, .. } if attempts >= 1));
    let l = UnixListener::bind(&sock).unwrap();
    let mut p = Peer::accept(&l).await;
    let req = p.recv().await;
    assert_eq!(req["method"], "list_dbs");
    p.send(json!({"id": req["id"], "result": ["Open_vSwitch"], "error": null}))
        .await;
    assert_eq!(call.await.unwrap().unwrap(), vec!["Open_vSwitch".to_string()]);
}

#[tokio::test]
async fn timeout_says_not_connected_and_why() {
    let opts = ClientOptions {
        call_timeout: Duration::from_millis(150),
        ..fast()
    };
    let (_d, _sock, client) = setup(opts);
    let e = client.transact("Open_vSwitch", &[Op::comment("x")]).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Timeout { .. }), "{text}");
    assert!(text.contains("Open_vSwitch transact timed out after 150ms"), "{text}");
    assert!(
        text.contains("not connected after") && text.contains("db.sock"),
        "{text}"
    );
}

#[tokio::test]
async fn in_flight_call_fails_when_connection_drops_and_server_error_is_named() {
    let (_d, sock, client) = setup(fast());
    let l = UnixListener::bind(&sock).unwrap();
    let c2 = client.clone();
    let call = tokio::spawn(async move { c2.transact("OVN_Northbound", &[Op::comment("x")]).await });
    let mut p = Peer::accept(&l).await;
    p.recv().await;
    drop(p);
    let e = call.await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Disconnected { .. }), "{e}");
    assert!(e.to_string().contains("OVN_Northbound transact"), "{e}");

    let c2 = client.clone();
    let call = tokio::spawn(async move { c2.transact("Nope", &[Op::comment("x")]).await });
    let mut p = Peer::accept(&l).await;
    let req = p.recv().await;
    p.send(json!({"id": req["id"], "result": null,
                  "error": {"error": "unknown database", "details": "Nope is not a valid database"}}))
        .await;
    let e = call.await.unwrap().unwrap_err();
    assert_eq!(
        e.to_string(),
        "Nope transact rejected: unknown database: Nope is not a valid database"
    );
}

#[tokio::test]
async fn monitor_is_resent_after_reconnect() {
    let (_d, sock, client) = setup(fast());
    let l = UnixListener::bind(&sock).unwrap();
    let c2 = client.clone();
    let mon = tokio::spawn(async move { c2.monitor("Open_vSwitch", &[MonitorRequest::new("Interface")]).await });
    let mut p = Peer::accept(&l).await;
    let req = p.recv().await;
    assert_eq!(req["method"], "monitor");
    let mon_id = req["params"][1].clone();
    p.send(
        json!({"id": req["id"], "result": {"Interface": {"36bef046-7da7-43a5-905a-c17899216fcb":
        {"new": {"name": "p1"}}}}, "error": null}),
    )
    .await;
    let mut mon = mon.await.unwrap().unwrap();
    assert_eq!(mon.next().await.unwrap().kind, EventKind::Initial);
    p.send(json!({"id": null, "method": "update", "params": [mon_id, {"Interface": {}}]}))
        .await;
    assert_eq!(mon.next().await.unwrap().kind, EventKind::Update);
    drop(p);

    let mut p = Peer::accept(&l).await;
    let req = p.recv().await;
    assert_eq!(req["method"], "monitor");
    assert_eq!(req["params"][1], mon_id);
    assert_eq!(
        req["params"][2],
        json!({"Interface": {"select":
        {"initial": true, "insert": true, "delete": true, "modify": true}}})
    );
    p.send(json!({"id": req["id"], "result": {}, "error": null})).await;
    let ev = mon.next().await.unwrap();
    assert_eq!(ev.kind, EventKind::Resync);
    assert!(ev.updates.is_empty());

    drop(mon);
    let cancel = p.recv().await;
    assert_eq!(cancel["method"], "monitor_cancel");
    assert_eq!(cancel["params"], json!([mon_id]));
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_half_a_second_to_thirty() {
    let (_d, _sock, client) = setup(ClientOptions::default());
    let start = tokio::time::Instant::now();
    let mut seen = vec![];
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(100) {
        if let ConnState::Connecting { attempts, .. } = client.state() {
            if attempts != last {
                seen.push(start.elapsed());
                last = attempts;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gaps: Vec<u64> = seen.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect();
    let want = [500, 1000, 2000, 4000, 8000, 16000, 30000];
    assert!(gaps.len() >= want.len(), "{gaps:?}");
    for (gap, want) in gaps.iter().zip(want) {
        assert!(gap.abs_diff(want) <= 20, "{gaps:?}");
    }
}
