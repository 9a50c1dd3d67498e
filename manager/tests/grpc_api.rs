//! The gRPC API as people debug it: grpcurl 1.8.6 (reflection v1alpha,
//! `-authority localhost` over the unix socket) and lanesctl.

mod support;

use std::process::Command;

use support::*;

fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into())
}

#[test]
fn grpcurl_lists_and_calls_over_the_unix_socket() {
    if !prerequisites("grpcurl_lists_and_calls_over_the_unix_socket", &["ip", &grpcurl()]) {
        return;
    }
    let node = Node::new("node1", SEED_POOL);
    let sock = node.socket().display().to_string();
    let g = |args: &[&str]| {
        let out = Command::new(grpcurl())
            .args(["-plaintext", "-unix", "-authority", "localhost"])
            .args(args)
            .output()
            .expect("grpcurl");
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = g(&[&sock, "list"]);
    for svc in ["lanes.v1.Cni", "lanes.v1.Node", "grpc.health.v1.Health"] {
        assert!(list.contains(svc), "{svc} in {list}");
    }
    assert!(g(&[&sock, "describe", "lanes.v1.Node"]).contains("ListAttachments"));
    let health = g(&[
        "-d",
        r#"{"service":"lanes.v1.Cni"}"#,
        &sock,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("SERVING"), "{health}");
    let status = g(&[&sock, "lanes.v1.Node/GetNodeStatus"]);
    assert!(
        status.contains("\"nodeName\": \"node1\"") && status.contains("\"ready\": true"),
        "{status}"
    );
    // An ADD through grpcurl, the way an orchestrator without a runtime would.
    let pod = Netns::new("litg-");
    let req = format!(
        r#"{{"containerId":"grpc1","netns":"{}","ifname":"eth0","podNamespace":"default","podName":"web"}}"#,
        pod.path()
    );
    let att = g(&["-d", &req, &sock, "lanes.v1.Node/Attach"]);
    assert!(att.contains("10.244.") && att.contains("\"podName\": \"web\""), "{att}");
    let (ok, table) = node.lanesctl(&["attachments"]);
    assert!(
        ok && table.contains("default/web") && table.contains("grpc1"),
        "{table}"
    );
    // What the DaemonSet's probes run.
    let (ok, health) = node.lanesctl(&["health"]);
    assert!(ok && health.contains("SERVING"), "{health}");
    let det = g(&["-d", r#"{"containerId":"grpc1"}"#, &sock, "lanes.v1.Node/Detach"]);
    assert!(det.contains("\"found\": true"), "{det}");
}
