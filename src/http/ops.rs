//! Operator endpoints: liveness, readiness, the cluster view and Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::http::AppState;

/// `GET /healthz`: the process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 only when a leader is known, Raft (and so the log store) is running and
/// the snapshot store answers; otherwise 503 with the reasons.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let status = state.node.status();
    let mut reasons = Vec::new();
    if !status.running {
        reasons.push("raft has stopped (log store or state machine failure)".to_string());
    }
    if status.leader_id.is_none() {
        reasons.push("no leader known".to_string());
    }
    if !status.store.reachable {
        reasons.push(format!(
            "snapshot store unreachable: {}",
            status.store.last_error.as_deref().unwrap_or("no answer")
        ));
    }
    let body = json!({ "ready": reasons.is_empty(), "reasons": reasons });
    let mut response = if reasons.is_empty() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.insert_header(("cache-control", "no-store"));
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
}

/// `GET /v1/cluster`: this node's view of the cluster.
pub async fn cluster(state: web::Data<AppState>) -> HttpResponse {
    let view = ClusterView {
        status: state.node.status(),
        public_addr: state.node.info().public_addr.clone(),
        peer_addr: state.node.info().peer_addr.clone(),
        uptime_seconds: state.started.elapsed().as_secs(),
    };
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(view)
}

/// `GET /metrics`: Prometheus text format. Cluster gauges are sampled at scrape time.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::metrics::record_cluster(&state.node.status());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .insert_header(("cache-control", "no-store"))
        .body(state.metrics.render())
}
