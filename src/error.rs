//! The one error table: every failure the HTTP API can report, mapped to a status and an
//! RFC 9457 `application/problem+json` body with an OAuth-style `error` code.
//!
//! What a client reads of a 503 or a 500 is a fixed sentence from this table. The cause (peer,
//! openraft or database error text) goes to the log with its whole chain, never to a response
//! body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying an unavailable node.
pub const RETRY_AFTER_UNAVAILABLE: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Credentials or a refresh token were refused (RFC 6749 `invalid_grant`).
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// The bearer token is missing, malformed, expired or revoked (RFC 6750 `invalid_token`).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// A resource-server client's credentials are missing or wrong (RFC 6749 `invalid_client`).
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("this email address is already registered")]
    EmailTaken,
    /// Throttled or locked: the same answer for every reason and every account, known or not.
    #[error("too many attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    /// A cookie-authenticated request without a valid CSRF token or from a foreign origin.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The account has its maximum number of sessions and the policy is to refuse.
    #[error("session limit reached")]
    SessionLimit,
    /// A sensitive operation from a session authenticated too long ago, or with one factor
    /// where two are needed (RFC 9470 `insufficient_user_authentication`).
    #[error("{}", if *.second_factor { "this operation needs a session with a second factor" } else { "this operation needs a recent login" })]
    StepUpRequired { max_age_secs: u64, second_factor: bool },
    /// The request conflicts with the account's state (the detail says how).
    #[error("{0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Temporarily unable to serve: retry later. The client reads `why`; `cause` is logged.
    #[error("{}", why.sentence())]
    Unavailable { why: Unavailable, cause: Option<anyhow::Error> },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Why a request cannot be served right now, each with the one sentence clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No leader is known, or it cannot be reached.
    NoLeader,
    /// The node that ran the request stopped leading meanwhile.
    LeadershipChanging,
    /// Concurrent updates of the same account or session, twice in a row.
    Contention,
    /// The replicated store did not take the write in time (overloaded, no quorum).
    Busy,
    /// This node has not heard from a leader within `max_staleness`: it fails closed.
    Stale,
    /// This replica could not catch up with the leader in time.
    CatchUp,
    /// Every password-hashing thread is busy and the queue is full.
    Hashing,
    /// The cluster has not created its signing key yet.
    NoSigningKey,
    /// This process was frozen and has just resumed.
    Frozen,
    /// A membership change or leadership transfer did not complete.
    Membership,
    /// The durable store has not taken the audit trail for a while and the replicas' backlog
    /// of it is full: writes that record security events wait.
    AuditBacklog,
    /// The snapshot store cannot be read (the audit query).
    Store,
}

impl Unavailable {
    pub fn sentence(self) -> &'static str {
        match self {
            Unavailable::NoLeader => "no leader is available; retry shortly",
            Unavailable::LeadershipChanging => "leadership is changing; retry",
            Unavailable::Contention => "concurrent updates; retry",
            Unavailable::Busy => "the cluster is busy; retry",
            Unavailable::Stale => "this node has not heard from a leader recently",
            Unavailable::CatchUp => "this node could not catch up with the leader in time; retry",
            Unavailable::Hashing => "password hashing is saturated; retry",
            Unavailable::NoSigningKey => "no signing key is available yet",
            Unavailable::Frozen => "this node has just resumed from a pause; retry",
            Unavailable::Membership => "the cluster change did not complete; retry (the node's log says why)",
            Unavailable::AuditBacklog => "security events cannot be recorded right now; retry",
            Unavailable::Store => "the snapshot store cannot be read right now; retry",
        }
    }
}

/// RFC 9457 problem details, as every error is reported.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// OAuth-style error code: `invalid_request`, `invalid_grant`, `invalid_token`, `invalid_client`,
    /// `email_taken`, `session_limit`, `slow_down`, `access_denied` (CSRF or origin),
    /// `insufficient_user_authentication` (step-up, RFC 9470), `conflict`, `not_found`,
    /// `temporarily_unavailable`, `server_error`.
    #[schema(example = "invalid_grant")]
    pub error: &'static str,
    /// With `insufficient_user_authentication`: the oldest authentication accepted, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// With `insufficient_user_authentication`, when a second factor is needed: `aal2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<&'static str>,
}

impl ApiError {
    pub fn unavailable(why: Unavailable) -> ApiError {
        ApiError::Unavailable { why, cause: None }
    }

    /// Unavailable because of `cause`, which is logged (never shown to the client).
    pub fn unavailable_because(why: Unavailable, cause: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Unavailable { why, cause: Some(cause.into()) }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Internal(error.into())
    }

    /// (status, OAuth-style code, title)
    fn row(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", "Invalid request"),
            ApiError::InvalidGrant(_) => (StatusCode::UNAUTHORIZED, "invalid_grant", "Invalid grant"),
            ApiError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token"),
            ApiError::InvalidClient(_) => (StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client"),
            ApiError::EmailTaken => (StatusCode::CONFLICT, "email_taken", "Email already registered"),
            ApiError::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down", "Too many attempts"),
            ApiError::SessionLimit => (StatusCode::CONFLICT, "session_limit", "Session limit reached"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "access_denied", "Forbidden"),
            ApiError::StepUpRequired { .. } => {
                (StatusCode::UNAUTHORIZED, "insufficient_user_authentication", "Insufficient user authentication")
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "Method not allowed"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "Request body too large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "Unsupported media type")
            }
            ApiError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "Temporarily unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Internal server error"),
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            ApiError::BadRequest(detail) => Some(detail.clone()),
            ApiError::InvalidGrant(detail)
            | ApiError::InvalidToken(detail)
            | ApiError::InvalidClient(detail)
            | ApiError::Forbidden(detail)
            | ApiError::Conflict(detail) => Some(detail.to_string()),
            ApiError::StepUpRequired { .. } => Some(self.to_string()),
            ApiError::EmailTaken => Some("an account with this email address exists".to_string()),
            ApiError::TooManyAttempts { .. } => Some("too many attempts; retry after the time given".to_string()),
            ApiError::SessionLimit => {
                Some("this account has its maximum number of sessions; log out of one first".to_string())
            }
            ApiError::Unavailable { why, .. } => Some(why.sentence().to_string()),
            ApiError::NotFound
            | ApiError::MethodNotAllowed
            | ApiError::PayloadTooLarge
            | ApiError::UnsupportedMediaType
            | ApiError::Internal(_) => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.row().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, title) = self.row();
        match self {
            ApiError::Internal(cause) => tracing::error!(error = %format!("{cause:#}"), "internal error"),
            ApiError::Unavailable { why, cause: Some(cause) } => {
                tracing::warn!(reason = why.sentence(), cause = %format!("{cause:#}"), "unavailable")
            }
            _ => {}
        }
        let (max_age, acr_values) = match self {
            ApiError::StepUpRequired { max_age_secs, second_factor } => {
                (Some(*max_age_secs), second_factor.then_some("aal2"))
            }
            _ => (None, None),
        };
        let body = Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail: self.detail(),
            error: code,
            max_age,
            acr_values,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let ApiError::Unavailable { .. } = self {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_UNAVAILABLE.to_string()));
        }
        if let ApiError::TooManyAttempts { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let ApiError::StepUpRequired { max_age_secs, second_factor } = self {
            let acr = if *second_factor { ", acr_values=\"aal2\"" } else { "" };
            let challenge = format!(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"{self}\", max_age={max_age_secs}{acr}"
            );
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiError::InvalidClient(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tessera\"")));
        }
        if let ApiError::InvalidToken(_) = self {
            response
                .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\"")));
        }
        response.json(body)
    }
}

impl From<crate::gateway::GatewayError> for ApiError {
    fn from(e: crate::gateway::GatewayError) -> ApiError {
        use crate::gateway::GatewayError;
        use tessera_actors::protocol::ActorError;
        match e {
            GatewayError::NoLeader(None) => ApiError::unavailable(Unavailable::NoLeader),
            GatewayError::NoLeader(Some(cause)) => ApiError::unavailable_because(Unavailable::NoLeader, cause),
            GatewayError::Frozen(_) => ApiError::unavailable(Unavailable::Frozen),
            GatewayError::Actor(ActorError::NotLeader) => ApiError::unavailable(Unavailable::LeadershipChanging),
            GatewayError::Actor(ActorError::Contention) => ApiError::unavailable(Unavailable::Contention),
            GatewayError::Actor(e @ ActorError::Unavailable(_)) => ApiError::unavailable_because(Unavailable::Busy, e),
            GatewayError::Actor(e @ ActorError::Corrupt(_)) => ApiError::internal(e),
            GatewayError::Actor(ActorError::AuditBacklog) => ApiError::unavailable(Unavailable::AuditBacklog),
            e @ GatewayError::Protocol(_) => ApiError::internal(e),
        }
    }
}

impl From<tessera_actors::protocol::ActorError> for ApiError {
    /// A read of the local replica that failed (a query, not an operation).
    fn from(e: tessera_actors::protocol::ActorError) -> ApiError {
        ApiError::from(crate::gateway::GatewayError::Actor(e))
    }
}

impl From<crate::passwords::PasswordError> for ApiError {
    fn from(e: crate::passwords::PasswordError) -> ApiError {
        use crate::passwords::PasswordError;
        match e {
            PasswordError::Overloaded => ApiError::unavailable(Unavailable::Hashing),
            e @ PasswordError::Failed(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::tokens::TokenError> for ApiError {
    fn from(e: crate::tokens::TokenError) -> ApiError {
        use crate::tokens::TokenError;
        match e {
            TokenError::Invalid(_) => ApiError::InvalidToken("the access token is invalid"),
            TokenError::Expired => ApiError::InvalidToken("the access token has expired"),
            TokenError::NoSigningKey => ApiError::unavailable(Unavailable::NoSigningKey),
            e @ TokenError::Signing(_) => ApiError::internal(e),
        }
    }
}
