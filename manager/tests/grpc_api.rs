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
    // The event stream, watched while the pod comes and goes.
    let watch = Command::new(grpcurl())
        .args(["-plaintext", "-unix", "-authority", "localhost", "-max-time", "4"])
        .args([sock.as_str(), "lanes.v1.Node/Watch"])
        .stdout(std::process::Stdio::piped())
        // It ends with DeadlineExceeded at -max-time, by design.
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("grpcurl Watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
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
    let one = g(&["-d", r#"{"containerId":"grpc1"}"#, &sock, "lanes.v1.Node/GetAttachment"]);
    assert!(one.contains("\"podName\": \"web\"") && one.contains("10.244."), "{one}");
    let det = g(&["-d", r#"{"containerId":"grpc1"}"#, &sock, "lanes.v1.Node/Detach"]);
    assert!(det.contains("\"found\": true"), "{det}");
    let events = String::from_utf8_lossy(&watch.wait_with_output().expect("Watch output").stdout).into_owned();
    for kind in ["\"kind\": \"attached\"", "\"kind\": \"detached\""] {
        assert!(events.contains(kind), "{kind} streamed: {events}");
    }
    assert!(events.contains("grpc1"), "{events}");
}

/// Reflection v1 (newer grpcurl, Postman, grpcui speak it; the grpcurl here only v1alpha).
#[test]
fn reflection_v1_lists_the_services() {
    if !prerequisites("reflection_v1_lists_the_services", &["ip"]) {
        return;
    }
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let node = Node::new("node1", SEED_POOL);
    let sock = node.socket();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names = rt.block_on(async move {
        let channel = lanes_manager::api::client::unix_channel(&sock).await.expect("connect");
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("reflection v1")
            .into_inner();
        let reply = replies.message().await.expect("a reply").expect("one message");
        match reply.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
            other => panic!("unexpected reflection reply: {other:?}"),
        }
    });
    for svc in ["lanes.v1.Cni", "lanes.v1.Node", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == svc), "{svc} in {names:?}");
    }
}
