//! Prometheus metrics (served on `metrics: host:port` when set).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CniLabels {
    pub verb: String,
    /// "0" for success, else the CNI error code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub bgp_peers: Family<StateLabel, Gauge>,
    pub bgp_routes_imported: Gauge,
    pub bgp_routes_exported: Gauge,
    pub bird_restarts: Counter,
    pub bird_applies: Counter,
    pub bird_apply_failures: Counter,
    pub cni_requests: Family<CniLabels, Counter>,
    pub cni_seconds: Family<VerbLabel, Histogram>,
    pub attachments: Gauge,
    pub ovn_install_wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lanes");
        let cni_requests = Family::<CniLabels, Counter>::default();
        let cni_seconds = Family::<VerbLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let attachments = Gauge::default();
        registry.register(
            "cni_requests",
            "CNI calls by verb and result code",
            cni_requests.clone(),
        );
        registry.register(
            "cni_request_seconds",
            "CNI call latency inside lanesd",
            cni_seconds.clone(),
        );
        registry.register(
            "attachments",
            "Primary-network attachments on this node",
            attachments.clone(),
        );
        let bgp_peers = Family::<StateLabel, Gauge>::default();
        let (bgp_routes_imported, bgp_routes_exported) = (Gauge::default(), Gauge::default());
        let (bird_restarts, bird_applies, bird_apply_failures) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register(
            "bgp_peers",
            "BGP sessions by BIRD protocol state (up, start, stop, down, …)",
            bgp_peers.clone(),
        );
        registry.register(
            "bgp_routes_imported",
            "Routes imported from all BGP peers",
            bgp_routes_imported.clone(),
        );
        registry.register(
            "bgp_routes_exported",
            "Routes exported to all BGP peers",
            bgp_routes_exported.clone(),
        );
        registry.register(
            "bird_restarts",
            "Unexpected BIRD exits that were restarted",
            bird_restarts.clone(),
        );
        registry.register(
            "bird_config_applies",
            "BIRD configs checked and applied",
            bird_applies.clone(),
        );
        registry.register(
            "bird_config_failures",
            "BIRD configs rejected or failed to apply",
            bird_apply_failures.clone(),
        );
        let ovn_install_wait = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "ovn_install_wait_seconds",
            "Time ADD waited for ovn-controller to set ovn-installed",
            ovn_install_wait.clone(),
        );
        Metrics {
            ovn_install_wait,
            registry,
            bgp_peers,
            bgp_routes_imported,
            bgp_routes_exported,
            bird_restarts,
            bird_applies,
            bird_apply_failures,
            cni_requests,
            cni_seconds,
            attachments,
        }
    }

    pub fn observe_cni(&self, verb: &str, code: u32, took: Duration) {
        self.cni_requests
            .get_or_create(&CniLabels {
                verb: verb.into(),
                code: code.to_string(),
            })
            .inc();
        self.cni_seconds
            .get_or_create(&VerbLabel { verb: verb.into() })
            .observe(took.as_secs_f64());
    }

    /// Per-state peer counts and route totals from BIRD's protocol table. The usual states
    /// are always there (0 when no session is in them); any other state BIRD reports too.
    pub fn record_peers(&self, peers: &[crate::bgp::status::PeerRow]) {
        self.bgp_peers.clear();
        for state in ["up", "start", "down"] {
            self.bgp_peers.get_or_create(&StateLabel { state: state.into() }).set(0);
        }
        for p in peers {
            self.bgp_peers
                .get_or_create(&StateLabel { state: p.state.clone() })
                .inc();
        }
        self.bgp_routes_imported
            .set(peers.iter().map(|p| p.routes_imported as i64).sum());
        self.bgp_routes_exported
            .set(peers.iter().map(|p| p.routes_exported as i64).sum());
    }

    /// BIRD's supervisor keeps the totals; the counters follow them.
    pub fn record_bird(&self, restarts: u64, applies: u64, failures: u64) {
        for (c, total) in [
            (&self.bird_restarts, restarts),
            (&self.bird_applies, applies),
            (&self.bird_apply_failures, failures),
        ] {
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_cni_counters_and_latency() {
        let m = super::Metrics::new();
        m.observe_cni("ADD", 0, std::time::Duration::from_millis(3));
        m.observe_cni("ADD", 100, std::time::Duration::from_millis(1));
        m.attachments.set(2);
        let text = m.encode();
        assert!(
            text.contains(r#"lanes_cni_requests_total{verb="ADD",code="0"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lanes_cni_requests_total{verb="ADD",code="100"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("lanes_cni_request_seconds_count{verb=\"ADD\"} 2"),
            "{text}"
        );
        assert!(text.contains("lanes_attachments 2"), "{text}");
    }

    #[test]
    fn encodes_bgp_peers_by_state_and_bird_counters() {
        use crate::bgp::status::PeerRow;
        let m = super::Metrics::new();
        let peer = |state: &str, imported, exported| PeerRow {
            state: state.into(),
            routes_imported: imported,
            routes_exported: exported,
            ..PeerRow::default()
        };
        m.record_peers(&[peer("up", 3, 2), peer("up", 4, 2), peer("stop", 0, 0)]);
        m.record_bird(1, 5, 2);
        m.record_bird(1, 6, 2);
        let text = m.encode();
        for want in [
            r#"lanes_bgp_peers{state="up"} 2"#,
            r#"lanes_bgp_peers{state="stop"} 1"#,
            r#"lanes_bgp_peers{state="start"} 0"#,
            r#"lanes_bgp_peers{state="down"} 0"#,
            "lanes_bgp_routes_imported 7",
            "lanes_bgp_routes_exported 4",
            "lanes_bird_restarts_total 1",
            "lanes_bird_config_applies_total 6",
            "lanes_bird_config_failures_total 2",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        // A session that went away leaves no stale state behind.
        m.record_peers(&[peer("up", 1, 1)]);
        let text = m.encode();
        assert!(text.contains(r#"lanes_bgp_peers{state="up"} 1"#), "{text}");
        assert!(!text.contains(r#"state="stop""#), "{text}");
    }
}
