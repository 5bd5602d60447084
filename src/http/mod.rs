//! The public HTTP API: routing, extractor limits and the pieces every response shares.

pub mod admin;
pub mod auth;
pub mod browser;
pub mod client;
pub mod cookies;
pub mod csrf;
pub mod openapi;
pub mod ops;
pub mod request_id;

use std::sync::Arc;
use std::time::Instant;

use actix_web::error::JsonPayloadError;
use actix_web::web;
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_actors::domain::PasswordPolicy;
use tessera_actors::ports::{Clock, Entropy};
use tessera_actors::{Record, Registry};
use tessera_cluster::ClusterNode;

use crate::config::Secret;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::passwords::Passwords;
use crate::tokens::AccessTokens;

/// Shared by every handler of the public listener.
pub struct AppState {
    pub node: ClusterNode<Record>,
    pub gateway: Gateway,
    pub registry: Arc<Registry>,
    pub passwords: Arc<Passwords>,
    pub tokens: Arc<AccessTokens>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// How requests map to devices and client networks.
    pub clients: client::ClientPolicy,
    pub cookies: cookies::CookiePolicy,
    pub csrf: csrf::Csrf,
    /// Exact-match browser origins allowed with credentials.
    pub cors_origins: Vec<String>,
    /// The local replica, for reads the domain defines (session lists).
    pub replica: Arc<dyn tessera_actors::ports::Replicator>,
    pub password_policy: PasswordPolicy,
    /// Reads fail closed on a node out of touch with a leader for longer than this.
    pub max_staleness: std::time::Duration,
    pub admin_token: Secret,
    pub metrics: PrometheusHandle,
    pub started: Instant,
}

/// Malformed, mistyped or oversized JSON is a 400 problem, never a 500.
fn json_error(error: JsonPayloadError, limit: usize) -> ApiError {
    match error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::BadRequest(format!("request body exceeds {limit} bytes"))
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
        other => ApiError::BadRequest(format!("unreadable body: {other}")),
    }
}

/// Routes and limits of the public listener.
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(move |e, _| json_error(e, max_body_bytes).into()),
    )
    .app_data(web::PayloadConfig::new(max_body_bytes))
    .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/openapi.json", web::get().to(openapi::openapi_json))
    .route("/.well-known/jwks.json", web::get().to(auth::jwks))
    .route("/.well-known/openid-configuration", web::get().to(auth::discovery))
    .route("/v1/cluster", web::get().to(ops::cluster))
    .route("/v1/users", web::post().to(auth::register))
    .route("/v1/login", web::post().to(auth::login))
    .route("/v1/token/refresh", web::post().to(auth::refresh))
    .route("/v1/logout", web::post().to(auth::logout))
    .service(web::resource("/v1/verify").route(web::get().to(auth::verify)).route(web::head().to(auth::verify_head)))
    .route("/v1/me", web::get().to(auth::me))
    .route("/v1/csrf", web::get().to(browser::csrf_token))
    .route("/v1/sessions", web::get().to(browser::list_sessions))
    .route("/v1/sessions/{session_id}", web::delete().to(browser::revoke_session))
    .route("/v1/password", web::post().to(browser::change_password))
    .route("/v1/admin/users/{user_id}/unlock", web::post().to(auth::unlock));
}

/// Anything unrouted.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
