//! Operator endpoints: liveness, readiness, the cluster view and Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::http::state::AppState;

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 only when a leader is known, Raft (and so the log store) is running, the snapshot
/// store answers and a signing key is loaded; otherwise 503 with the reasons.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Not ready; `reasons` says why")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let status = state.node.status();
    let mut reasons = Vec::new();
    if !status.running {
        reasons.push("raft has stopped (log store or state machine failure)".to_string());
    }
    if status.leader_id.is_none() {
        reasons.push("no leader known".to_string());
    }
    if state.tokens.keyring().current().active.is_none() {
        reasons.push("no signing key loaded yet".to_string());
    }
    if !status.store.reachable {
        // The store's own error text is in the log and the operator view (`/v1/cluster`).
        reasons.push("snapshot store unreachable".to_string());
    }
    let (backlog, limit) = (state.node.stream_backlog(), state.registry.context().audit.max_backlog);
    if backlog >= limit {
        reasons.push(format!(
            "audit backlog full: {backlog} events the snapshot store has not taken; writes that record security events are refused"
        ));
    }
    let body = json!({ "ready": reasons.is_empty(), "reasons": reasons });
    let mut response = if reasons.is_empty() { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    if !reasons.is_empty() {
        response.insert_header(("retry-after", "1"));
    }
    response.json(body)
}

#[derive(Serialize)]
struct ClusterView {
    #[serde(flatten)]
    status: tessera_cluster::ClusterStatus,
    public_addr: String,
    peer_addr: String,
    uptime_seconds: u64,
    /// Actors active on this node (only the leader hosts any).
    actors: tessera_actors::registry::ActorCounts,
    /// Argon2id verifications this node has performed (real and dummy).
    password_verifications: u64,
    audit: AuditView,
    /// Each webhook endpoint's name, how far delivery got, and whether it is disabled.
    webhooks: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct AuditView {
    /// The last `seq` of the audit trail this replica applied.
    head_seq: u64,
    /// Stream entries this replica holds that the snapshot store may not have taken yet.
    backlog: usize,
    /// Past this backlog, writes that record events are refused.
    max_backlog: usize,
}

/// This node's view of the cluster.
#[utoipa::path(get, path = "/v1/cluster", tag = "operations", responses((status = 200, description = "Node, Raft, snapshot-store and proposer state", body = Object)))]
pub async fn cluster(state: web::Data<AppState>) -> HttpResponse {
    let view = ClusterView {
        status: state.node.status(),
        public_addr: state.node.info().public_addr.clone(),
        peer_addr: state.node.info().peer_addr.clone(),
        uptime_seconds: state.started.elapsed().as_secs(),
        actors: state.registry.counts(),
        password_verifications: state.passwords.verifications(),
        audit: AuditView {
            head_seq: state.node.stream_head(tessera_actors::audit::STREAM).last,
            backlog: state.node.stream_backlog(),
            max_backlog: state.registry.context().audit.max_backlog,
        },
        webhooks: crate::webhooks::dispatcher::cursors(&*state.replica, &state.webhooks)
            .into_iter()
            .map(|(name, cursor)| {
                let cursor = cursor.unwrap_or_default();
                json!({ "name": name, "delivered_seq": cursor.delivered, "failures": cursor.failures, "disabled": cursor.disabled })
            })
            .collect(),
    };
    HttpResponse::Ok().json(view)
}

/// Prometheus text format. Cluster gauges are sampled at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus exposition", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::metrics::record_cluster(&state.node.status());
    metrics::gauge!("tessera_audit_backlog").set(state.node.stream_backlog() as f64);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
