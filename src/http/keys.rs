//! The signing keys seen from outside: the JWK Set every verifier fetches, and the operator's
//! view and immediate rotation (`/v1/admin/keys`). The lifecycle itself is decided in
//! `tessera_actors::keys`; see docs/runbooks/key-rotation.md.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use tessera_actors::audit::Actor;
use tessera_actors::domain::{KeyState, KeyStatus, Millis};
use tessera_actors::keys::{KeySet, RotateKeys, RotateOutcome};
use utoipa::ToSchema;

use crate::error::{ApiError, Problem, Unavailable};
use crate::http::admin::require_admin;
use crate::http::session::no_store;
use crate::http::state::AppState;

/// The public signing keys (RFC 7517): the successor (`next`), the active key and retired keys
/// whose tokens may still be live. Identical on every node that applied the same writes, with a
/// strong `ETag` (a conditional request answers 304).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    params(("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer")),
    responses(
        (status = 200, description = "JWK Set of Ed25519 (OKP) keys", body = Object,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The key set has not changed"),
    ))]
pub async fn jwks(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let keys = state.tokens.published_keys();
    let cache = format!("public, max-age={}", state.jwks_max_age_secs);
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == keys.jwks_etag || tag.trim() == "*"));
    let mut answer = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    answer.insert_header((header::CACHE_CONTROL, cache)).insert_header((header::ETAG, keys.jwks_etag.clone()));
    if unchanged { answer.finish() } else { answer.content_type("application/json").body(keys.jwks.clone()) }
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    #[schema(value_type = String, example = "active")]
    pub state: KeyState,
    /// When it was published (Unix seconds).
    pub published_at: u64,
    pub activated_at: Option<u64>,
    pub retired_at: Option<u64>,
    /// `next`: when it will begin to sign; `active`: when it is due to be replaced;
    /// `retired`: when it will be removed.
    pub next_transition_at: Option<u64>,
}

impl From<KeyStatus> for KeyView {
    fn from(status: KeyStatus) -> KeyView {
        let secs = |at: Option<Millis>| at.map(Millis::as_secs);
        KeyView {
            kid: status.kid,
            state: status.state,
            published_at: status.published_at.as_secs(),
            activated_at: secs(status.activated_at),
            retired_at: secs(status.retired_at),
            next_transition_at: secs(status.next_transition_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// Active first, then the successor, then retired keys, newest first.
    pub keys: Vec<KeyView>,
    pub rotate_every_secs: u64,
    pub prepublish_secs: u64,
    pub retain_retired_secs: u64,
}

/// Every signing key with its state and the moments of its life (administrators).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = KeyList),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let set = KeySet::read(&*state.replica)?;
    let schedule = state.registry.context().signing.schedule;
    let keys = set.records().describe(&schedule).into_iter().map(KeyView::from).collect();
    Ok(no_store(HttpResponse::Ok()).json(KeyList {
        keys,
        rotate_every_secs: schedule.rotate_every.as_secs(),
        prepublish_secs: schedule.prepublish.as_secs(),
        retain_retired_secs: schedule.retain_retired.as_secs(),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Remove the replaced key at once: tokens it signed stop verifying on every node (after a
    /// key leak). Otherwise it is retired and its tokens verify until they expire.
    #[serde(default)]
    pub revoke_current: bool,
    /// The key to replace; default: the key active when this node receives the request. A
    /// request whose key was replaced meanwhile changes nothing and answers with the result.
    #[schema(max_length = 64)]
    pub kid: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Rotation {
    /// Whether this request made the rotation (`false`: the key had been replaced already).
    pub rotated: bool,
    /// The key that signs now.
    pub active: String,
    /// The key this request replaced.
    pub replaced: Option<String>,
    /// Whether the replaced key was removed (rather than retired).
    pub revoked: bool,
}

/// Rotate the signing key now (administrators): its successor (the published `next` key, or a
/// fresh one) signs from this moment on every node.
#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin", security(("admin" = [])),
    request_body = RotateRequest,
    responses(
        (status = 200, body = Rotation),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No leader, or the cluster has no signing key yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RotateRequest>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let RotateRequest { revoke_current, kid } = body.into_inner();
    let target = match kid {
        Some(kid) if kid.is_empty() || kid.len() > 64 => {
            return Err(ApiError::BadRequest("kid must be 1 to 64 characters".into()));
        }
        Some(kid) => kid,
        None => match KeySet::read(&*state.replica)?.active {
            Some((kid, _)) => kid,
            None => return Err(ApiError::unavailable(Unavailable::NoSigningKey)),
        },
    };
    let origin = state.clients.origin(&req, Actor::Admin { id: "admin-token".into() });
    let rotation =
        match state.gateway.call(RotateKeys { target: target.clone(), revoke: revoke_current, origin }).await? {
            RotateOutcome::Rotated { active, replaced, revoked } => {
                Rotation { rotated: true, active, replaced: Some(replaced), revoked }
            }
            RotateOutcome::AlreadyRotated { active } => {
                Rotation { rotated: false, active, replaced: None, revoked: false }
            }
            RotateOutcome::NoActiveKey => return Err(ApiError::unavailable(Unavailable::NoSigningKey)),
        };
    Ok(no_store(HttpResponse::Ok()).json(rotation))
}
