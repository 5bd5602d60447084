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
//! | `POST /admin/elect` | start an election on this node (how leadership moves in openraft 0.9) |
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
    Ok(HttpResponse::Ok().json(state.node.status()))
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
