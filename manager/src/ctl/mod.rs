//! Presentation for lanesctl: aligned tables and JSON views of API messages,
//! kept here (pure) so they are tested without a daemon.

pub mod json;
pub mod table;

use lanes_proto::v1 as pb;

/// The BGP part of `lanesctl node status`, laid out like `calicoctl node status`.
pub fn bgp_table(b: &pb::BgpStatus) -> String {
    if !b.enabled {
        return "BGP is disabled on this node.\n".into();
    }
    let mut out = format!(
        "BIRD is {} (router id {}, AS {}, {} restart(s), {} config apply(s), {} failed)\n",
        b.bird_state, b.router_id, b.local_as, b.bird_restarts, b.config_applies, b.config_failures
    );
    if !b.last_error.is_empty() {
        out.push_str(&format!("Last error: {}\n", b.last_error));
    }
    out.push_str("\nIPv4 BGP status\n");
    let mut t = table::Table::new(&["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]);
    for p in &b.peers {
        t.row(vec![
            p.address.clone(),
            p.r#type.clone(),
            p.state.clone(),
            p.since.clone(),
            p.info.clone(),
        ]);
    }
    if b.peers.is_empty() {
        out.push_str("No IPv4 peers found.\n");
    } else {
        out.push_str(&t.render_boxed());
    }
    out
}
