//! JSON views for `lanesctl -o json`: stable camelCase keys for scripts.

use serde_json::{json, Value};

use lanes_proto::v1 as pb;

pub fn node_status(s: &pb::NodeStatus) -> Value {
    json!({
        "nodeName": s.node_name, "version": s.version, "startedUnix": s.started_unix,
        "ready": s.ready, "notReadyReason": s.not_ready_reason, "attachments": s.attachments,
        "rejectedResources": s.rejected_resources,
    })
}

pub fn attachments(list: &[pb::Attachment]) -> Value {
    Value::Array(list.iter().map(attachment).collect())
}

pub fn attachment(a: &pb::Attachment) -> Value {
    json!({
        "containerID": a.container_id, "ifname": a.ifname, "netns": a.netns,
        "podNamespace": a.pod_namespace, "podName": a.pod_name, "podUID": a.pod_uid,
        "hostIfname": a.host_ifname, "ips": a.ips, "mac": a.mac, "mtu": a.mtu,
        "network": a.network, "createdUnix": a.created_unix,
        "networkStatus": serde_json::from_str::<Value>(&a.network_status).unwrap_or(Value::Null),
    })
}

pub fn ipam(usage: &pb::IpamUsageResponse, blocks: &pb::ListIpamBlocksResponse) -> Value {
    json!({
        "pools": usage.pools.iter().map(|p| json!({
            "name": p.name, "cidr": p.cidr, "blockSize": p.block_size, "disabled": p.disabled,
            "nodeSelector": p.node_selector, "size": p.size, "used": p.used, "free": p.free,
            "blocks": p.blocks, "blocksLocal": p.blocks_local, "borrowed": p.borrowed,
        })).collect::<Vec<_>>(),
        "blocks": blocks.blocks.iter().map(|b| json!({
            "cidr": b.cidr, "pool": b.pool, "affinity": b.affinity, "state": b.state,
            "size": b.size, "used": b.used, "borrowedByOthers": b.borrowed_by_others,
            "allocations": b.allocations.iter().map(|a| json!({
                "ip": a.ip, "handle": a.handle, "node": a.node, "podNamespace": a.pod_namespace,
                "podName": a.pod_name, "borrowed": a.borrowed,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub fn event(e: &pb::Event) -> Value {
    json!({
        "timeUnixMs": e.time_unix_ms, "kind": e.kind, "message": e.message,
        "attachment": e.attachment.as_ref().map(attachment),
    })
}

pub fn bgp_status(b: &pb::BgpStatus) -> Value {
    json!({
        "enabled": b.enabled, "birdState": b.bird_state, "routerID": b.router_id, "localAS": b.local_as,
        "birdRestarts": b.bird_restarts, "configApplies": b.config_applies, "configFailures": b.config_failures,
        "lastError": b.last_error,
        "peers": b.peers.iter().map(|p| json!({
            "name": p.name, "address": p.address, "type": p.r#type, "state": p.state, "since": p.since,
            "info": p.info, "remoteAS": p.remote_as, "routesImported": p.routes_imported,
            "routesExported": p.routes_exported,
        })).collect::<Vec<_>>(),
    })
}

pub fn routes(list: &[pb::RouteEntry]) -> Value {
    Value::Array(
        list.iter()
            .map(|r| {
                json!({"prefix": r.prefix, "nextHops": r.next_hops, "device": r.device, "kind": r.kind,
                "protocol": r.protocol, "source": r.source})
            })
            .collect(),
    )
}
