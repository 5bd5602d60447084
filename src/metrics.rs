//! Prometheus metrics. The recorder is process-wide (the `metrics` macros need a global one);
//! several nodes started in one test process share it.

use std::sync::OnceLock;

/// Increments a counter whose name and labels are the same every time this line runs: its
/// handle is registered once per call site instead of looked up on every request.
macro_rules! count {
    ($name:literal $(, $label:literal => $value:literal)*) => {{
        static COUNTER: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
        COUNTER.get_or_init(|| metrics::counter!($name $(, $label => $value)*)).increment(1)
    }};
}
pub(crate) use count;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera_cluster::ClusterStatus;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first use and returns the handle that renders it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only this node's own");
            }
            handle
        })
        .clone()
}

/// Cluster gauges, sampled when scraped.
pub fn record_cluster(status: &ClusterStatus) {
    let node = status.node_id.to_string();
    let gauge = |name: &'static str, value: f64| metrics::gauge!(name, "node" => node.clone()).set(value);
    gauge("tessera_raft_term", status.term as f64);
    gauge("tessera_raft_is_leader", f64::from(u8::from(status.role == "leader")));
    gauge("tessera_raft_leader_known", f64::from(u8::from(status.leader_id.is_some())));
    gauge("tessera_raft_last_log_index", status.last_log_index.unwrap_or(0) as f64);
    gauge("tessera_raft_applied_index", status.applied.unwrap_or(0) as f64);
    gauge("tessera_raft_snapshot_index", status.snapshot_index.unwrap_or(0) as f64);
    gauge("tessera_store_lag_entries", status.store.lag_entries as f64);
    gauge("tessera_store_lag_seconds", status.store.lag_seconds);
    gauge("tessera_store_reachable", f64::from(u8::from(status.store.reachable)));
    gauge("tessera_proposer_queue_depth", status.proposer.queue_depth as f64);
    gauge("tessera_proposer_entries", status.proposer.entries as f64);
    gauge("tessera_proposer_transactions", status.proposer.transactions as f64);
    gauge("tessera_keys_live", status.keys.live as f64);
    gauge("tessera_raft_committed_index", status.committed.unwrap_or(0) as f64);
    // Unknown (never heard from a leader) reads as infinitely stale.
    gauge("tessera_raft_since_leader_contact_seconds", status.since_leader_contact_seconds.unwrap_or(f64::INFINITY));
    for member in &status.members {
        if let Some(lag) = member.replication_lag {
            metrics::gauge!("tessera_raft_replication_lag", "node" => node.clone(), "member" => member.id.to_string())
                .set(lag as f64);
        }
    }
}
