//! Registration, login, refresh, logout, verify and the caller's profile.
//!
//! Handlers parse requests into domain types, run Argon2id on this node's hashing pool, ask
//! the domain through the gateway (which forwards to the leader when needed), and map the
//! answer to HTTP through the error table. No rule lives here.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tessera_actors::Record;
use tessera_actors::domain::{Email, RefreshToken, UserId};
use tessera_actors::ports::random;
use tessera_actors::protocol::{
    LoginOutcome, LoginStart, LogoutOutcome, RefreshOutcome, RegisterOutcome, SessionGrant,
};
use tessera_actors::record::keys;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::client::{ClientInfo, authenticate};
use crate::tokens::AccessClaims;

/// Password length bounds, in Unicode code points.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Checked before counting characters, so a huge body costs nothing.
const MAX_PASSWORD_BYTES: usize = 1024;

/// One answer for every credential failure: unknown email, wrong password, disabled account.
const BAD_CREDENTIALS: &str = "invalid email or password";

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(example = "correct horse battery staple", min_length = 8, max_length = 256)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user_id: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Tokens for a session (login and refresh).
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// EdDSA JWT, `typ: at+jwt`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// `family.generation.mac`; rotates on every refresh.
    pub refresh_token: String,
    /// Seconds until the refresh token expires if it is not used.
    pub refresh_expires_in: u64,
    pub session_id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct LogoutQuery {
    /// `all` ends every session of the user; default: only this one.
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// Validated credentials.
struct Parsed {
    email: Email,
    password: SecretString,
}

fn password(raw: String) -> Result<SecretString, ApiError> {
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!("password must be at most {MAX_PASSWORD_CHARS} characters")));
    }
    let chars = raw.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(ApiError::BadRequest(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(SecretString::from(raw))
}

impl TryFrom<Credentials> for Parsed {
    type Error = ApiError;

    fn try_from(body: Credentials) -> Result<Parsed, ApiError> {
        let email = Email::parse(&body.email).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(Parsed { email, password: password(body.password)? })
    }
}

fn no_store(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
    builder
}

fn count(name: &'static str, outcome: &'static str) {
    metrics::counter!(name, "outcome" => outcome).increment(1);
}

/// Signs an access token for `grant` and renders the token response.
fn tokens(state: &AppState, grant: &SessionGrant) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let access = state.tokens.mint(grant, now, random(&*state.entropy))?;
    Ok(no_store(HttpResponse::Ok()).json(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.tokens.ttl().as_secs(),
        refresh_token: grant.refresh_token.to_string(),
        refresh_expires_in: grant.refresh_expires.since(now).as_secs(),
        session_id: grant.family.to_string(),
    }))
}

/// Register a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Invalid email or password length", body = crate::http::openapi::Problem),
        (status = 409, description = "Email already registered", body = crate::http::openapi::Problem),
        (status = 503, description = "No leader or hashing saturated; retry after `Retry-After`", body = crate::http::openapi::Problem),
    ))]
pub async fn register(state: web::Data<AppState>, body: web::Json<Credentials>) -> Result<HttpResponse, ApiError> {
    let Parsed { email, password } = body.into_inner().try_into()?;
    let hash = state.passwords.hash(password).await?;
    let user = UserId::from_random(random(&*state.entropy));
    match state.gateway.register(user, email, hash).await? {
        RegisterOutcome::Registered => {
            count("tessera_register_total", "created");
            Ok(no_store(HttpResponse::Created()).json(Registered { user_id: user.to_string() }))
        }
        RegisterOutcome::EmailTaken => {
            count("tessera_register_total", "taken");
            Err(ApiError::EmailTaken)
        }
    }
}

/// Log in with email and password.
#[utoipa::path(post, path = "/v1/login", tag = "sessions", request_body = Credentials,
    responses(
        (status = 200, description = "A new session", body = TokenResponse),
        (status = 400, description = "Malformed request", body = crate::http::openapi::Problem),
        (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = crate::http::openapi::Problem),
        (status = 503, description = "Retry after `Retry-After`", body = crate::http::openapi::Problem),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Parsed { email, password } = body.into_inner().try_into()?;
    let client = ClientInfo::of(&req);
    let start = state.gateway.begin_login(email).await?;
    let (account, hash) = match start {
        LoginStart::Proceed { user, password_hash, credential_version } => {
            (Some((user, credential_version)), Some(password_hash))
        }
        LoginStart::Unknown => (None, None),
    };
    let matched = state.passwords.verify(password, hash).await?;
    let Some((user, credential_version)) = account.filter(|_| matched) else {
        count("tessera_login_total", "failure");
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    };
    match state.gateway.complete_login(user, credential_version, client.device, client.ip).await? {
        LoginOutcome::Opened(grant) => {
            count("tessera_login_total", "success");
            tracing::info!(user = %grant.user, session = %grant.family, "login");
            tokens(&state, &grant)
        }
        LoginOutcome::Rejected => {
            count("tessera_login_total", "rejected");
            Err(ApiError::InvalidGrant(BAD_CREDENTIALS))
        }
    }
}

/// Rotate a refresh token.
#[utoipa::path(post, path = "/v1/token/refresh", tag = "sessions", request_body = RefreshRequest,
    responses(
        (status = 200, description = "The successor tokens (a retry of the previous token within the grace window gets the same successor)", body = TokenResponse),
        (status = 401, description = "Invalid, expired, revoked or replayed (a replay revokes the whole session)", body = crate::http::openapi::Problem),
        (status = 503, description = "Retry after `Retry-After`", body = crate::http::openapi::Problem),
    ))]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let Some(token) = RefreshToken::parse(&body.refresh_token) else {
        count("tessera_refresh_total", "invalid");
        return Err(ApiError::InvalidGrant("the refresh token is invalid"));
    };
    let client = ClientInfo::of(&req);
    match state.gateway.refresh(token, client.device).await? {
        RefreshOutcome::Rotated(grant) => {
            count("tessera_refresh_total", "rotated");
            tokens(&state, &grant)
        }
        RefreshOutcome::Grace(grant) => {
            count("tessera_refresh_total", "grace");
            tokens(&state, &grant)
        }
        RefreshOutcome::Replayed => {
            count("tessera_refresh_total", "replay");
            Err(ApiError::InvalidGrant("the refresh token was already used; the session is revoked"))
        }
        RefreshOutcome::Expired => {
            count("tessera_refresh_total", "expired");
            Err(ApiError::InvalidGrant("the session has expired"))
        }
        RefreshOutcome::Revoked => {
            count("tessera_refresh_total", "revoked");
            Err(ApiError::InvalidGrant("the session has ended"))
        }
        RefreshOutcome::Invalid => {
            count("tessera_refresh_total", "invalid");
            Err(ApiError::InvalidGrant("the refresh token is invalid"))
        }
    }
}

/// End this session, or every session of the user with `?scope=all`.
#[utoipa::path(post, path = "/v1/logout", tag = "sessions", params(LogoutQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "Unknown scope", body = crate::http::openapi::Problem),
        (status = 401, description = "Invalid access token", body = crate::http::openapi::Problem),
        (status = 503, description = "Retry after `Retry-After`", body = crate::http::openapi::Problem),
    ))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<LogoutQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = match query.scope.as_deref() {
        None | Some("current") => "current",
        Some("all") => "all",
        Some(_) => return Err(ApiError::BadRequest("scope must be `current` or `all`".into())),
    };
    let caller = authenticate(&req, &state, state.clock.now())?;
    if scope == "all" {
        state.gateway.logout_all(caller.user).await?;
    } else {
        match state.gateway.logout(caller.user, caller.family).await? {
            LogoutOutcome::LoggedOut | LogoutOutcome::AlreadyLoggedOut => {}
            LogoutOutcome::NotFound => return Err(ApiError::InvalidToken("the session has ended")),
        }
    }
    count("tessera_logout_total", scope);
    tracing::info!(user = %caller.user, session = %caller.family, scope, "logout");
    Ok(no_store(HttpResponse::NoContent()).finish())
}

/// Check an access token: signature, claims, and that its session is live.
#[utoipa::path(get, path = "/v1/verify", tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's claims", body = AccessClaims),
        (status = 401, description = "Invalid, expired or revoked", body = crate::http::openapi::Problem),
    ))]
pub async fn verify(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match authenticate(&req, &state, state.clock.now()) {
        Ok(caller) => {
            count("tessera_verify_total", "valid");
            Ok(no_store(HttpResponse::Ok()).json(&*caller.claims))
        }
        Err(e) => {
            count("tessera_verify_total", "invalid");
            Err(e)
        }
    }
}

/// Check an access token; answers with headers only (for reverse-proxy auth).
#[utoipa::path(head, path = "/v1/verify", tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 204, description = "Valid", headers(
            ("X-Tessera-User" = String, description = "User id"),
            ("X-Tessera-Session" = String, description = "Session id"))),
        (status = 401, description = "Invalid, expired or revoked"),
    ))]
pub async fn verify_head(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match authenticate(&req, &state, state.clock.now()) {
        Ok(caller) => {
            count("tessera_verify_total", "valid");
            Ok(no_store(HttpResponse::NoContent())
                .insert_header(("x-tessera-user", caller.user.to_string()))
                .insert_header(("x-tessera-session", caller.family.to_string()))
                .finish())
        }
        Err(e) => {
            count("tessera_verify_total", "invalid");
            Err(e)
        }
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, description = "Invalid access token", body = crate::http::openapi::Problem),
    ))]
pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state, state.clock.now())?;
    match state.node.get(&keys::user(caller.user)).map_err(ApiError::internal)?.map(|v| v.value) {
        Some(Record::Identity(identity)) => Ok(no_store(HttpResponse::Ok()).json(Me {
            user_id: identity.user.to_string(),
            email: identity.email.to_string(),
            created_at: identity.created_at.as_secs(),
        })),
        _ => Err(ApiError::InvalidToken("the session has ended")),
    }
}

/// The public signing keys (RFC 7517). Identical on every node.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "JWK Set of Ed25519 (OKP) keys", body = Object)))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let keys = state.tokens.keyring().current();
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=60")).json(&keys.jwks)
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
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["password", "refresh_token"],
        "claims_supported": ["iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti", "auth_time", "amr"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_length_is_counted_in_code_points() {
        assert!(password("1234567".into()).is_err());
        assert!(password("12345678".into()).is_ok());
        assert!(password("é".repeat(8)).is_ok(), "8 two-byte characters");
        assert!(password("🦀".repeat(256)).is_ok(), "256 four-byte characters");
        assert!(password("a".repeat(257)).is_err());
        assert!(password("a".repeat(1_000_000)).is_err());
    }
}
