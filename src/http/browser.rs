//! Session management for signed-in users: the CSRF token, listing and revoking one's own
//! sessions, and changing one's password.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tessera_actors::audit::Actor;
use tessera_actors::domain::FamilyId;
use tessera_actors::domain::StepUpLevel;
use tessera_actors::family_actor::Logout;
use tessera_actors::identity_actor::ChangePassword;
use tessera_actors::protocol::{LogoutOutcome, PasswordOutcome};
use tessera_actors::queries::live_families;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::http::caller::{Via, authenticate, authenticate_change, own_email};
use crate::http::mfa::require_step_up;
use crate::http::session::{TokenResponse, check_own_password, clear_cookies, tokens};
use crate::http::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct CsrfToken {
    /// Send as `X-CSRF-Token` with state-changing cookie requests.
    pub csrf_token: String,
}

/// The caller's CSRF token (also set as a readable cookie).
#[utoipa::path(get, path = "/v1/csrf", tag = "sessions", security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, body = CsrfToken),
        (status = 401, description = "Not signed in", body = Problem),
    ))]
pub async fn csrf_token(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate(&req, &state, now).await?;
    let token = state.csrf.token(caller.family, now);
    let mut response = HttpResponse::Ok();
    if caller.via == Via::Cookie {
        response.cookie(state.cookies.csrf_cookie(&req, &token, state.tokens.ttl().as_secs().max(86_400)));
    }
    Ok(response.json(CsrfToken { csrf_token: token }))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last refresh.
    pub last_seen_at: u64,
    /// The start of the login device's User-Agent.
    pub device: String,
    /// The client network at login (IPv4 /24 or IPv6 /64).
    pub ip_prefix: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// The caller's live sessions, oldest first (from this node's replica).
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, body = [SessionView]),
        (status = 401, description = "Not signed in", body = Problem),
    ))]
pub async fn list_sessions(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate(&req, &state, now).await?;
    let (live, _) = live_families(&*state.replica, caller.user, now)?;
    let sessions: Vec<SessionView> = live
        .into_iter()
        .map(|f| SessionView {
            id: f.id.to_string(),
            created_at: f.family.created_at.as_secs(),
            last_seen_at: f.family.last_seen.as_secs(),
            device: f.family.device_label.clone(),
            ip_prefix: f.family.ip_prefix.map(|p| p.to_string()),
            current: f.id == caller.family,
        })
        .collect();
    Ok(HttpResponse::Ok().json(sessions))
}

/// End one of the caller's sessions (another user's session id is a 404).
#[utoipa::path(delete, path = "/v1/sessions/{session_id}", tag = "sessions", security(("cookie" = []), ("bearer" = [])),
    params(("session_id" = String, Path, description = "A session id from `GET /v1/sessions`")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 404, description = "No such session of the caller", body = Problem),
    ))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    let target = FamilyId::parse(&path).ok_or(ApiError::NotFound)?;
    match state
        .gateway
        .call(Logout { user: caller.user, family: target, origin: state.clients.origin(&req, Actor::Subject) })
        .await?
    {
        LogoutOutcome::LoggedOut | LogoutOutcome::AlreadyLoggedOut => {}
        LogoutOutcome::NotFound => return Err(ApiError::NotFound),
    }
    let mut response = HttpResponse::NoContent();
    if target == caller.family && caller.via == Via::Cookie {
        clear_cookies(&state, &req, &mut response);
    }
    Ok(response.finish())
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChangeRequest {
    pub current_password: String,
    pub new_password: String,
    /// End every other session (default `true`).
    pub revoke_other_sessions: Option<bool>,
}

/// Change the caller's password.
///
/// The current password is checked like a login (it needs a permit and a wrong one counts as
/// a failed attempt). On success the credential version changes, every other session is ended
/// unless `revoke_other_sessions` is `false`, and the caller's own session moves to a new
/// generation: the answer carries its new tokens (in cookies for a cookie session).
#[utoipa::path(post, path = "/v1/password", tag = "users", request_body = PasswordChangeRequest,
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Changed; the session's new tokens", body = TokenResponse),
        (status = 400, description = "The new password breaks the policy (the detail says why)", body = Problem),
        (status = 401, description = "Wrong current password, not signed in, or `insufficient_user_authentication`: the session must re-authenticate first (RFC 9470; see `WWW-Authenticate`)", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 429, description = "Too many wrong passwords; see `Retry-After`", body = Problem),
    ))]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PasswordChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    require_step_up(&state, &caller, StepUpLevel::AsEnrolled, now)?;
    let PasswordChangeRequest { current_password, new_password, revoke_other_sessions } = body.into_inner();
    let email = own_email(&state, caller.user)?;
    state.password_policy.check(&new_password, &email).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let client = state.clients.client(&req);
    let origin = state.clients.origin(&req, Actor::Subject);
    let Some(verified) = check_own_password(&state, caller.user, email, current_password, client.ip, &origin).await?
    else {
        return Err(ApiError::InvalidGrant("the current password is wrong"));
    };
    let new_hash = state.passwords.hash(SecretString::from(new_password)).await?;
    let change = ChangePassword {
        user: caller.user,
        verified,
        new_hash,
        current: caller.family,
        device: client.device,
        revoke_others: revoke_other_sessions.unwrap_or(true),
        origin,
    };
    match state.gateway.call(change).await? {
        PasswordOutcome::Changed(grant) => tokens(&state, &req, &grant, caller.via.into()),
        PasswordOutcome::Rejected => Err(ApiError::InvalidGrant("the current password is wrong")),
        PasswordOutcome::SessionEnded => Err(ApiError::InvalidToken("the session has ended")),
    }
}
