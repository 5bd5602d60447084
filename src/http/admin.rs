//! The cluster admin API, on the peer listener (never the public one), authenticated with the
//! admin token. Membership changes run on the leader: a follower forwards them there, one hop.
//!
//! | route | what |
//! |---|---|
//! | `POST /admin/init` | make this node the first member of a new cluster (harmless if it already is in one) |
//! | `GET /admin/status` | this node's view of the cluster |
//! | `POST /admin/learners` `{"id","peer_addr","public_addr"}` | add a node as a learner and wait until it caught up |
//! | `POST /admin/voters/{id}` | promote a learner to voter |
//! | `DELETE /admin/members/{id}` | remove a node (voter or learner) |
//! | `POST /admin/elect` | start an election on this node |
//! | `POST /admin/transfer/{id}` | move leadership to voter `id` (see `transfer`) |
//! | `POST /admin/hold-elections` `{"ms"}` | keep this node from standing for election that long (0: release) |
//! | `PUT /admin/faults` `{"isolated": [ids]}` | test builds only (`fault_injection`): cut this node off from those peers |

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tessera_actors::Record;
use tessera_cluster::{ClusterNode, MembershipError, NodeId, NodeInfo, Partition};

use crate::config::Secret;
use crate::error::ApiError;
use crate::http::client::bearer;

/// Header marking a request forwarded by another node (forwarding is one hop).
const FORWARDED: &str = "x-tessera-forwarded";

pub struct AdminState {
    pub node: ClusterNode<Record>,
    pub token: Secret,
    pub faults: Option<Arc<Partition>>,
    pub registry: Arc<tessera_actors::registry::Registry>,
    /// `raft.election_timeout_max_ms`: bounds how long a leadership transfer may take.
    pub election_timeout_max: Duration,
}

/// Constant-time check of `Authorization: Bearer <admin token>` (digests are compared, so
/// neither the content nor the length of the token leaks through timing).
pub fn admin_authorized(req: &HttpRequest, token: &Secret) -> bool {
    let presented = bearer(req).unwrap_or_default();
    let same: bool = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(token.expose().as_bytes())).into();
    !presented.is_empty() && same
}

fn authorize(req: &HttpRequest, state: &AdminState) -> Result<(), ApiError> {
    if admin_authorized(req, &state.token) {
        Ok(())
    } else {
        tracing::warn!(path = req.path(), peer = ?req.peer_addr(), "admin request without a valid admin token");
        Err(ApiError::InvalidToken("an admin token is required"))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/init", web::post().to(init))
        .route("/admin/status", web::get().to(status))
        .route("/admin/learners", web::post().to(add_learner))
        .route("/admin/voters/{id}", web::post().to(promote))
        .route("/admin/members/{id}", web::delete().to(remove))
        .route("/admin/elect", web::post().to(elect))
        .route("/admin/transfer/{id}", web::post().to(transfer))
        .route("/admin/hold-elections", web::post().to(hold_elections))
        .route("/admin/faults", web::put().to(faults));
}

async fn init(state: web::Data<AdminState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let me = state.node.id();
    let members = std::collections::BTreeMap::from([(me, state.node.info().clone())]);
    let initialized = state.node.initialize(members).await.map_err(ApiError::unavailable)?;
    if initialized {
        tracing::info!(node_id = me, "initialised a new cluster through the admin API");
    }
    Ok(HttpResponse::Ok().json(json!({ "initialized": initialized, "node_id": me })))
}

async fn status(state: web::Data<AdminState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let mut view = serde_json::to_value(state.node.status()).map_err(ApiError::internal)?;
    view["actors"] = serde_json::to_value(state.registry.counts()).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
struct NewLearner {
    id: NodeId,
    peer_addr: String,
    public_addr: String,
}

/// Runs a membership change here if this node leads, else forwards the request to the leader.
async fn on_leader(
    state: &AdminState,
    req: &HttpRequest,
    body: Bytes,
    change: impl std::future::Future<Output = Result<(), MembershipError>>,
) -> Result<HttpResponse, ApiError> {
    match change.await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "ok": true, "status": state.node.status() }))),
        Err(MembershipError::NotLeader { leader: Some((_, info)) }) if req.headers().get(FORWARDED).is_none() => {
            forward(req, body, &info).await
        }
        Err(MembershipError::NotLeader { .. }) => Err(ApiError::unavailable("no leader available; retry")),
        Err(MembershipError::Failed(reason)) => Err(ApiError::BadRequest(reason)),
    }
}

async fn forward(req: &HttpRequest, body: Bytes, leader: &NodeInfo) -> Result<HttpResponse, ApiError> {
    let url = format!("http://{}{}", leader.peer_addr, req.uri());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut request =
        reqwest::Client::new().request(method, url).timeout(Duration::from_secs(60)).header(FORWARDED, "1");
    if let Some(auth) = req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        request = request.header("authorization", auth);
    }
    if *req.method() != Method::DELETE {
        request = request.header("content-type", "application/json").body(body.to_vec());
    }
    let response = request.send().await.map_err(|e| ApiError::unavailable(format!("leader unreachable: {e}")))?;
    let status = actix_web::http::StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    let bytes = response.bytes().await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::build(status).content_type(content_type).body(bytes))
}

async fn add_learner(state: web::Data<AdminState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let learner: NewLearner = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{id, peer_addr, public_addr}}: {e}")))?;
    let info = NodeInfo { peer_addr: learner.peer_addr, public_addr: learner.public_addr };
    tracing::info!(id = learner.id, %info, "adding a learner");
    on_leader(&state, &req, body.clone(), state.node.add_learner(learner.id, info)).await
}

async fn promote(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<NodeId>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    tracing::info!(id = *path, "promoting a learner to voter");
    on_leader(&state, &req, body, state.node.promote(*path)).await
}

async fn remove(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<NodeId>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    tracing::info!(id = *path, "removing a member");
    on_leader(&state, &req, body, state.node.remove(*path)).await
}

async fn elect(state: web::Data<AdminState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    state.node.elect().await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct Hold {
    ms: u64,
}

async fn hold_elections(
    state: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Json<Hold>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    if body.ms > 60_000 {
        return Err(ApiError::BadRequest("ms must be at most 60000".into()));
    }
    state.node.hold_elections(Duration::from_millis(body.ms));
    Ok(HttpResponse::Ok().json(json!({ "ok": true, "held_ms": body.ms })))
}

/// Moves leadership to voter `id`; runs on the leader (other nodes forward it there).
///
/// openraft 0.9 has no transfer, so the leader: makes every voter but the target hold its
/// elections, stops proposing new entries, waits until the target holds its whole log, and has
/// the target stand. The target's higher term makes the leader step down on the next
/// heartbeat, and the leader (whose log is no longer than the target's) votes for it on the
/// target's next round, which it asks for at once. Holds and the pause lapse by themselves, so
/// a transfer that dies half-way heals; they are released as soon as the target leads.
async fn transfer(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<NodeId>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let target = *path;
    let status = state.node.status();
    if status.leader_id == Some(target) {
        return Ok(HttpResponse::Ok().json(json!({ "ok": true, "leader": target, "took_ms": 0 })));
    }
    if !state.node.leadership().this_node_leads {
        return match status.leader {
            Some(leader) if req.headers().get(FORWARDED).is_none() => forward(&req, body, &leader).await,
            _ => Err(ApiError::unavailable("no leader available; retry")),
        };
    }
    let me = state.node.id();
    let voters: Vec<_> = status.members.iter().filter(|m| m.voter).map(|m| (m.id, m.peer_addr.clone())).collect();
    let Some(target_addr) = voters.iter().find(|(id, _)| *id == target).map(|(_, addr)| addr.clone()) else {
        return Err(ApiError::BadRequest(format!("node {target} is not a voter")));
    };
    let token = bearer(&req).unwrap_or_default().to_string();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(ApiError::internal)?;
    let call = |addr: String, path: &'static str, body: serde_json::Value| {
        let request = client.post(format!("http://{addr}{path}")).bearer_auth(&token).json(&body);
        async move { request.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
    };
    let others: Vec<_> = voters.iter().filter(|(id, _)| *id != target && *id != me).cloned().collect();
    let hold = |ms: u64| {
        state.node.hold_elections(Duration::from_millis(ms));
        futures::future::join_all(
            others.iter().map(|(_, addr)| call(addr.clone(), "/admin/hold-elections", json!({ "ms": ms }))),
        )
    };
    let limit = 3 * state.election_timeout_max;
    tracing::info!(target, "transferring leadership");
    let started = std::time::Instant::now();
    hold(limit.as_millis() as u64).await;
    let moved = async {
        // No new entries (client batches or compactions) from here on, and the ones in flight
        // appended: otherwise one could land after the target caught up, and the leader, with
        // the longer log, would refuse it its vote.
        if !state.node.pause_proposals(limit).await {
            return false;
        }
        // The target must hold every entry this leader has before it stands.
        loop {
            let now = state.node.status();
            let matched = now.members.iter().find(|m| m.id == target).and_then(|m| m.matched_index);
            if matched.is_some() && matched == now.last_log_index {
                break;
            }
            if started.elapsed() > limit / 2 {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !call(target_addr.clone(), "/admin/elect", json!({})).await {
            return false;
        }
        // Voters that still hear from this leader refuse the target's first round (leader
        // lease), but this node steps down when it sees the target's term. From then on its
        // vote is no longer a leader's: another round by the target wins it at once, instead of
        // after the target's own election timeout.
        let mut stood_again: Option<std::time::Instant> = None;
        while started.elapsed() < limit {
            if state.node.status().leader_id == Some(target) {
                return true;
            }
            if !state.node.leadership().this_node_leads
                && stood_again.is_none_or(|at| at.elapsed() >= Duration::from_millis(250))
            {
                stood_again = Some(std::time::Instant::now());
                call(target_addr.clone(), "/admin/elect", json!({})).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
    .await;
    state.node.pause_proposals(Duration::ZERO).await;
    hold(0).await;
    let took_ms = started.elapsed().as_millis() as u64;
    if moved {
        tracing::info!(target, took_ms, "leadership transferred");
        Ok(HttpResponse::Ok().json(json!({ "ok": true, "leader": target, "took_ms": took_ms })))
    } else {
        tracing::warn!(target, took_ms, "leadership transfer did not complete");
        Err(ApiError::unavailable(format!("node {target} did not take over within {limit:?}")))
    }
}

#[derive(Deserialize)]
struct Faults {
    isolated: BTreeSet<NodeId>,
}

async fn faults(
    state: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Json<Faults>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let Some(partition) = &state.faults else { return Err(ApiError::NotFound) };
    partition.set(body.isolated.clone());
    tracing::warn!(isolated = ?body.isolated, "fault injection: peer traffic with these nodes is cut");
    Ok(HttpResponse::Ok().json(json!({ "isolated": partition.isolated() })))
}
