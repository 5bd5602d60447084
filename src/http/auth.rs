//! Registration, login, refresh, logout, verify and the caller's profile.
//!
//! Handlers parse requests into domain types, run Argon2id on this node's hashing pool, ask
//! the domain through the gateway (which forwards to the leader when needed), and map the
//! answer to HTTP through the error table. No rule lives here.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tessera_actors::address_actor::Register;
use tessera_actors::audit::Actor;
use tessera_actors::client_actor::AdmitRegistration;
use tessera_actors::domain::StepUpLevel;
use tessera_actors::domain::{Email, RefreshToken, UserId, Verified, password};
use tessera_actors::family_actor::{Logout, LogoutAll, LogoutOthers, Refresh};
use tessera_actors::identity_actor::{BeginLogin, CompleteLogin, Unlock};
use tessera_actors::ports::random;
use tessera_actors::protocol::{
    Admission, LoginOutcome, LoginStart, LogoutOutcome, RefreshOutcome, RegisterOutcome, UnlockOutcome,
};
use tessera_actors::queries;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem, Unavailable};
use crate::http::admin::require_admin;
use crate::http::caller::{Via, authenticate, authenticate_change, require_csrf};
use crate::http::mfa::require_step_up;
use crate::http::session::{
    CookieSession, TokenResponse, Transport, check_cookie_origin, check_guess, clear_cookies, no_store, tokens,
};
use crate::http::state::AppState;
use crate::metrics::count;
use crate::tokens::AccessClaims;

/// One answer for every credential failure: unknown email, wrong password, disabled account.
const BAD_CREDENTIALS: &str = "invalid email or password";

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(example = "correct horse battery staple", min_length = 8, max_length = 256)]
    pub password: String,
    /// Login only: `cookie` answers with HttpOnly cookies and no token in the body.
    #[serde(default)]
    pub transport: Transport,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user_id: String,
}

/// The body of a refresh. Both fields are optional: without `refresh_token` the refresh
/// cookie is used (and the answer comes in cookies).
#[derive(Default, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub transport: Transport,
}

#[derive(Deserialize, IntoParams)]
pub struct LogoutQuery {
    /// `current` (default), `others` or `all`.
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    /// Unix seconds.
    pub created_at: u64,
}

fn email(raw: &str) -> Result<Email, ApiError> {
    Email::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A password within the size bounds (checked before anything is hashed).
fn bounded(raw: String) -> Result<SecretString, ApiError> {
    password::within_bounds(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(SecretString::from(raw))
}

/// Register a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Invalid email, or a password that is too short, too long or too easy to guess (the detail says which)", body = Problem),
        (status = 409, description = "Email already registered", body = Problem),
        (status = 429, description = "Too many registrations from this network; see `Retry-After`", body = Problem),
        (status = 503, description = "No leader or hashing saturated; retry after `Retry-After`", body = Problem),
    ))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email: raw_email, password: raw_password, .. } = body.into_inner();
    let email = email(&raw_email)?;
    password::within_bounds(&raw_password).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let client = state.clients.client(&req);
    if let Admission::Throttled { retry_after_secs } = state.gateway.call(AdmitRegistration { ip: client.ip }).await? {
        count!("tessera_register_total", "outcome" => "throttled");
        return Err(ApiError::TooManyAttempts { retry_after_secs });
    }
    state.password_policy.check(&raw_password, &email).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let hash = state.passwords.hash(SecretString::from(raw_password)).await?;
    let user = UserId::from_random(random(&*state.entropy));
    match state
        .gateway
        .call(Register { user, email, password_hash: hash, origin: state.clients.origin(&req, Actor::Subject) })
        .await?
    {
        RegisterOutcome::Registered => {
            count!("tessera_register_total", "outcome" => "created");
            Ok(no_store(HttpResponse::Created()).json(Registered { user_id: user.to_string() }))
        }
        RegisterOutcome::EmailTaken => {
            count!("tessera_register_total", "outcome" => "taken");
            Err(ApiError::EmailTaken)
        }
    }
}

/// Log in with email and password.
///
/// No password is checked without a permit from the account's guard: after a failure the next
/// attempt must wait 1, 2, 4, 8, then 16 s; 10 consecutive failures lock the account for an
/// hour. Unknown addresses get the same answers, delays and timing.
#[utoipa::path(post, path = "/v1/login", tag = "sessions", request_body = Credentials,
    responses(
        (status = 200, description = "A new session (tokens in the body, or in cookies for `\"transport\": \"cookie\"`); or, for an account with a second factor, `mfa_required` with the `mfa_token` for `/v1/login/mfa` (no session, no cookies yet)", body = LoginAnswer),
        (status = 400, description = "Malformed request", body = Problem),
        (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = Problem),
        (status = 409, description = "Session limit reached and the policy is to refuse", body = Problem),
        (status = 429, description = "Too soon after a failure, locked, or the client network is throttled; see `Retry-After`", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email: raw_email, password: raw_password, transport } = body.into_inner();
    check_cookie_origin(&req, &state, transport)?;
    let email = email(&raw_email)?;
    let password = bounded(raw_password)?;
    let client = state.clients.client(&req);
    let origin = state.clients.origin(&req, Actor::Subject);
    let (subject, permit, hash, credential_version) =
        match state.gateway.call(BeginLogin { email, ip: client.ip, origin: origin.clone() }).await? {
            LoginStart::Permit { subject, permit, password_hash, credential_version } => {
                (subject, permit, password_hash, credential_version)
            }
            LoginStart::Wait { retry_after_secs } => {
                count!("tessera_login_total", "outcome" => "throttled");
                return Err(ApiError::TooManyAttempts { retry_after_secs });
            }
        };
    if !check_guess(&state, &subject, permit, password, hash, client.ip, &origin).await? {
        count!("tessera_login_total", "outcome" => "failure");
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    }
    let verified = Verified { permit, credential_version };
    match state.gateway.call(CompleteLogin { subject, verified, client, origin }).await? {
        LoginOutcome::Opened(grant) => {
            count!("tessera_login_total", "outcome" => "success");
            tokens(&state, &req, &grant, transport)
        }
        LoginOutcome::Rejected => {
            count!("tessera_login_total", "outcome" => "rejected");
            Err(ApiError::InvalidGrant(BAD_CREDENTIALS))
        }
        LoginOutcome::CapReached => {
            count!("tessera_login_total", "outcome" => "cap_reached");
            Err(ApiError::SessionLimit)
        }
        LoginOutcome::MfaRequired { token, expires_in_secs } => {
            count!("tessera_login_total", "outcome" => "mfa_required");
            Ok(no_store(HttpResponse::Ok()).json(MfaRequired {
                mfa_required: true,
                mfa_token: token,
                factors: vec!["totp", "recovery_code"],
                expires_in: expires_in_secs,
            }))
        }
    }
}

/// What a login answers (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: handlers build each variant's body directly
pub enum LoginAnswer {
    Tokens(TokenResponse),
    Cookies(CookieSession),
    MfaRequired(MfaRequired),
}

/// A login whose password was right, for an account with a second factor: no session yet.
#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    /// Send with a code to `/v1/login/mfa`.
    pub mfa_token: String,
    pub factors: Vec<&'static str>,
    pub expires_in: u64,
}

/// Rotate a refresh token.
///
/// The token comes from the body, or — when the body has none — from the refresh cookie; a
/// cookie refresh must also carry the session's `X-CSRF-Token` and come from an allowed
/// origin, and answers with new cookies.
#[utoipa::path(post, path = "/v1/token/refresh", tag = "sessions", request_body(content = RefreshRequest, description = "Optional with a refresh cookie"),
    responses(
        (status = 200, description = "The successor tokens (a retry of the previous token within the grace window gets the same successor)", body = TokenResponse),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "Invalid, expired, revoked or replayed (a replay revokes the whole session), or from another device", body = Problem),
        (status = 403, description = "Cookie refresh without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: RefreshRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let (raw, transport, from_cookie) = match request.refresh_token {
        Some(token) => (token, request.transport, false),
        None => match state.cookies.refresh_token(&req) {
            Some(token) => (token, Transport::Cookie, true),
            None => return Err(ApiError::InvalidGrant("a refresh token is required (body or cookie)")),
        },
    };
    let Some(token) = RefreshToken::parse(&raw) else {
        count!("tessera_refresh_total", "outcome" => "invalid");
        return Err(ApiError::InvalidGrant("the refresh token is invalid"));
    };
    check_cookie_origin(&req, &state, transport)?;
    if from_cookie {
        require_csrf(&req, &state, token.family, Via::Cookie, state.clock.now())?;
    }
    match state
        .gateway
        .call(Refresh { token, device: state.clients.device(&req), origin: state.clients.origin(&req, Actor::Subject) })
        .await?
    {
        RefreshOutcome::Rotated(grant) => {
            count!("tessera_refresh_total", "outcome" => "rotated");
            tokens(&state, &req, &grant, transport)
        }
        RefreshOutcome::Grace(grant) => {
            count!("tessera_refresh_total", "outcome" => "grace");
            tokens(&state, &req, &grant, transport)
        }
        RefreshOutcome::Replayed => {
            count!("tessera_refresh_total", "outcome" => "replay");
            Err(ApiError::InvalidGrant("the refresh token was already used; the session is revoked"))
        }
        RefreshOutcome::Expired => {
            count!("tessera_refresh_total", "outcome" => "expired");
            Err(ApiError::InvalidGrant("the session has expired"))
        }
        RefreshOutcome::Revoked => {
            count!("tessera_refresh_total", "outcome" => "revoked");
            Err(ApiError::InvalidGrant("the session has ended"))
        }
        RefreshOutcome::Invalid => {
            count!("tessera_refresh_total", "outcome" => "invalid");
            Err(ApiError::InvalidGrant("the refresh token is invalid"))
        }
        RefreshOutcome::ForeignDevice => {
            count!("tessera_refresh_total", "outcome" => "foreign_device");
            count!("tessera_device_mismatch_total", "action" => "rejected");
            Err(ApiError::InvalidGrant("the session is bound to another device"))
        }
    }
}

/// End this session; `?scope=others` ends every other session of the user, `?scope=all`
/// every session. A cookie session's cookies are cleared (`Clear-Site-Data: "cookies"`).
#[utoipa::path(post, path = "/v1/logout", tag = "sessions", params(LogoutQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "Unknown scope", body = Problem),
        (status = 401, description = "Invalid access token; for `others`, also `insufficient_user_authentication` (re-authenticate first, RFC 9470)", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<LogoutQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = match query.scope.as_deref() {
        None | Some("current") => "current",
        Some("all") => "all",
        Some("others") => "others",
        Some(_) => return Err(ApiError::BadRequest("scope must be `current`, `others` or `all`".into())),
    };
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    let origin = state.clients.origin(&req, Actor::Subject);
    match scope {
        "all" => {
            state.gateway.call(LogoutAll { user: caller.user, origin }).await?;
        }
        "others" => {
            require_step_up(&state, &caller, StepUpLevel::AsEnrolled, now)?;
            state.gateway.call(LogoutOthers { user: caller.user, keep: caller.family, origin }).await?;
        }
        _ => match state.gateway.call(Logout { user: caller.user, family: caller.family, origin }).await? {
            LogoutOutcome::LoggedOut | LogoutOutcome::AlreadyLoggedOut => {}
            LogoutOutcome::NotFound => return Err(ApiError::InvalidToken("the session has ended")),
        },
    }
    metrics::counter!("tessera_logout_total", "outcome" => scope).increment(1);
    let mut response = no_store(HttpResponse::NoContent());
    if caller.via == Via::Cookie && scope != "others" {
        clear_cookies(&state, &req, &mut response);
    }
    Ok(response.finish())
}

#[derive(Deserialize, IntoParams)]
pub struct VerifyQuery {
    /// `strong` waits for a read-index round trip with the leader first, so a revocation
    /// acknowledged anywhere in the cluster is seen; default: this node's replica (which fails
    /// closed when out of touch with the leader).
    pub consistency: Option<String>,
}

/// A strong read: this node's replica catches up with everything committed before the call.
async fn strong_read(state: &AppState, query: &VerifyQuery) -> Result<(), ApiError> {
    match query.consistency.as_deref() {
        None | Some("local") => Ok(()),
        Some("strong") => {
            state.replica.catch_up().await.map_err(|e| ApiError::unavailable_because(Unavailable::CatchUp, e))
        }
        Some(_) => Err(ApiError::BadRequest("consistency must be `local` or `strong`".into())),
    }
}

/// Check an access token: signature, claims, and that its session is live.
#[utoipa::path(get, path = "/v1/verify", tag = "tokens", params(VerifyQuery), security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The token's claims", body = AccessClaims),
        (status = 401, description = "Invalid, expired or revoked", body = Problem),
        (status = 503, description = "This node is out of touch with the leader (fails closed); retry after `Retry-After`", body = Problem),
    ))]
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    strong_read(&state, &query).await?;
    match authenticate(&req, &state, state.clock.now()).await {
        Ok(caller) => {
            count!("tessera_verify_total", "outcome" => "valid");
            Ok(no_store(HttpResponse::Ok()).json(&caller.token.claims))
        }
        Err(e) => {
            count!("tessera_verify_total", "outcome" => "invalid");
            Err(e)
        }
    }
}

/// Check an access token; answers with headers only (for reverse-proxy auth).
#[utoipa::path(head, path = "/v1/verify", tag = "tokens", params(VerifyQuery), security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Valid", headers(
            ("X-Tessera-User" = String, description = "User id"),
            ("X-Tessera-Session" = String, description = "Session id"))),
        (status = 401, description = "Invalid, expired or revoked"),
        (status = 503, description = "This node is out of touch with the leader (fails closed)"),
    ))]
pub async fn verify_head(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    strong_read(&state, &query).await?;
    match authenticate(&req, &state, state.clock.now()).await {
        Ok(caller) => {
            count!("tessera_verify_total", "outcome" => "valid");
            Ok(no_store(HttpResponse::NoContent())
                .insert_header(("x-tessera-user", caller.user.to_string()))
                .insert_header(("x-tessera-session", caller.family.to_string()))
                .finish())
        }
        Err(e) => {
            count!("tessera_verify_total", "outcome" => "invalid");
            Err(e)
        }
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, description = "Invalid access token", body = Problem),
    ))]
pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state, state.clock.now()).await?;
    match queries::identity(&*state.replica, caller.user)? {
        Some(identity) => Ok(no_store(HttpResponse::Ok()).json(Me {
            user_id: identity.user.to_string(),
            email: identity.email.to_string(),
            created_at: identity.created_at.as_secs(),
        })),
        None => Err(ApiError::InvalidToken("the session has ended")),
    }
}

/// OpenID-style discovery (the subset that applies).
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "tokens",
    responses((status = 200, description = "Discovery document", body = Object)))]
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.tokens.issuer();
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/v1/login"),
        "refresh_endpoint": format!("{issuer}/v1/token/refresh"),
        "end_session_endpoint": format!("{issuer}/v1/logout"),
        "userinfo_endpoint": format!("{issuer}/v1/me"),
        "registration_endpoint": format!("{issuer}/v1/users"),
        "verify_endpoint": format!("{issuer}/v1/verify"),
        "introspection_endpoint": format!("{issuer}/v1/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint": format!("{issuer}/v1/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["password", "refresh_token"],
        "claims_supported": ["iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti", "auth_time", "amr", "acr"],
        "acr_values_supported": ["aal1", "aal2"],
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Unlocked {
    /// Whether the account was locked (or throttled by failures) before.
    pub was_locked: bool,
}

/// Clear an account's failed attempts and lock (administrators).
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/unlock", tag = "admin",
    params(("user_id" = String, Path, description = "The user's id")),
    security(("admin" = [])),
    responses(
        (status = 200, body = Unlocked),
        (status = 401, description = "Missing or wrong admin token", body = Problem),
        (status = 404, description = "No such user", body = Problem),
    ))]
pub async fn unlock(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let user = UserId::parse(&path).ok_or_else(|| ApiError::BadRequest("not a user id".into()))?;
    match state
        .gateway
        .call(Unlock { user, origin: state.clients.origin(&req, Actor::Admin { id: "admin-token".into() }) })
        .await?
    {
        UnlockOutcome::Unlocked => Ok(no_store(HttpResponse::Ok()).json(Unlocked { was_locked: true })),
        UnlockOutcome::WasNotLocked => Ok(no_store(HttpResponse::Ok()).json(Unlocked { was_locked: false })),
        UnlockOutcome::NoSuchUser => Err(ApiError::NotFound),
    }
}
