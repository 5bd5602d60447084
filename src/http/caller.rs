//! Who is calling: the access token of a request (cookie first, then bearer), verified and
//! checked against the local replica, and the CSRF rules for cookie-authenticated writes.

use std::sync::Arc;

use actix_web::HttpRequest;
use tessera_actors::domain::{Email, FamilyId, Millis, UserId};
use tessera_actors::queries::{self, SessionAccess, session_access};

use crate::error::{ApiError, Unavailable};
use crate::http::client::bearer;
use crate::http::csrf;
use crate::http::state::AppState;
use crate::metrics::count;
use crate::tokens::Verified;

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// A request whose access token verified and whose session is live.
pub struct Authenticated {
    pub token: Arc<Verified>,
    pub user: UserId,
    pub family: FamilyId,
    pub via: Via,
}

/// Authenticates from the access cookie first, then from `Authorization: Bearer`: the token
/// verifies, and the local replica says its session is live ([`session_access`]).
///
/// A token that verifies but names a session or generation this replica has not applied yet
/// was issued by the leader after a commit this follower has not caught up with (a client that
/// logs in or refreshes through one node and calls another a millisecond later). Then the
/// replica catches up with a read-index round trip and the check runs once more, so a fresh
/// token is never refused for replication lag.
pub async fn authenticate(req: &HttpRequest, state: &AppState, now: Millis) -> Result<Authenticated, ApiError> {
    fresh_enough(state)?;
    let (token, via) = match state.cookies.access_token(req) {
        Some(token) => (token, Via::Cookie),
        None => match bearer(req) {
            Some(token) => (token.to_string(), Via::Bearer),
            None => return Err(ApiError::InvalidToken("an access token is required (cookie or bearer)")),
        },
    };
    let token = state.tokens.verify(&token, now)?;
    let (user, family) = (token.user, token.family);
    let device = match via {
        Via::Cookie => Some(state.clients.device(req)),
        Via::Bearer => None,
    };
    let generation = token.claims.generation();
    let access = || session_access(&*state.replica, user, family, generation, device, state.clients.binding, now);
    let mut verdict = access()?;
    if verdict == SessionAccess::Behind {
        count!("tessera_verify_catch_up_total");
        state.replica.catch_up().await.map_err(|e| ApiError::unavailable_because(Unavailable::CatchUp, e))?;
        verdict = access()?;
    }
    match verdict {
        SessionAccess::Live { other_device } => {
            if other_device {
                count!("tessera_device_mismatch_total", "action" => "logged");
                tracing::warn!(%user, session = %family, "cookie request from another device (binding: log)");
            }
            Ok(Authenticated { token, user, family, via })
        }
        SessionAccess::ForeignDevice => {
            count!("tessera_device_mismatch_total", "action" => "rejected");
            tracing::warn!(%user, session = %family, "cookie request from another device refused");
            Err(ApiError::InvalidToken("the session is bound to another device"))
        }
        SessionAccess::Ended | SessionAccess::Behind => Err(ApiError::InvalidToken("the session has ended")),
    }
}

/// [`authenticate`] for a request that changes something: a cookie-authenticated one must
/// also pass [`require_csrf`].
pub async fn authenticate_change(req: &HttpRequest, state: &AppState, now: Millis) -> Result<Authenticated, ApiError> {
    let caller = authenticate(req, state, now).await?;
    require_csrf(req, state, caller.family, caller.via, now)?;
    Ok(caller)
}

/// The signed-in user's email address (the session has ended if the account is gone).
pub fn own_email(state: &AppState, user: UserId) -> Result<Email, ApiError> {
    match queries::identity(&*state.replica, user)? {
        Some(identity) => Ok(identity.email),
        None => Err(ApiError::InvalidToken("the session has ended")),
    }
}

/// Fails closed on a node that has not heard from a leader (the leader: from a quorum) within
/// `max_staleness`: its replica may be frozen, and a revoked session must not read as live.
pub fn fresh_enough(state: &AppState) -> Result<(), ApiError> {
    match state.node.staleness() {
        Some(age) if age <= state.max_staleness => Ok(()),
        _ => {
            count!("tessera_stale_reads_refused_total");
            Err(ApiError::unavailable(Unavailable::Stale))
        }
    }
}

/// A state-changing request authenticated by cookie must come from an allowed origin and
/// carry the session's CSRF token. Bearer-authenticated requests pass.
pub fn require_csrf(
    req: &HttpRequest,
    state: &AppState,
    family: FamilyId,
    via: Via,
    now: Millis,
) -> Result<(), ApiError> {
    if via == Via::Bearer {
        return Ok(());
    }
    if !csrf::origin_allowed(req, &state.cors_origins) {
        count!("tessera_csrf_rejected_total", "reason" => "origin");
        return Err(ApiError::Forbidden("the request comes from an origin that is not allowed"));
    }
    let presented = req.headers().get(csrf::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if presented.is_empty() || !state.csrf.verify(family, presented, now) {
        count!("tessera_csrf_rejected_total", "reason" => "token");
        return Err(ApiError::Forbidden("a valid X-CSRF-Token header is required"));
    }
    Ok(())
}
