//! The server side of the peer network: Raft RPC routes for the peer listener.
//!
//! Each route checks the request's MAC before it decodes anything (401 otherwise, and nothing
//! reaches Raft), decodes the bincode body (400 if it is malformed), and answers with the
//! bincode-encoded `Result` from openraft. The body limit is set by the caller from the
//! configured snapshot chunk and append payload sizes.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::AppendEntriesResponse;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{AUTH_HEADER, PeerAuth};
use crate::codec;
use crate::network::{AppendBody, paths};
use crate::types::Raft;

/// What the Raft routes need; registered as actix `app_data`.
#[derive(Clone)]
pub struct PeerService {
    pub(crate) raft: Raft,
    pub(crate) auth: PeerAuth,
    pub(crate) body_limit: usize,
    /// How current this replica is, from the leader's AppendEntries requests.
    pub(crate) freshness: Arc<Mutex<Freshness>>,
    /// Whether this node may stand for election (a transfer to another node holds it).
    pub(crate) holds: Arc<ElectionHold>,
}

/// When this follower's replica last reflected everything a leader in charge had committed.
///
/// Each AppendEntries request this node accepts says what the leader had committed when it
/// signed the request, and how long before that a quorum last confirmed its leadership. Once
/// the replica has applied that far, it is known to be as current as a confirmed leader was at
/// that earlier moment: `fresh_at`. Counting from the signing time (not the arrival) means a
/// request that waited in a socket buffer (a paused process, a slow network) does not make an
/// old replica look current; counting from the leader's quorum round means a deposed leader
/// that still reaches a few followers cannot keep them looking current.
#[derive(Debug, Default)]
pub struct Freshness {
    fresh_at: Option<Instant>,
    /// Contacts whose commit index the replica has not applied yet: (signed at, commit).
    pending: VecDeque<(Instant, u64)>,
}

/// Contacts remembered while the replica catches up; later ones wait for room.
const PENDING_CONTACTS: usize = 4096;

impl Freshness {
    /// Records a contact from the leader signed at `at` with the leader's commit index.
    pub fn record(&mut self, at: Instant, commit: u64) {
        if self.fresh_at.is_some_and(|fresh| fresh >= at) {
            return;
        }
        let full = self.pending.len() >= PENDING_CONTACTS;
        match self.pending.back_mut() {
            // A later contact with the same commit supersedes the earlier one.
            Some(last) if last.1 == commit => last.0 = last.0.max(at),
            Some(last) if last.1 > commit => {} // arrived out of order: the later one covers it
            _ if full => {}
            _ => self.pending.push_back((at, commit)),
        }
    }

    /// Time since the replica, having applied up to `applied`, was last as current as its
    /// leader; `None` if never.
    pub fn age(&mut self, applied: u64) -> Option<Duration> {
        while let Some(&(at, commit)) = self.pending.front()
            && commit <= applied
        {
            self.fresh_at = Some(self.fresh_at.map_or(at, |fresh| fresh.max(at)));
            self.pending.pop_front();
        }
        self.fresh_at.map(|at| at.elapsed())
    }

    /// Forgets every contact (this node became leader, or its state was replaced).
    pub fn reset(&mut self) {
        *self = Freshness::default();
    }
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
            .route(paths::READ_INDEX, web::post().to(read_index))
            .route(paths::HOLD_ELECTIONS, web::post().to(hold_elections))
            .route(paths::ELECT, web::post().to(elect));
    }

    /// Checks a peer request's MAC and signing time; `Ok` is when the sender signed it (by
    /// this node's clock), `Err` the response to send instead.
    pub fn authenticate(&self, req: &HttpRequest, body: &[u8]) -> Result<Instant, HttpResponse> {
        let header = req.headers().get(AUTH_HEADER).map(|v| v.as_bytes());
        match self.auth.verify(req.path(), body, header) {
            Ok(age) => {
                let now = Instant::now();
                Ok(now.checked_sub(age).unwrap_or(now))
            }
            Err(e) => {
                tracing::warn!(path = req.path(), peer = ?req.peer_addr(), error = %e, "peer request refused");
                Err(plain(StatusCode::UNAUTHORIZED, &e.to_string()))
            }
        }
    }

    /// Authenticates and decodes a peer request body.
    pub fn decode<T: DeserializeOwned>(&self, req: &HttpRequest, body: &[u8]) -> Result<T, HttpResponse> {
        self.decode_signed(req, body).map(|(value, _)| value)
    }

    /// Authenticates and decodes a peer request body; also returns when it was signed.
    pub fn decode_signed<T: DeserializeOwned>(
        &self,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<(T, Instant), HttpResponse> {
        let signed = self.authenticate(req, body)?;
        codec::decode(body)
            .map(|value| (value, signed))
            .map_err(|e| plain(StatusCode::BAD_REQUEST, &format!("malformed body: {e}")))
    }
}

/// Until when this node must not stand for election (a transfer to another node is running).
pub(crate) struct ElectionHold {
    raft: Raft,
    until: Mutex<Option<Instant>>,
}

impl ElectionHold {
    pub(crate) fn new(raft: Raft) -> ElectionHold {
        ElectionHold { raft, until: Mutex::new(None) }
    }

    /// Keeps this node from standing for `duration` (zero: lets it stand again now). The hold
    /// lapses by itself.
    pub(crate) fn hold(self: &Arc<Self>, duration: Duration) {
        *self.until.lock() = (!duration.is_zero()).then(|| Instant::now() + duration);
        self.raft.runtime_config().elect(duration.is_zero());
        if duration.is_zero() {
            return;
        }
        let hold = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let mut until = hold.until.lock();
            if until.is_some_and(|at| at <= Instant::now()) {
                *until = None;
                hold.raft.runtime_config().elect(true);
            }
        });
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
    match svc.decode_signed::<AppendBody>(&req, &body) {
        Ok(((lease_ms, rpc), signed)) => {
            let commit = rpc.leader_commit.map_or(0, |l| l.index);
            let response = svc.raft.append_entries(rpc).await;
            // The leader was current as of its last quorum round, `lease_ms` before it signed.
            let current_at = lease_ms.and_then(|ms| signed.checked_sub(Duration::from_millis(ms)));
            if let Some(at) = current_at
                && matches!(&response, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_)))
            {
                svc.freshness.lock().record(at, commit);
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

/// A leadership transfer to another node: do not stand for election for the given ms (0: stand
/// again).
async fn hold_elections(svc: web::Data<PeerService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    match svc.decode::<u64>(&req, &body) {
        Ok(ms) => {
            svc.holds.hold(Duration::from_millis(ms.min(60_000)));
            encoded(&())
        }
        Err(response) => response,
    }
}

/// A leadership transfer to this node: stand for election now.
async fn elect(svc: web::Data<PeerService>, req: HttpRequest, body: Bytes) -> HttpResponse {
    if let Err(response) = svc.authenticate(&req, &body) {
        return response;
    }
    match svc.raft.trigger().elect().await {
        Ok(()) => encoded(&()),
        Err(e) => {
            tracing::warn!(error = %e, "could not start an election");
            plain(StatusCode::SERVICE_UNAVAILABLE, "could not start an election")
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_fresh_only_once_it_applied_what_the_leader_had_committed() {
        let mut freshness = Freshness::default();
        assert_eq!(freshness.age(0), None, "never heard from a leader");
        let t0 = Instant::now();
        freshness.record(t0, 10);
        assert_eq!(freshness.age(9), None, "commit 10 not applied yet");
        let later = t0 + Duration::from_millis(5);
        freshness.record(later, 12);
        assert!(freshness.age(10).is_some());
        assert_eq!(freshness.fresh_at, Some(t0));
        assert_eq!(freshness.age(12).map(|_| freshness.fresh_at), Some(Some(later)));
    }

    #[test]
    fn an_old_request_processed_late_does_not_refresh_the_replica() {
        let mut freshness = Freshness::default();
        let now = Instant::now();
        freshness.record(now, 5);
        assert!(freshness.age(5).is_some());
        // Signed long ago, arriving now (it sat in a socket buffer while the process was paused).
        let old = now.checked_sub(Duration::from_secs(5)).unwrap();
        freshness.record(old, 7);
        freshness.age(7);
        assert_eq!(freshness.fresh_at, Some(now));
    }

    #[test]
    fn heartbeats_with_the_same_commit_collapse_into_the_latest() {
        let mut freshness = Freshness::default();
        let t0 = Instant::now();
        for i in 0..10_000 {
            freshness.record(t0 + Duration::from_millis(i), 3);
        }
        assert_eq!(freshness.pending.len(), 1);
        freshness.age(3);
        assert_eq!(freshness.fresh_at, Some(t0 + Duration::from_millis(9_999)));
    }
}
