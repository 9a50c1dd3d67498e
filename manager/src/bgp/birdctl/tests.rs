//! Framing tests: canned byte streams from a fake BIRD on a Unix socket.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::*;

const GREETING: &[u8] = b"0001 BIRD 2.0.12 ready.\n";
const PROTOCOLS_ALL_A_RAW: &[u8] = include_bytes!("../testdata/protocols_all_a.raw");
const PROTOCOLS_ALL_A: &str = include_str!("../testdata/protocols_all_a.txt");

/// One exchange of the fake server: the command line it expects and the reply, written in the
/// given chunks with a pause between them (to force partial reads).
struct Exchange {
    expect: &'static str,
    chunks: Vec<Vec<u8>>,
}

fn ex(expect: &'static str, reply: &[u8]) -> Exchange {
    Exchange {
        expect,
        chunks: vec![reply.to_vec()],
    }
}

/// A fake BIRD that greets with `greeting` and plays `script`, then keeps the connection open;
/// a chunk ending in `<close>` drops the connection after writing what comes before it.
fn fake_bird(greeting: Vec<Vec<u8>>, script: Vec<Exchange>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bird.ctl");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        for chunk in greeting {
            w.write_all(&chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for step in script {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert_eq!(line, format!("{}\n", step.expect));
            for chunk in step.chunks {
                if let Some(head) = chunk.strip_suffix(b"<close>") {
                    let _ = w.write_all(head).await;
                    return;
                }
                if w.write_all(&chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut rest = String::new();
        let _ = r.read_line(&mut rest).await;
    });
    (dir, path)
}

async fn connect(path: &Path) -> BirdCtl {
    BirdCtl::connect(path, Duration::from_secs(2)).await.unwrap()
}

#[test]
fn parser_frames_lines() {
    let mut p = ReplyParser::default();
    assert_eq!(p.push("2002-Name       Proto"), Ok(None));
    assert_eq!(p.push("1002-device1    Device"), Ok(None));
    assert_eq!(p.push(" kernel4    Kernel"), Ok(None));
    assert_eq!(p.push("+0020 asynchronous"), Ok(None));
    let reply = p.push("0000 ").unwrap().unwrap();
    assert_eq!(
        reply,
        [
            (2002, "Name       Proto".into()),
            (1002, "device1    Device".into()),
            (1002, "kernel4    Kernel".into()),
            (0, "".into())
        ]
    );
    assert_eq!(
        reply_text(&reply),
        "Name       Proto\ndevice1    Device\nkernel4    Kernel\n"
    );
    // A bare code is a final line too; the parser starts over after a reply.
    assert_eq!(p.push("0013").unwrap().unwrap(), [(13, String::new())]);
    assert_eq!(p.push(" orphan continuation"), Err(" orphan continuation".into()));
    assert_eq!(p.push("hello"), Err("hello".into()));
    assert_eq!(p.push("12345"), Err("12345".into()));
    assert_eq!(
        p.push("0003 Reconfigured\r").unwrap().unwrap(),
        [(3, "Reconfigured".into())]
    );
}

#[tokio::test]
async fn real_protocols_all_reply_through_the_socket() {
    // The raw capture starts with the greeting; send it in odd-sized chunks that split codes.
    let reply = PROTOCOLS_ALL_A_RAW[GREETING.len()..].to_vec();
    let chunks: Vec<Vec<u8>> = reply.chunks(777).map(<[u8]>::to_vec).collect();
    let (_dir, path) = fake_bird(
        vec![GREETING.to_vec()],
        vec![Exchange {
            expect: "show protocols all",
            chunks,
        }],
    );
    let mut ctl = connect(&path).await;
    assert_eq!(ctl.greeting(), "BIRD 2.0.12 ready.");
    let ps = ctl.show_protocols_all().await.unwrap();
    assert_eq!(ps.len(), 13);
    // The two captures were taken a fraction of a second apart: the running timers differ.
    let without_timers = |mut ps: Vec<status::ProtocolStatus>| {
        for b in ps.iter_mut().filter_map(|p| p.bgp.as_mut()) {
            (b.hold_timer, b.keepalive_timer) = (None, None);
        }
        ps
    };
    assert_eq!(
        without_timers(ps),
        without_timers(status::parse_protocols(PROTOCOLS_ALL_A))
    );
}

#[tokio::test]
async fn text_equals_what_birdc_prints() {
    let (_dir, path) = fake_bird(
        vec![GREETING.to_vec()],
        vec![ex("show protocols all", &PROTOCOLS_ALL_A_RAW[GREETING.len()..])],
    );
    let reply = connect(&path).await.command("show protocols all").await.unwrap();
    let birdc = PROTOCOLS_ALL_A.split_once('\n').unwrap().1; // minus birdc's own greeting line
    let mask = |text: &str| -> Vec<String> {
        let running = ["Hold timer:", "Keepalive timer:", "Connect delay:"];
        text.lines()
            .map(|l| match running.iter().find(|k| l.trim_start().starts_with(*k)) {
                Some(k) => k.to_string(),
                None => l.to_string(),
            })
            .collect()
    };
    assert_eq!(mask(&reply_text(&reply)), mask(birdc));
    let codes: std::collections::BTreeSet<u16> = reply.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), [0, 1002, 1006, 2002]);
}

#[tokio::test]
async fn byte_by_byte_greeting_and_reply() {
    let greeting = GREETING.iter().map(|b| vec![*b]).collect();
    let reply = b"1007-Table master4:\n 10.0.0.0/26  blackhole [static1 12:00:00.000] * (200)\n0000 \n";
    let chunks = reply.iter().map(|b| vec![*b]).collect();
    let (_dir, path) = fake_bird(
        greeting,
        vec![Exchange {
            expect: "show route",
            chunks,
        }],
    );
    let mut ctl = connect(&path).await;
    let routes = ctl.show_route(&RouteFilter::default()).await.unwrap();
    assert_eq!(
        (routes.len(), routes[0].prefix.as_str(), routes[0].table.as_str()),
        (1, "10.0.0.0/26", "master4")
    );
}

#[tokio::test]
async fn configure_outcomes() {
    let script = vec![
        ex("configure \"/run/x/bird.conf\"", b"0002-Reading configuration from /run/x/bird.conf\n0003 Reconfigured\n"),
        ex("configure \"/run/x/bird.conf\"", b"0002-Reading configuration from /run/x/bird.conf\n0004 Reconfiguration in progress\n"),
        ex("configure \"/run/x/bird.conf\"", b"0019 Nothing to do\n"),
        ex(
            "configure \"/run/x/bird.conf\"",
            b"0002-Reading configuration from /run/x/bird.conf\n8002 /run/x/bird.conf:12:3 syntax error, unexpected END\n",
        ),
        ex("configure \"/run/x/bird.conf\"", b"0006 Reconfiguration ignored, shutting down\n"),
    ];
    let (_dir, path) = fake_bird(vec![GREETING.to_vec()], script);
    let mut ctl = connect(&path).await;
    let conf = Path::new("/run/x/bird.conf");
    for _ in 0..3 {
        ctl.configure(conf).await.unwrap();
    }
    let err = ctl.configure(conf).await.unwrap_err();
    assert!(matches!(err, CtlError::Bird { code: 8002, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("bird.ctl") && text.contains("bird.conf:12:3 syntax error, unexpected END"),
        "{text}"
    );
    let err = ctl.configure(conf).await.unwrap_err();
    assert!(err.to_string().contains("Reconfiguration ignored"), "{err}");
    // Quotes would end BIRD's string early.
    assert!(matches!(
        ctl.configure(Path::new("/a\"b")).await,
        Err(CtlError::BadCommand { .. })
    ));
}

#[tokio::test]
async fn syntax_and_runtime_errors_carry_birds_message() {
    let script = vec![
        ex("show foo", b"9001 syntax error, unexpected CF_SYM_UNDEFINED\n"),
        ex("show route count", b"1007-12 of 12 routes for 10 networks in table master4\n 2 of 2 routes for 2 networks in table master6\n0014 Total: 14 of 14 routes for 12 networks in 2 tables\n"),
        ex("show route table master6 protocol static_v6 all", b"1007-Table master6:\n fd00::/80   blackhole [static_v6 12:57:47.849] * (200)\n1008-\tType: static univ\n0000 \n"),
    ];
    let (_dir, path) = fake_bird(vec![GREETING.to_vec()], script);
    let mut ctl = connect(&path).await;
    match ctl.command("show foo").await {
        Err(CtlError::Bird { code, message, .. }) => {
            assert_eq!(
                (code, message.as_str()),
                (9001, "syntax error, unexpected CF_SYM_UNDEFINED")
            )
        }
        other => panic!("{other:?}"),
    }
    // An error reply leaves the connection usable.
    let count = ctl.show_route_count().await.unwrap();
    assert_eq!((count.tables.len(), count.total.map(|t| t.routes)), (2, Some(14)));
    let filter = RouteFilter {
        table: Some("master6".into()),
        protocol: Some("static_v6".into()),
        all: true,
    };
    let routes = ctl.show_route(&filter).await.unwrap();
    assert_eq!(routes[0].attributes, [("Type".to_string(), "static univ".to_string())]);
    let bad = RouteFilter {
        protocol: Some("x; down".into()),
        ..Default::default()
    };
    assert!(matches!(ctl.show_route(&bad).await, Err(CtlError::BadCommand { .. })));
    assert!(matches!(
        ctl.command("show status\ndown").await,
        Err(CtlError::BadCommand { .. })
    ));
}

#[tokio::test]
async fn timeout_closed_and_garbage() {
    let (_dir, path) = fake_bird(vec![GREETING.to_vec()], vec![ex("show status", b"1000-BIRD 2.0.12\n")]);
    let mut ctl = BirdCtl::connect(&path, Duration::from_millis(200)).await.unwrap();
    let err = ctl.command("show status").await.unwrap_err();
    assert!(matches!(err, CtlError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    // Out of step now: refuse rather than read the rest of the old reply.
    assert!(matches!(
        ctl.command("show status").await,
        Err(CtlError::BadCommand { .. })
    ));

    // `down`: BIRD may close the socket before, after or instead of its reply.
    for reply in [
        &b"0007 Shutdown requested\n<close>"[..],
        b"0007 Shut<close>",
        b"<close>",
    ] {
        let (_dir, path) = fake_bird(vec![GREETING.to_vec()], vec![ex("down", reply)]);
        connect(&path).await.down().await.unwrap();
    }

    let (dir4, path) = fake_bird(vec![b"HTTP/1.1 400 Bad Request\n".to_vec()], vec![]);
    let err = BirdCtl::connect(&path, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, CtlError::Protocol { .. }), "{err:?}");

    let missing = dir4.path().join("nothing.ctl");
    let err = BirdCtl::connect(&missing, Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(err, CtlError::Connect { .. }) && err.to_string().contains("nothing.ctl"),
        "{err}"
    );
}
