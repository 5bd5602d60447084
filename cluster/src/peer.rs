//! The server side of the peer network: Raft RPC routes for the peer listener.
//!
//! Each route checks the request's MAC before it decodes anything (401 otherwise, and nothing
//! reaches Raft), decodes the bincode body (400 if it is malformed), and answers with the
//! bincode-encoded `Result` from openraft. The body limit is set by the caller from the
//! configured snapshot chunk and append payload sizes.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use std::sync::Arc;
use std::time::Instant;

use openraft::raft::AppendEntriesResponse;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{AUTH_HEADER, PeerAuth};
use crate::codec;
use crate::network::paths;
use crate::types::Raft;

/// What the Raft routes need; registered as actix `app_data`.
#[derive(Clone)]
pub struct PeerService {
    pub(crate) raft: Raft,
    pub(crate) auth: PeerAuth,
    pub(crate) body_limit: usize,
    /// When a leader last reached this node with AppendEntries it accepted the term of.
    pub(crate) leader_contact: Arc<Mutex<Option<Instant>>>,
}

impl PeerService {
    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// Registers the Raft routes and the body limit they need.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()))
            .app_data(web::PayloadConfig::new(self.body_limit))
            .route(paths::APPEND, web::post().to(append))
            .route(paths::VOTE, web::post().to(vote))
            .route(paths::SNAPSHOT, web::post().to(snapshot))
            .route(paths::READ_INDEX, web::post().to(read_index));
    }

    /// Checks a peer request's MAC; `Err` is the response to send instead.
    pub fn authenticate(&self, req: &HttpRequest, body: &[u8]) -> Result<(), HttpResponse> {
        let header = req.headers().get(AUTH_HEADER).map(|v| v.as_bytes());
        if self.auth.verify(req.path(), body, header) {
            Ok(())
        } else {
            tracing::warn!(path = req.path(), peer = ?req.peer_addr(), "peer request without a valid cluster MAC");
            Err(plain(StatusCode::UNAUTHORIZED, "missing or invalid peer MAC"))
        }
    }

    /// Authenticates and decodes a peer request body.
    pub fn decode<T: DeserializeOwned>(&self, req: &HttpRequest, body: &[u8]) -> Result<T, HttpResponse> {
        self.authenticate(req, body)?;
        codec::decode(body).map_err(|e| plain(StatusCode::BAD_REQUEST, &format!("malformed body: {e}")))
    }
}

fn plain(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain").body(message.to_string())
}

/// A bincode response body.
pub fn encoded<T: Serialize>(value: &T) -> HttpResponse {
    match codec::encode(value) {
        Ok(bytes) => HttpResponse::Ok().content_type("application/octet-stream").body(bytes),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn append(svc: web::Data<PeerService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    match svc.decode(&req, &body) {
        Ok(rpc) => {
            let response = svc.raft.append_entries(rpc).await;
            if matches!(&response, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                *svc.leader_contact.lock() = Some(Instant::now());
            }
            encoded(&response)
        }
        Err(response) => response,
    }
}

/// The leader's read index, for a follower serving a linearizable read.
async fn read_index(svc: web::Data<PeerService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    if let Err(response) = svc.authenticate(&req, &body) {
        return response;
    }
    let read = svc.raft.get_read_log_id().await.map(|(read_log_id, _applied)| read_log_id);
    encoded(&read)
}

async fn vote(svc: web::Data<PeerService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    match svc.decode(&req, &body) {
        Ok(rpc) => encoded(&svc.raft.vote(rpc).await),
        Err(response) => response,
    }
}

async fn snapshot(svc: web::Data<PeerService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    match svc.decode(&req, &body) {
        Ok(rpc) => encoded(&svc.raft.install_snapshot(rpc).await),
        Err(response) => response,
    }
}
