//! The session sequence shared by every handler that checks a password or hands out tokens:
//! a guess evaluated under its permit, the tokens of a session in the body or in cookies, and
//! clearing the cookies of a session that ended.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tessera_actors::audit::Origin;
use tessera_actors::domain::{Email, IpPrefix, UserId, Verified, password};
use tessera_actors::identity_actor::{AbandonLogin, BeginLogin, FailLogin};
use tessera_actors::ports::random;
use tessera_actors::protocol::{LoginStart, LoginSubject, SessionGrant};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::caller::Via;
use crate::http::cookies::Issued;
use crate::http::csrf;
use crate::http::state::AppState;

/// How a session's tokens travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// In the JSON body (API clients, mobile apps).
    #[default]
    Body,
    /// In HttpOnly cookies; the body carries only session metadata and the CSRF token.
    Cookie,
}

impl From<Via> for Transport {
    /// A session's new tokens travel the way the request authenticated.
    fn from(via: Via) -> Transport {
        match via {
            Via::Cookie => Transport::Cookie,
            Via::Bearer => Transport::Body,
        }
    }
}

/// A cookie session's metadata (the tokens are in cookies).
#[derive(Serialize, ToSchema)]
pub struct CookieSession {
    #[schema(example = "cookie")]
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
    pub session_id: String,
    /// Send as `X-CSRF-Token` with every state-changing request (also in a readable cookie).
    pub csrf_token: String,
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

/// Answers that carry tokens or account data are never cached.
pub fn no_store(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
    builder
}

/// Signs an access token for `grant` and answers with the session, in the body or in cookies.
pub fn tokens(
    state: &AppState,
    req: &HttpRequest,
    grant: &SessionGrant,
    transport: Transport,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let access = state.tokens.mint(grant, now, random(&*state.entropy))?;
    let expires_in = state.tokens.ttl().as_secs();
    let refresh_expires_in = grant.refresh_expires.since(now).as_secs();
    match transport {
        Transport::Body => Ok(no_store(HttpResponse::Ok()).json(TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in,
            refresh_token: grant.refresh_token.to_string(),
            refresh_expires_in,
            session_id: grant.family.to_string(),
        })),
        Transport::Cookie => {
            let csrf_token = state.csrf.token(grant.family, now);
            let refresh = grant.refresh_token.to_string();
            let issued = Issued {
                access: &access,
                access_ttl_secs: expires_in,
                refresh: &refresh,
                refresh_ttl_secs: refresh_expires_in,
                csrf: &csrf_token,
            };
            let mut response = no_store(HttpResponse::Ok());
            for cookie in state.cookies.issue(req, &issued) {
                response.cookie(cookie);
            }
            Ok(response.json(CookieSession {
                token_type: "cookie",
                expires_in,
                refresh_expires_in,
                session_id: grant.family.to_string(),
                csrf_token,
            }))
        }
    }
}

/// A cookie-mode login or refresh must come from an allowed origin.
pub fn check_cookie_origin(req: &HttpRequest, state: &AppState, transport: Transport) -> Result<(), ApiError> {
    if transport == Transport::Cookie && !csrf::origin_allowed(req, &state.cors_origins) {
        return Err(ApiError::Forbidden("the request comes from an origin that is not allowed"));
    }
    Ok(())
}

/// Evaluates one password guess under its permit (login, password change). A hashing error
/// means the guess was never evaluated, so the permit goes back uncounted; a wrong password is
/// reported as a failed attempt. On `true` the caller completes the permit.
pub async fn check_guess(
    state: &AppState,
    subject: &LoginSubject,
    permit: u64,
    password: SecretString,
    hash: Option<String>,
    ip: Option<IpPrefix>,
    origin: &Origin,
) -> Result<bool, ApiError> {
    match state.passwords.verify(password, hash).await {
        Ok(true) => Ok(true),
        Ok(false) => {
            state.gateway.call(FailLogin { subject: subject.clone(), permit, ip, origin: origin.clone() }).await?;
            Ok(false)
        }
        Err(e) => {
            let _ = state.gateway.call(AbandonLogin { subject: subject.clone(), permit, origin: origin.clone() }).await;
            Err(e.into())
        }
    }
}

/// Expires every Tessera cookie and asks the browser to drop the origin's cookies.
pub fn clear_cookies(state: &AppState, req: &HttpRequest, response: &mut HttpResponseBuilder) {
    for cookie in state.cookies.cleared(req) {
        response.cookie(cookie);
    }
    response.insert_header(("clear-site-data", "\"cookies\""));
}

/// Checks the signed-in `user`'s own password (a password change, a re-authentication) like a
/// login: under a permit of the account's guard, a wrong one counting as a failed attempt.
/// `Some` when it verified, with the permit to complete.
pub async fn check_own_password(
    state: &AppState,
    user: UserId,
    email: Email,
    password: String,
    ip: Option<IpPrefix>,
    origin: &Origin,
) -> Result<Option<Verified>, ApiError> {
    password::within_bounds(&password).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let begin = BeginLogin { email, ip, origin: origin.clone() };
    let (permit, hash, credential_version) = match state.gateway.call(begin).await? {
        LoginStart::Permit { subject: LoginSubject::Account(owner), permit, password_hash, credential_version }
            if owner == user =>
        {
            (permit, password_hash, credential_version)
        }
        LoginStart::Permit { subject, permit, .. } => {
            // The address no longer belongs to the caller: give the permit back.
            let _ = state.gateway.call(AbandonLogin { subject, permit, origin: origin.clone() }).await;
            return Err(ApiError::InvalidToken("the session has ended"));
        }
        LoginStart::Wait { retry_after_secs } => return Err(ApiError::TooManyAttempts { retry_after_secs }),
    };
    let subject = LoginSubject::Account(user);
    let verified = check_guess(state, &subject, permit, SecretString::from(password), hash, ip, origin).await?;
    Ok(verified.then_some(Verified { permit, credential_version }))
}
