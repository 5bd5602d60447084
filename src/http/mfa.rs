//! Second factors and step-up: TOTP enrolment (with its QR code) and recovery codes, the
//! second half of a login, re-authentication, and the freshness check sensitive operations
//! make (RFC 9470).
//!
//! The edge draws what must never cross the network in the clear (the TOTP secret, sealed
//! here; the recovery codes, digested here) and the identity actor on the leader decides.

use actix_web::{HttpRequest, HttpResponse, web};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use tessera_actors::audit::Actor;
use tessera_actors::domain::mfa::{DIGITS, ENROLMENT_TTL, RECOVERY_CODES, STEP_SECS};
use tessera_actors::domain::{Insufficient, Millis, Proof, Reproof, StepUpLevel, UserId};
use tessera_actors::factor_keys::{parse_challenge_token, recovery_code};
use tessera_actors::identity_mfa::{
    ConfirmTotp, DisableTotp, PassSecondFactor, Reauthenticate, RegenerateRecoveryCodes, StartTotp,
};
use tessera_actors::ports::random;
use tessera_actors::protocol::{ConfirmOutcome, EnrolOutcome, MfaChange, ReauthOutcome, SecondFactorOutcome};
use tessera_actors::queries;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::http::caller::{Authenticated, authenticate, authenticate_change, own_email};
use crate::http::session::{TokenResponse, Transport, check_cookie_origin, check_own_password, no_store, tokens};
use crate::http::state::AppState;
use crate::metrics::count;

/// Longest code or recovery code accepted as input (a recovery code with separators is 23).
const MAX_CODE_LEN: usize = 32;
/// Longest `mfa_token` (`{user}.{43 characters}`).
const MAX_MFA_TOKEN_LEN: usize = 128;

/// Refuses a session authenticated too long ago, or with one factor where two are needed,
/// with RFC 9470's `insufficient_user_authentication`.
pub fn require_step_up(
    state: &AppState,
    caller: &Authenticated,
    level: StepUpLevel,
    now: Millis,
) -> Result<(), ApiError> {
    // Only a level that depends on it reads the account's second factor.
    let enrolled = level == StepUpLevel::AsEnrolled && queries::mfa(&*state.replica, caller.user)?.1.enrolled();
    let claims = &caller.token.claims;
    let auth_time = Millis(claims.auth_time.saturating_mul(1000));
    state.step_up.demand(auth_time, claims.methods(), level, enrolled, now).map_err(|why| {
        match why {
            Insufficient::Stale => count!("tessera_step_up_required_total", "reason" => "stale"),
            Insufficient::NeedsSecondFactor => count!("tessera_step_up_required_total", "reason" => "second_factor"),
        }
        ApiError::StepUpRequired {
            max_age_secs: state.step_up.max_age.as_secs(),
            second_factor: why == Insufficient::NeedsSecondFactor,
        }
    })
}

fn bounded_code(code: &str) -> Result<&str, ApiError> {
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(ApiError::BadRequest(format!("a code has 1 to {MAX_CODE_LEN} characters")));
    }
    Ok(code)
}

/// RFC 3986 unreserved characters stay; everything else in a URI label is escaped.
const LABEL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The Key URI an authenticator app reads (`otpauth://totp/…`), with every parameter explicit.
pub fn otpauth_uri(issuer: &str, email: &str, secret_base32: &str) -> String {
    let issuer = utf8_percent_encode(issuer, LABEL).to_string();
    let account = utf8_percent_encode(email, LABEL);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret_base32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

/// `text` as an SVG QR code.
pub fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(ApiError::internal)?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build())
}

/// Ten fresh recovery codes and their keyed digests.
fn recovery_codes(state: &AppState, user: UserId) -> (Vec<String>, Vec<[u8; 32]>) {
    (0..RECOVERY_CODES)
        .map(|_| {
            let code = recovery_code(random(&*state.entropy));
            let digest = state.factors.recovery_digest(user, &code).expect("a drawn code is well-formed");
            (code, digest)
        })
        .unzip()
}

#[derive(Serialize, ToSchema)]
pub struct Enrolment {
    /// Send back with the first code to `/v1/mfa/totp/confirm`.
    pub factor_id: String,
    /// The shared secret, base32 (RFC 4648, no padding), 160 bits. Shown once.
    pub secret: String,
    /// `otpauth://totp/<issuer>:<email>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
    pub otpauth_uri: String,
    /// The same URI as an SVG QR code.
    pub qr_svg: String,
    /// Seconds the enrolment waits for its confirmation.
    pub expires_in: u64,
}

/// Start enrolling an authenticator app (TOTP, RFC 6238).
///
/// Needs a session authenticated within `mfa.step_up_max_age_secs`. The secret is sealed with
/// the key-encryption key in the replicated store and never shown again; the enrolment
/// expires unless confirmed with a code within 10 minutes.
#[utoipa::path(post, path = "/v1/mfa/totp", tag = "mfa", security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Scan `qr_svg` (or type `secret`), then confirm with a code", body = Enrolment),
        (status = 401, description = "Not signed in, or `insufficient_user_authentication` (re-authenticate first)", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 409, description = "An authenticator is enrolled already (disable it first)", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn enrol(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    require_step_up(&state, &caller, StepUpLevel::Fresh, now)?;
    let email = own_email(&state, caller.user)?;
    let secret: [u8; 20] = random(&*state.entropy);
    let factor: [u8; 16] = random(&*state.entropy);
    let sealed = state.factors.seal(caller.user, factor, &secret, random(&*state.entropy));
    let start =
        StartTotp { user: caller.user, factor, secret: sealed, origin: state.clients.origin(&req, Actor::Subject) };
    match state.gateway.call(start).await? {
        EnrolOutcome::Started => {
            let secret = totp_rs::Secret::from(secret.to_vec()).to_base32();
            let otpauth_uri = otpauth_uri(&state.mfa_issuer, email.as_str(), &secret);
            Ok(no_store(HttpResponse::Created()).json(Enrolment {
                factor_id: hex::encode(factor),
                qr_svg: qr_svg(&otpauth_uri)?,
                secret,
                otpauth_uri,
                expires_in: ENROLMENT_TTL.as_secs(),
            }))
        }
        EnrolOutcome::AlreadyEnrolled => {
            Err(ApiError::Conflict("an authenticator is enrolled already; disable it first"))
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ConfirmRequest {
    pub factor_id: String,
    /// The app's current 6-digit code.
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes (100 bits each) that stand in for the app. Shown once, stored only
    /// as keyed digests.
    pub recovery_codes: Vec<String>,
}

/// Confirm an enrolment with the app's first code: MFA is on from now.
#[utoipa::path(post, path = "/v1/mfa/totp/confirm", tag = "mfa", request_body = ConfirmRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Enrolled; the code's time step counts as used", body = RecoveryCodes),
        (status = 400, description = "Malformed request", body = Problem),
        (status = 401, description = "Not signed in, or the code is wrong (`invalid_grant`)", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 404, description = "No pending enrolment with this id (expired, or confirmed already)", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    let factor: [u8; 16] = hex::decode(&body.factor_id)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest("factor_id is not an enrolment id".into()))?;
    let code = bounded_code(&body.code)?.to_string();
    let (codes, recovery) = recovery_codes(&state, caller.user);
    let origin = state.clients.origin(&req, Actor::Subject);
    match state.gateway.call(ConfirmTotp { user: caller.user, factor, code, recovery, origin }).await? {
        ConfirmOutcome::Confirmed => {
            count!("tessera_mfa_total", "event" => "enrolled");
            Ok(no_store(HttpResponse::Ok()).json(RecoveryCodes { recovery_codes: codes }))
        }
        ConfirmOutcome::NoSuchEnrolment => Err(ApiError::NotFound),
        ConfirmOutcome::WrongCode => Err(ApiError::InvalidGrant("the code is wrong")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    pub totp: bool,
    pub recovery_codes_remaining: usize,
}

/// The caller's second factors.
#[utoipa::path(get, path = "/v1/mfa", tag = "mfa", security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = MfaStatus),
        (status = 401, description = "Not signed in", body = Problem),
    ))]
pub async fn status(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state, state.clock.now()).await?;
    let (_, mfa) = queries::mfa(&*state.replica, caller.user)?;
    Ok(no_store(HttpResponse::Ok())
        .json(MfaStatus { totp: mfa.enrolled(), recovery_codes_remaining: mfa.recovery.len() }))
}

/// Replace the recovery codes (the old ones stop working). Needs a fresh session at `aal2`.
#[utoipa::path(post, path = "/v1/mfa/recovery-codes", tag = "mfa", security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = RecoveryCodes),
        (status = 401, description = "Not signed in, or `insufficient_user_authentication`", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 404, description = "No second factor is enrolled", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn regenerate(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    require_step_up(&state, &caller, StepUpLevel::TwoFactors, now)?;
    let (codes, recovery) = recovery_codes(&state, caller.user);
    let origin = state.clients.origin(&req, Actor::Subject);
    match state.gateway.call(RegenerateRecoveryCodes { user: caller.user, recovery, origin }).await? {
        MfaChange::Done => Ok(no_store(HttpResponse::Ok()).json(RecoveryCodes { recovery_codes: codes })),
        MfaChange::NotEnrolled => Err(ApiError::NotFound),
    }
}

/// Disable MFA: the app and the recovery codes stop working. Needs a fresh session at `aal2`.
#[utoipa::path(delete, path = "/v1/mfa/totp", tag = "mfa", security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "Not signed in, or `insufficient_user_authentication`", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 404, description = "No second factor is enrolled", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn disable(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    require_step_up(&state, &caller, StepUpLevel::TwoFactors, now)?;
    let origin = state.clients.origin(&req, Actor::Subject);
    match state.gateway.call(DisableTotp { user: caller.user, origin }).await? {
        MfaChange::Done => {
            count!("tessera_mfa_total", "event" => "disabled");
            Ok(no_store(HttpResponse::NoContent()).finish())
        }
        MfaChange::NotEnrolled => Err(ApiError::NotFound),
    }
}

/// The second half of a login: a code or a recovery code, with the `mfa_token`.
#[derive(Deserialize, ToSchema)]
pub struct SecondFactorRequest {
    pub mfa_token: String,
    /// The authenticator app's code; or, instead, `recovery_code`.
    pub code: Option<String>,
    pub recovery_code: Option<String>,
    /// `cookie` answers with HttpOnly cookies and no token in the body.
    #[serde(default)]
    pub transport: Transport,
}

/// Complete a login with a second factor.
///
/// A code is a guess like a password: it needs a permit of the account's guard, and a wrong
/// one counts as a failed attempt (delays, lock). A code is accepted at most once per user
/// (its time step, and every earlier one, are used from then on), a recovery code once. The
/// `mfa_token` dies after 5 wrong codes, one success, or 5 minutes.
#[utoipa::path(post, path = "/v1/login/mfa", tag = "sessions", request_body = SecondFactorRequest,
    responses(
        (status = 200, description = "A new session (`amr` `[\"pwd\", \"otp\"]`, or `[\"pwd\", \"mfa\"]` for a recovery code; `acr` `aal2`)", body = TokenResponse),
        (status = 400, description = "Malformed request: neither or both of `code` and `recovery_code`", body = Problem),
        (status = 401, description = "Wrong, replayed or used code, or an unknown or expired `mfa_token` (`invalid_grant`)", body = Problem),
        (status = 409, description = "Session limit reached and the policy is to refuse", body = Problem),
        (status = 429, description = "Too soon after a failure, or locked; see `Retry-After`", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn login_second_factor(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SecondFactorRequest>,
) -> Result<HttpResponse, ApiError> {
    let SecondFactorRequest { mfa_token, code, recovery_code, transport } = body.into_inner();
    check_cookie_origin(&req, &state, transport)?;
    let parsed = (mfa_token.len() <= MAX_MFA_TOKEN_LEN).then(|| parse_challenge_token(&mfa_token)).flatten();
    let Some((user, digest)) = parsed else {
        return Err(ApiError::InvalidGrant("the mfa_token is invalid or has expired"));
    };
    let proof = match (code, recovery_code) {
        (Some(code), None) => Proof::Code(bounded_code(&code)?.to_string()),
        (None, Some(typed)) => match state.factors.recovery_digest(user, bounded_code(&typed)?) {
            Some(digest) => Proof::RecoveryCode(digest),
            // Not the shape of a recovery code: a wrong one, checked (and counted) as such.
            None => Proof::RecoveryCode([0; 32]),
        },
        _ => return Err(ApiError::BadRequest("send exactly one of `code` and `recovery_code`".into())),
    };
    let client = state.clients.client(&req);
    let origin = state.clients.origin(&req, Actor::Subject);
    match state.gateway.call(PassSecondFactor { user, digest, proof, client, origin }).await? {
        SecondFactorOutcome::Opened(grant) => {
            count!("tessera_login_total", "outcome" => "success");
            tokens(&state, &req, &grant, transport)
        }
        SecondFactorOutcome::NoChallenge => Err(ApiError::InvalidGrant("the mfa_token is invalid or has expired")),
        SecondFactorOutcome::Refused => {
            count!("tessera_login_total", "outcome" => "mfa_failed");
            Err(ApiError::InvalidGrant("the code is wrong or was used already"))
        }
        SecondFactorOutcome::Wait { retry_after_secs } => {
            count!("tessera_login_total", "outcome" => "throttled");
            Err(ApiError::TooManyAttempts { retry_after_secs })
        }
        SecondFactorOutcome::CapReached => {
            count!("tessera_login_total", "outcome" => "cap_reached");
            Err(ApiError::SessionLimit)
        }
    }
}

/// Proof for a re-authentication: the password, or a code of the enrolled app.
#[derive(Deserialize, ToSchema)]
pub struct ReauthRequest {
    pub password: Option<String>,
    pub code: Option<String>,
}

/// Re-authenticate the caller's session (step-up).
///
/// The session's `auth_time` becomes now and the proved factor joins its `amr`; its id and
/// refresh lineage stay (the refresh token in the answer is the one the client holds). The
/// answer carries a new access token (in cookies for a cookie session). Guesses follow the
/// same permit, delay and lockout rules as logins.
#[utoipa::path(post, path = "/v1/reauthenticate", tag = "sessions", request_body = ReauthRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The session's new tokens", body = TokenResponse),
        (status = 400, description = "Neither or both of `password` and `code`, or a code without an enrolled app", body = Problem),
        (status = 401, description = "Wrong password or code (`invalid_grant`), or not signed in", body = Problem),
        (status = 403, description = "Cookie request without a valid CSRF token or from a foreign origin", body = Problem),
        (status = 429, description = "Too many wrong guesses; see `Retry-After`", body = Problem),
        (status = 503, description = "Retry after `Retry-After`", body = Problem),
    ))]
pub async fn reauthenticate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ReauthRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = authenticate_change(&req, &state, now).await?;
    let ReauthRequest { password, code } = body.into_inner();
    let client = state.clients.client(&req);
    let origin = state.clients.origin(&req, Actor::Subject);
    let proof = match (password, code) {
        (Some(password), None) => {
            let email = own_email(&state, caller.user)?;
            match check_own_password(&state, caller.user, email, password, client.ip, &origin).await? {
                Some(verified) => Reproof::Password(verified),
                None => return Err(ApiError::InvalidGrant("the password is wrong")),
            }
        }
        (None, Some(code)) => Reproof::Code(bounded_code(&code)?.to_string()),
        _ => return Err(ApiError::BadRequest("send exactly one of `password` and `code`".into())),
    };
    let reauth = Reauthenticate { user: caller.user, session: caller.family, proof, origin };
    match state.gateway.call(reauth).await? {
        ReauthOutcome::Reauthenticated(grant) => {
            count!("tessera_reauthenticate_total", "outcome" => "success");
            tokens(&state, &req, &grant, caller.via.into())
        }
        ReauthOutcome::Refused => {
            count!("tessera_reauthenticate_total", "outcome" => "refused");
            Err(ApiError::InvalidGrant("the password or code is wrong"))
        }
        ReauthOutcome::NotEnrolled => Err(ApiError::BadRequest("no authenticator app is enrolled".into())),
        ReauthOutcome::Wait { retry_after_secs } => Err(ApiError::TooManyAttempts { retry_after_secs }),
        ReauthOutcome::SessionEnded => Err(ApiError::InvalidToken("the session has ended")),
    }
}
