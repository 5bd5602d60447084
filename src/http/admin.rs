//! The cluster admin API, on the peer listener (never the public one), authenticated with the
//! admin token. Membership changes and transfers run on the leader: the cluster crate forwards
//! them there, one hop, over the signed peer network.
//!
//! | route | what |
//! |---|---|
//! | `POST /admin/init` | make this node the first member of a new cluster (harmless if it already is in one) |
//! | `GET /admin/status` | this node's view of the cluster |
//! | `POST /admin/learners` `{"id","peer_addr","public_addr"}` | add a node as a learner and wait until it caught up |
//! | `POST /admin/voters/{id}` | promote a learner to voter |
//! | `DELETE /admin/members/{id}` | remove a node (voter or learner) |
//! | `POST /admin/elect` | start an election on this node |
//! | `POST /admin/transfer/{id}` | move leadership to voter `id` (see `tessera_cluster`'s `membership`) |
//! | `PUT /admin/faults` `{"isolated": [ids]}` | test builds only (`fault_injection`): cut this node off from those peers |
//! | `DELETE /admin/pii/{user_id}` | test builds only (`fault_injection`): destroy a user's audit key, as erasing the user will |

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tessera_actors::Record;
use tessera_actors::domain::{IpPrefix, UserId};
use tessera_actors::ports::{Replicator, Write};
use tessera_actors::record::keys;
use tessera_cluster::{Change, Changed, ClusterNode, MembershipError, NodeId, NodeInfo, Partition};

use crate::config::Secret;
use crate::error::{ApiError, Unavailable};
use crate::http::client::bearer;

pub struct AdminState {
    pub node: ClusterNode<Record>,
    pub token: Secret,
    pub faults: Option<Arc<Partition>>,
    pub registry: Arc<tessera_actors::registry::Registry>,
    pub replica: Arc<dyn Replicator>,
}

/// Constant-time check of `Authorization: Bearer <admin token>` (digests are compared, so
/// neither the content nor the length of the token leaks through timing).
pub fn admin_authorized(req: &HttpRequest, token: &Secret) -> bool {
    let presented = bearer(req).unwrap_or_default();
    let same: bool = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(token.expose().as_bytes())).into();
    !presented.is_empty() && same
}

/// The public admin routes' check: the admin token, or a 401.
pub fn require_admin(req: &HttpRequest, token: &Secret) -> Result<(), ApiError> {
    if admin_authorized(req, token) { Ok(()) } else { Err(ApiError::InvalidToken("an admin token is required")) }
}

fn authorize(req: &HttpRequest, state: &AdminState) -> Result<(), ApiError> {
    if admin_authorized(req, &state.token) {
        Ok(())
    } else {
        // The caller's network, not its address: logs carry no full client address.
        let network = req.peer_addr().map(|peer| IpPrefix::from(peer.ip()).to_string());
        tracing::warn!(path = req.path(), network = ?network, "admin request without a valid admin token");
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
        .route("/admin/faults", web::put().to(faults))
        .route("/admin/pii/{user_id}", web::delete().to(erase_pii));
}

async fn init(state: web::Data<AdminState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let me = state.node.id();
    let members = std::collections::BTreeMap::from([(me, state.node.info().clone())]);
    let initialized = state
        .node
        .initialize(members)
        .await
        .map_err(|cause| ApiError::unavailable_because(Unavailable::Membership, anyhow::anyhow!(cause)))?;
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

/// Runs `change` on the leader and answers with this node's view of the cluster.
async fn on_leader(state: &AdminState, change: Change) -> Result<HttpResponse, ApiError> {
    match state.node.change(change).await.map_err(membership_error)? {
        Changed::Done => Ok(HttpResponse::Ok().json(json!({ "ok": true, "status": state.node.status() }))),
        Changed::Transferred { took_ms } => Ok(HttpResponse::Ok().json(json!({ "ok": true, "took_ms": took_ms }))),
    }
}

/// A refusal says why in fixed words; anything else is logged and answered as unavailable.
fn membership_error(e: MembershipError) -> ApiError {
    match e {
        MembershipError::NotLeader { .. } => ApiError::unavailable(Unavailable::NoLeader),
        MembershipError::Refused(refusal) => ApiError::BadRequest(refusal.to_string()),
        e @ MembershipError::Failed(_) => ApiError::unavailable_because(Unavailable::Membership, e),
    }
}

async fn add_learner(state: web::Data<AdminState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let learner: NewLearner = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{id, peer_addr, public_addr}}: {e}")))?;
    let info = NodeInfo { peer_addr: learner.peer_addr, public_addr: learner.public_addr };
    tracing::info!(id = learner.id, %info, "adding a learner");
    on_leader(&state, Change::AddLearner { id: learner.id, info }).await
}

async fn promote(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<NodeId>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    tracing::info!(id = *path, "promoting a learner to voter");
    on_leader(&state, Change::Promote(*path)).await
}

async fn remove(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<NodeId>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    tracing::info!(id = *path, "removing a member");
    on_leader(&state, Change::Remove(*path)).await
}

async fn elect(state: web::Data<AdminState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    state.node.elect().await.map_err(membership_error)?;
    Ok(HttpResponse::Ok().json(json!({ "ok": true })))
}

/// Moves leadership to voter `id` (run on the leader; other nodes forward it there).
async fn transfer(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<NodeId>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let target = *path;
    match state.node.change(Change::Transfer(target)).await.map_err(membership_error)? {
        Changed::Transferred { took_ms } => {
            Ok(HttpResponse::Ok().json(json!({ "ok": true, "leader": target, "took_ms": took_ms })))
        }
        Changed::Done => Ok(HttpResponse::Ok().json(json!({ "ok": true, "leader": target }))),
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

/// Destroys a user's audit key (the accounts issue's hard delete will do this as part of
/// erasing the user): their events stay and still verify, their personal data no longer opens.
async fn erase_pii(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    if state.faults.is_none() {
        return Err(ApiError::NotFound);
    }
    let user = UserId::parse(&path).ok_or_else(|| ApiError::BadRequest("not a user id".into()))?;
    let erase = Write { deletes: vec![keys::pii(user)], ..Write::default() };
    state.replica.write(erase).await.map_err(|e| ApiError::unavailable_because(Unavailable::Busy, e))?;
    Ok(HttpResponse::NoContent().finish())
}
