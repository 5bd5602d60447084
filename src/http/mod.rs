//! The public HTTP API: routing and extractor limits.
//!
//! Modules, bottom up: what a request says about its client (`client`, `cookies`, `csrf`,
//! `request_id`), the state handlers share (`state`), who is calling (`caller`), the session
//! sequence login and password change share (`session`), the handlers (`auth`, `browser`,
//! `keys`, `mfa`, `audit`, `webhooks`, `ops`, and `admin` on the peer listener), and the OpenAPI document (`openapi`).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod browser;
pub mod caller;
pub mod client;
pub mod cookies;
pub mod csrf;
pub mod keys;
pub mod mfa;
pub mod openapi;
pub mod ops;
pub mod request_id;
pub mod resource;
pub mod session;
pub mod state;
pub mod webhooks;

use actix_web::error::JsonPayloadError;
use actix_web::web;

use crate::error::ApiError;

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

/// A malformed, oversized or non-form body of a form endpoint is a 4xx problem.
fn form_error(error: actix_web::error::UrlencodedError, limit: usize) -> ApiError {
    use actix_web::error::UrlencodedError;
    match error {
        UrlencodedError::Overflow { .. } => ApiError::BadRequest(format!("request body exceeds {limit} bytes")),
        UrlencodedError::ContentType => ApiError::UnsupportedMediaType,
        UrlencodedError::Parse(e) => ApiError::BadRequest(format!("invalid form body: {e}")),
        other => ApiError::BadRequest(format!("unreadable form body: {other}")),
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
    .app_data(
        web::FormConfig::default()
            .limit(max_body_bytes)
            .error_handler(move |e, _| form_error(e, max_body_bytes).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/openapi.json", web::get().to(openapi::openapi_json))
    .route("/.well-known/jwks.json", web::get().to(keys::jwks))
    .route("/.well-known/openid-configuration", web::get().to(auth::discovery))
    .route("/v1/cluster", web::get().to(ops::cluster))
    .route("/v1/users", web::post().to(auth::register))
    .route("/v1/login", web::post().to(auth::login))
    .route("/v1/login/mfa", web::post().to(mfa::login_second_factor))
    .route("/v1/reauthenticate", web::post().to(mfa::reauthenticate))
    .route("/v1/mfa", web::get().to(mfa::status))
    .service(web::resource("/v1/mfa/totp").route(web::post().to(mfa::enrol)).route(web::delete().to(mfa::disable)))
    .route("/v1/mfa/totp/confirm", web::post().to(mfa::confirm))
    .route("/v1/mfa/recovery-codes", web::post().to(mfa::regenerate))
    .route("/v1/token/refresh", web::post().to(auth::refresh))
    .route("/v1/logout", web::post().to(auth::logout))
    .service(web::resource("/v1/verify").route(web::get().to(auth::verify)).route(web::head().to(auth::verify_head)))
    .route("/v1/me", web::get().to(auth::me))
    .route("/v1/csrf", web::get().to(browser::csrf_token))
    .route("/v1/sessions", web::get().to(browser::list_sessions))
    .route("/v1/sessions/{session_id}", web::delete().to(browser::revoke_session))
    .route("/v1/password", web::post().to(browser::change_password))
    .route("/v1/admin/users/{user_id}/unlock", web::post().to(auth::unlock))
    .route("/v1/admin/audit", web::get().to(audit::audit_events))
    .route("/v1/admin/webhooks", web::get().to(webhooks::list))
    .route("/v1/admin/webhooks/{name}/deliveries", web::get().to(webhooks::deliveries))
    .route("/v1/admin/webhooks/{name}/enable", web::post().to(webhooks::enable))
    .route("/v1/admin/keys", web::get().to(keys::list))
    .route("/v1/admin/keys/rotate", web::post().to(keys::rotate))
    .service(
        web::resource("/v1/admin/clients")
            .route(web::get().to(resource::list_clients))
            .route(web::post().to(resource::create_client)),
    )
    .route("/v1/admin/clients/{client_id}", web::delete().to(resource::delete_client))
    .route("/v1/introspect", web::post().to(resource::introspect))
    .route("/v1/revoke", web::post().to(resource::revoke))
    .route("/v1/revocations/stream", web::get().to(resource::revocation_stream));
}

/// Anything unrouted.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
