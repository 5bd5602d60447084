//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/openapi.json`. A test checks that every route the server answers is in it.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-tessera-at",
                "The access-token cookie of a cookie session (login with `\"transport\": \"cookie\"`); state-changing requests also need `X-CSRF-Token`",
            ))),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("A resource-server client's `client_id` and `client_secret` (`tessera clients create`); introspection and revocation also take them as form fields"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The `admin_token` from the configuration"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "Authentication and session server: Argon2id logins, EdDSA access tokens, rotating refresh tokens, on a Raft cluster."),
    paths(
        crate::http::auth::register,
        crate::http::auth::login,
        crate::http::auth::refresh,
        crate::http::auth::logout,
        crate::http::auth::verify,
        crate::http::auth::verify_head,
        crate::http::auth::me,
        crate::http::keys::jwks,
        crate::http::keys::list,
        crate::http::keys::rotate,
        crate::http::resource::introspect,
        crate::http::resource::revoke,
        crate::http::resource::revocation_stream,
        crate::http::resource::create_client,
        crate::http::resource::list_clients,
        crate::http::resource::delete_client,
        crate::http::auth::discovery,
        crate::http::auth::unlock,
        crate::http::audit::audit_events,
        crate::http::webhooks::list,
        crate::http::webhooks::deliveries,
        crate::http::webhooks::enable,
        crate::http::browser::csrf_token,
        crate::http::browser::list_sessions,
        crate::http::browser::revoke_session,
        crate::http::browser::change_password,
        crate::http::mfa::enrol,
        crate::http::mfa::confirm,
        crate::http::mfa::status,
        crate::http::mfa::regenerate,
        crate::http::mfa::disable,
        crate::http::mfa::login_second_factor,
        crate::http::mfa::reauthenticate,
        crate::http::ops::healthz,
        crate::http::ops::readyz,
        crate::http::ops::cluster,
        crate::http::ops::metrics,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Accounts"),
        (name = "sessions", description = "Login, refresh-token rotation, logout"),
        (name = "mfa", description = "Second factors: TOTP enrolment and recovery codes (see also `/v1/login/mfa`, `/v1/reauthenticate`)"),
        (name = "tokens", description = "Access-token verification and signing keys"),
        (name = "operations", description = "Health, readiness, cluster state, metrics"),
        (name = "admin", description = "Administration (admin token)"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
