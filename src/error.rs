//! The one error table: every failure the HTTP API can report, mapped to a status and an
//! RFC 9457 `application/problem+json` body with an OAuth-style `error` code.
//!
//! Unexpected failures become an opaque 500; their cause chain goes to the log, never to the
//! client.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

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
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Temporarily unable to serve (no leader, overloaded, shutting down): retry later.
    #[error("{reason}")]
    Unavailable { reason: String, retry_after: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    error: &'a str,
}

impl ApiError {
    pub fn unavailable(reason: impl Into<String>) -> ApiError {
        ApiError::Unavailable { reason: reason.into(), retry_after: RETRY_AFTER_UNAVAILABLE }
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
            ApiError::EmailTaken => (StatusCode::CONFLICT, "email_taken", "Email already registered"),
            ApiError::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down", "Too many attempts"),
            ApiError::SessionLimit => (StatusCode::CONFLICT, "session_limit", "Session limit reached"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "access_denied", "Forbidden"),
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
            ApiError::InvalidGrant(detail) | ApiError::InvalidToken(detail) | ApiError::Forbidden(detail) => {
                Some(detail.to_string())
            }
            ApiError::EmailTaken => Some("an account with this email address exists".to_string()),
            ApiError::TooManyAttempts { .. } => Some("too many attempts; retry after the time given".to_string()),
            ApiError::SessionLimit => {
                Some("this account has its maximum number of sessions; log out of one first".to_string())
            }
            ApiError::Unavailable { reason, .. } => Some(reason.clone()),
            ApiError::NotFound
            | ApiError::MethodNotAllowed
            | ApiError::PayloadTooLarge
            | ApiError::UnsupportedMediaType
            | ApiError::Internal(_) => None,
        }
    }
}

/// Formats an error with its whole cause chain, for logs.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.row().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, title) = self.row();
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        let body = Problem { kind: "about:blank", title, status: status.as_u16(), detail: self.detail(), error: code };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let ApiError::Unavailable { retry_after, .. } = self {
            response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        if let ApiError::TooManyAttempts { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
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
            GatewayError::NoLeader(reason) => ApiError::unavailable(reason),
            e @ GatewayError::Frozen(_) => ApiError::unavailable(e.to_string()),
            GatewayError::Actor(ActorError::NotLeader) => ApiError::unavailable("leadership is changing"),
            GatewayError::Actor(ActorError::Contention) => ApiError::unavailable("concurrent updates; retry"),
            GatewayError::Actor(ActorError::Unavailable(reason)) => ApiError::unavailable(reason),
            GatewayError::Actor(e @ ActorError::Corrupt(_)) => ApiError::internal(e),
            e @ GatewayError::Protocol => ApiError::internal(e),
        }
    }
}

impl From<crate::passwords::PasswordError> for ApiError {
    fn from(e: crate::passwords::PasswordError) -> ApiError {
        use crate::passwords::PasswordError;
        match e {
            PasswordError::Overloaded => ApiError::unavailable("password hashing is saturated; retry"),
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
            TokenError::NoSigningKey => ApiError::unavailable("no signing key is available yet"),
            e @ TokenError::Signing(_) => ApiError::internal(e),
        }
    }
}
