//! `GET /v1/admin/audit`: the audit trail for administrators, oldest first, keyset-paged by
//! `seq`. Reads what the snapshot store holds and, after it, what this replica still holds
//! that the store has not taken yet, so an event is visible from the moment it was recorded.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use tessera_actors::audit;
use tessera_actors::domain::UserId;
use utoipa::{IntoParams, ToSchema};

use crate::audit::store::{Entry, Filter};
use crate::audit::view;
use crate::error::{ApiError, Problem, Unavailable};
use crate::http::admin::require_admin;
use crate::http::session::no_store;
use crate::http::state::AppState;

/// Page sizes of the admin listings.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

/// A listing's `limit`: 1 to 100, 50 if absent.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::BadRequest("limit must be at least 1".into())),
        n if n > MAX_LIMIT => Err(ApiError::BadRequest("limit must be at most 100".into())),
        n => Ok(n),
    }
}

/// A listing's `after`: the `next` of the page before (0 if absent).
pub fn page_after(after: Option<String>) -> Result<u64, ApiError> {
    after
        .map(|a| a.parse::<u64>().map_err(|_| ApiError::BadRequest("after is not a cursor from this API".into())))
        .transpose()
        .map(Option::unwrap_or_default)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events about this user.
    user_id: Option<String>,
    /// Only events of this action (`login.failed`, `session.revoked`, …).
    action: Option<String>,
    /// Only events at or after this instant (RFC 3339, or Unix milliseconds).
    since: Option<String>,
    /// Only events before this instant (RFC 3339, or Unix milliseconds).
    until: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Events per page: 1 to 100, default 50.
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Events in `seq` order. Each has `seq`, `at`, `action`, `actor` (`{"type","id"}`),
    /// `user_id`, `resource_type`, `resource_id`, `changes`, `ip`, `user_agent`, `request_id`,
    /// `pii_erased`, `prev_hash` and `hash` (docs/audit.md).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<String>,
}

impl TryFrom<AuditQuery> for Filter {
    type Error = ApiError;

    fn try_from(q: AuditQuery) -> Result<Filter, ApiError> {
        let bad = |what: &str| ApiError::BadRequest(what.to_string());
        let user_id = q
            .user_id
            .map(|u| UserId::parse(&u).map(|u| u.to_string()).ok_or_else(|| bad("user_id is not a user id")))
            .transpose()?;
        let action = q
            .action
            .map(|a| {
                let valid = !a.is_empty()
                    && a.len() <= 64
                    && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_');
                valid.then_some(a).ok_or_else(|| bad("action is not an event action"))
            })
            .transpose()?;
        let time = |t: Option<String>, name: &str| {
            t.map(|t| {
                view::parse_time(&t).ok_or_else(|| bad(&format!("{name} is not an RFC 3339 time or Unix milliseconds")))
            })
            .transpose()
        };
        let (since, until) = (time(q.since, "since")?, time(q.until, "until")?);
        let (after, limit) = (page_after(q.after)?, page_limit(q.limit)?);
        Ok(Filter { user_id, action, since, until, after, limit })
    }
}

/// Reads of the store and of the replica that a flush interleaved with before they joined up.
const PAGE_ATTEMPTS: usize = 3;

/// One page of the trail: flushed entries from the store, then (if the page has room) those
/// the replica holds after them. A flush and its compaction may land between the two reads:
/// then the replica no longer holds what follows the store's head as it was read, and the
/// page is read again rather than skip those entries.
async fn trail_page(state: &AppState, filter: &Filter) -> Result<Vec<Entry>, ApiError> {
    for _ in 0..PAGE_ATTEMPTS {
        let (mut entries, stored) =
            state.audit.page(filter.clone()).await.map_err(|e| ApiError::unavailable_because(Unavailable::Store, e))?;
        if entries.len() == filter.limit {
            return Ok(entries);
        }
        let from = stored.max(filter.after);
        let pending = state.node.stream_entries(audit::STREAM, from, usize::MAX);
        let joined = match pending.first() {
            Some(first) => first.seq == from + 1,
            None => state.node.stream_head(audit::STREAM).last <= from,
        };
        if !joined {
            continue;
        }
        let more = pending.into_iter().filter_map(|e| {
            let record: serde_json::Value = serde_json::from_str(&e.text).ok()?;
            filter.admits(e.seq, &record).then(|| Entry::from(e))
        });
        let room = filter.limit - entries.len();
        entries.extend(more.take(room));
        return Ok(entries);
    }
    Err(ApiError::unavailable(Unavailable::Store))
}

/// The audit trail (administrators).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    params(AuditQuery),
    security(("admin" = [])),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "A malformed filter, cursor or limit", body = Problem),
        (status = 401, description = "Missing or wrong admin token", body = Problem),
        (status = 503, description = "The snapshot store cannot be read", body = Problem),
    ))]
pub async fn audit_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let filter = Filter::try_from(query.into_inner())?;
    let entries = trail_page(&state, &filter).await?;
    let events = entries
        .iter()
        .map(|entry| view::event(entry, &*state.replica, &state.audit_pii_key))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(e.into()))?;
    let next = (entries.len() == filter.limit).then(|| entries.last().map(|e| e.seq.to_string())).flatten();
    Ok(no_store(HttpResponse::Ok()).json(AuditPage { events, next }))
}
