//! Webhook administration: the endpoints and where delivery stands, each endpoint's delivery
//! log, and enabling an endpoint again after it was disabled.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_actors::audit;
use tessera_actors::ports::{Write, WriteOutcome};
use tessera_actors::record::{Record, keys};
use utoipa::{IntoParams, ToSchema};

use crate::audit::store::Entry;
use crate::audit::view::rfc3339;
use crate::error::{ApiError, Problem, Unavailable};
use crate::http::admin::require_admin;
use crate::http::audit::{page_after, page_limit};
use crate::http::session::no_store;
use crate::http::state::AppState;
use crate::webhooks::dispatcher::{DELIVERIES, cursors};

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    /// Every matching event up to this audit `seq` was delivered.
    pub delivered_seq: u64,
    /// Audit events after `delivered_seq` (matching or not) not looked at yet.
    pub lag: u64,
    /// Failed attempts at the next event.
    pub failures: u32,
    /// The next attempt, if one is scheduled (RFC 3339).
    pub retry_at: Option<String>,
    pub failing_since: Option<String>,
    /// No attempts until enabled again.
    pub disabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoints {
    pub endpoints: Vec<WebhookEndpoint>,
}

/// Configured webhook endpoints and where delivery stands (administrators).
#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = WebhookEndpoints),
        (status = 401, description = "Missing or wrong admin token", body = Problem),
    ))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let head = state.node.stream_head(audit::STREAM).last;
    let endpoints = cursors(&*state.replica, &state.webhooks)
        .into_iter()
        .zip(state.webhooks.iter())
        .map(|((name, cursor), settings)| {
            let cursor = cursor.unwrap_or_default();
            WebhookEndpoint {
                name,
                url: settings.url.clone(),
                events: settings.events.clone(),
                delivered_seq: cursor.delivered,
                lag: head.saturating_sub(cursor.delivered),
                failures: cursor.failures,
                retry_at: (cursor.failures > 0 && !cursor.disabled).then(|| rfc3339(cursor.retry_at)),
                failing_since: cursor.failing_since.map(|at| rfc3339(at.0)),
                disabled: cursor.disabled,
            }
        })
        .collect();
    Ok(no_store(HttpResponse::Ok()).json(WebhookEndpoints { endpoints }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Attempts per page: 1 to 100, default 50.
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct Deliveries {
    /// Attempts, oldest first: `at`, `attempt`, `endpoint`, `event_seq`, `webhook_id`,
    /// `outcome` (`delivered`, `failed`, `disabled`), `status`, `error`, `next_attempt_at`.
    #[schema(value_type = Vec<Object>)]
    pub deliveries: Vec<Value>,
    pub next: Option<String>,
}

/// One endpoint's delivery log (administrators).
#[utoipa::path(get, path = "/v1/admin/webhooks/{name}/deliveries", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path, description = "The endpoint's configured name"), DeliveriesQuery),
    responses(
        (status = 200, body = Deliveries),
        (status = 400, description = "A malformed cursor or limit", body = Problem),
        (status = 401, description = "Missing or wrong admin token", body = Problem),
        (status = 404, description = "No such endpoint", body = Problem),
        (status = 503, description = "The snapshot store cannot be read", body = Problem),
    ))]
pub async fn deliveries(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let name = path.into_inner();
    if !state.webhooks.iter().any(|w| w.name == name) {
        return Err(ApiError::NotFound);
    }
    let query = query.into_inner();
    let (limit, mut after) = (page_limit(query.limit)?, page_after(query.after)?);
    // The log holds every endpoint's attempts: read on until a page of this one's is full.
    let mut shown = Vec::new();
    let mut last_seen = after;
    'pages: loop {
        let mut entries = state
            .audit
            .stream_page(DELIVERIES, after, 500)
            .await
            .map_err(|e| ApiError::unavailable_because(Unavailable::Store, e))?;
        if entries.is_empty() {
            let pending = state.node.stream_entries(DELIVERIES, after, 500);
            entries = pending.into_iter().map(Entry::from).collect();
        }
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            after = entry.seq;
            let Ok(record) = serde_json::from_str::<Value>(&entry.text) else { continue };
            if record["endpoint"] == name.as_str() {
                shown.push(record);
                last_seen = entry.seq;
                if shown.len() == limit {
                    break 'pages;
                }
            }
        }
    }
    let next = (shown.len() == limit).then(|| last_seen.to_string());
    Ok(no_store(HttpResponse::Ok()).json(Deliveries { deliveries: shown, next }))
}

#[derive(Serialize, ToSchema)]
pub struct Enabled {
    /// Whether it was disabled before.
    pub was_disabled: bool,
}

/// Enable a disabled endpoint again: the event it stopped at is tried at once (administrators).
#[utoipa::path(post, path = "/v1/admin/webhooks/{name}/enable", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path, description = "The endpoint's configured name")),
    responses(
        (status = 200, body = Enabled),
        (status = 401, description = "Missing or wrong admin token", body = Problem),
        (status = 404, description = "No such endpoint, or it has not started yet", body = Problem),
        (status = 503, description = "No leader, or concurrent changes", body = Problem),
    ))]
pub async fn enable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let name = path.into_inner();
    if !state.webhooks.iter().any(|w| w.name == name) {
        return Err(ApiError::NotFound);
    }
    let key = keys::webhook(&name);
    let (version, cursor) = match state.replica.read(&key).map_err(|e| ApiError::Internal(e.into()))? {
        Some((version, Record::Webhook(cursor))) => (version, cursor),
        _ => return Err(ApiError::NotFound),
    };
    let write = Write {
        expect: vec![(key.clone(), Some(version))],
        puts: vec![(key, Record::Webhook(cursor.enabled()))],
        ..Write::default()
    };
    match state.replica.write(write).await {
        Ok(WriteOutcome::Committed { .. }) => {
            tracing::info!(endpoint = name, was_disabled = cursor.disabled, "webhook endpoint enabled");
            Ok(no_store(HttpResponse::Ok()).json(Enabled { was_disabled: cursor.disabled }))
        }
        Ok(WriteOutcome::Conflict { .. }) => Err(ApiError::unavailable(Unavailable::Contention)),
        Err(tessera_actors::ports::ReplicaError::NotLeader) => Err(ApiError::unavailable(Unavailable::NoLeader)),
        Err(e) => Err(ApiError::unavailable_because(Unavailable::Busy, e)),
    }
}
