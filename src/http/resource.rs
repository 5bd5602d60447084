//! What resource servers use: token introspection (RFC 7662), token revocation (RFC 7009) and
//! the revocation stream, all authenticated as a registered client; and the administration of
//! those clients (`/v1/admin/clients`).
//!
//! Client authentication is HTTP Basic with the form-encoded `client_id` and `client_secret`
//! (RFC 6749 §2.3.1), or the same two as form fields (`client_secret_post`). A public client
//! (a browser or mobile app, which cannot keep a secret) may revoke its own refresh token by
//! naming a `client_id` alone: the token's MAC proves possession.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::Stream;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tessera_actors::audit::{self, Actor};
use tessera_actors::clients::{self, CreateClient, CreateOutcome, DeleteClient, DeleteOutcome};
use tessera_actors::domain::{Client, ClientId, ClientName, ClientSecret, FamilyId, Millis, RefreshToken, UserId};
use tessera_actors::family_actor::Revoke;
use tessera_actors::ports::random;
use tessera_actors::protocol::LogoutOutcome;
use tessera_actors::queries::{self, SessionAccess};
use utoipa::ToSchema;

use crate::audit::store::Filter;
use crate::error::{ApiError, Problem, Unavailable};
use crate::http::admin::require_admin;
use crate::http::session::no_store;
use crate::http::state::AppState;
use crate::metrics::count;

/// The form of introspection and revocation requests.
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// An access token or a refresh token.
    #[schema(max_length = 4096)]
    pub token: String,
    /// `access_token` or `refresh_token`: which kind to try first (both are tried).
    pub token_type_hint: Option<String>,
    /// With `client_secret`: `client_secret_post` authentication; alone (revocation of a
    /// refresh token only): a public client.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// Who is calling, once the credentials have been checked.
enum Caller {
    /// A registered client whose secret matched.
    Confidential(ClientId),
    /// A `client_id` without a secret: may revoke a refresh token it holds, nothing else.
    Public,
}

/// Decodes `application/x-www-form-urlencoded` text (RFC 6749 §2.3.1 encodes Basic
/// credentials that way).
fn form_decoded(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8().ok().map(|s| s.into_owned())
}

/// `Authorization: Basic`, decoded into (client_id, client_secret).
fn basic_credentials(req: &HttpRequest) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let refused = || ApiError::InvalidClient("malformed Basic credentials");
    let value = value.to_str().map_err(|_| refused())?;
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Ok(None);
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| refused())?;
    let decoded = String::from_utf8(decoded).map_err(|_| refused())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(refused)?;
    Ok(Some((form_decoded(id).ok_or_else(refused)?, form_decoded(secret).ok_or_else(refused)?)))
}

/// Checks the caller's client credentials against the local replica. `public_allowed`: a
/// `client_id` without a secret is accepted as a public client.
fn authenticate_client(
    req: &HttpRequest,
    state: &AppState,
    form: &TokenForm,
    public_allowed: bool,
) -> Result<Caller, ApiError> {
    let presented = match (basic_credentials(req)?, &form.client_id, &form.client_secret) {
        (Some(basic), None, None) => basic,
        (Some(_), _, _) => return Err(ApiError::InvalidClient("use one client authentication method")),
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        (None, Some(id), None) if public_allowed && !id.is_empty() && id.len() <= 128 => return Ok(Caller::Public),
        (None, _, _) => return Err(ApiError::InvalidClient("client authentication is required")),
    };
    let (id, secret) = presented;
    let client = match ClientId::parse(&id) {
        Some(id) => clients::client(&*state.replica, &id)?.map(|(_, client)| client),
        None => None,
    };
    match client {
        Some(client) if client.authenticates(&secret) => Ok(Caller::Confidential(client.id)),
        _ => {
            count!("tessera_client_auth_failures_total");
            Err(ApiError::InvalidClient("unknown client or wrong secret"))
        }
    }
}

/// What introspection reports about a live token.
#[derive(Serialize, ToSchema, Default)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

/// The session a token stands for, if the token is live now (read from the local replica).
struct Live {
    user: UserId,
    family: FamilyId,
    report: Introspection,
}

fn live_access(state: &AppState, token: &str, now: Millis) -> Result<Option<Live>, ApiError> {
    let Ok(verified) = state.tokens.verify(token, now) else { return Ok(None) };
    let c = &verified.claims;
    let access = queries::session_access(
        &*state.replica,
        verified.user,
        verified.family,
        c.generation(),
        None,
        state.clients.binding,
        now,
    )?;
    Ok(match access {
        SessionAccess::Live { .. } => Some(Live {
            user: verified.user,
            family: verified.family,
            report: Introspection {
                active: true,
                token_type: Some("access_token"),
                sub: Some(c.sub.clone()),
                sid: Some(c.sid.clone()),
                iss: Some(c.iss.clone()),
                aud: Some(c.aud.clone()),
                exp: Some(c.exp),
                iat: Some(c.iat),
                nbf: Some(c.nbf),
                jti: Some(c.jti.clone()),
                auth_time: Some(c.auth_time),
                amr: Some(c.amr.clone()),
                acr: Some(c.methods().acr().to_string()),
            },
        }),
        SessionAccess::Ended | SessionAccess::Behind | SessionAccess::ForeignDevice => None,
    })
}

fn live_refresh(state: &AppState, token: &str, now: Millis) -> Result<Option<Live>, ApiError> {
    let Some(token) = RefreshToken::parse(token) else { return Ok(None) };
    let pepper = &state.registry.context().pepper;
    let Some(family) = queries::refresh_session(&*state.replica, pepper, &token)? else { return Ok(None) };
    if !family.honours_refresh(token.generation, now) {
        return Ok(None);
    }
    Ok(Some(Live {
        user: family.user,
        family: token.family,
        report: Introspection {
            active: true,
            token_type: Some("refresh_token"),
            sub: Some(family.user.to_string()),
            sid: Some(token.family.to_string()),
            iss: Some(state.tokens.issuer()),
            exp: Some(family.idle_deadline.min(family.absolute_deadline).as_secs()),
            iat: Some(family.rotated_at.as_secs()),
            auth_time: Some(family.auth_time.as_secs()),
            amr: Some(family.amr.names().into_iter().map(String::from).collect()),
            acr: Some(family.amr.acr().to_string()),
            ..Introspection::default()
        },
    }))
}

/// The token's live session, trying the hinted kind first.
fn live_token(state: &AppState, form: &TokenForm, now: Millis) -> Result<Option<Live>, ApiError> {
    if form.token.len() > 4096 {
        return Ok(None);
    }
    type Lookup = fn(&AppState, &str, Millis) -> Result<Option<Live>, ApiError>;
    let refresh_first = form.token_type_hint.as_deref() == Some("refresh_token");
    let (first, second): (Lookup, Lookup) =
        if refresh_first { (live_refresh, live_access) } else { (live_access, live_refresh) };
    match first(state, &form.token, now)? {
        Some(live) => Ok(Some(live)),
        None => second(state, &form.token, now),
    }
}

/// Token introspection (RFC 7662) for resource servers. A token whose session was ended by a
/// write acknowledged anywhere before this request is inactive: the node catches up with the
/// leader (a read index) before it answers.
#[utoipa::path(post, path = "/v1/introspect", tag = "tokens",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "`{\"active\": false}` for anything but a live token", body = Introspection),
        (status = 400, description = "Malformed form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong client credentials (`invalid_client`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This node cannot reach the leader", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    authenticate_client(&req, &state, &form, false)?;
    state.replica.catch_up().await.map_err(|e| ApiError::unavailable_because(Unavailable::CatchUp, e))?;
    let live = live_token(&state, &form, state.clock.now())?;
    if live.is_some() {
        count!("tessera_introspections_total", "active" => "true");
    } else {
        count!("tessera_introspections_total", "active" => "false");
    }
    let answer = live.map_or_else(Introspection::default, |live| live.report);
    Ok(no_store(HttpResponse::Ok()).json(answer))
}

/// Token revocation (RFC 7009): a live access or refresh token ends its session (every token
/// of it, on every node). Anything else answers 200 as well, as the RFC requires.
#[utoipa::path(post, path = "/v1/revoke", tag = "tokens",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("client" = []), ()),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "Malformed form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong client credentials (`invalid_client`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No leader to record the revocation; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate_client(&req, &state, &form, true)?;
    let now = state.clock.now();
    let live = match caller {
        Caller::Confidential(_) => live_token(&state, &form, now)?,
        // A public client proves possession with the refresh token's MAC; nothing else.
        Caller::Public => live_refresh(&state, &form.token, now)?,
    };
    if let Some(Live { user, family, .. }) = live {
        let id = match &caller {
            Caller::Confidential(id) => id.to_string(),
            Caller::Public => "public".to_string(),
        };
        let origin = state.clients.origin(&req, Actor::Client { id });
        match state.gateway.call(Revoke { user, family, origin }).await? {
            LogoutOutcome::LoggedOut | LogoutOutcome::AlreadyLoggedOut | LogoutOutcome::NotFound => {}
        }
        count!("tessera_revocations_total", "result" => "revoked");
    } else {
        count!("tessera_revocations_total", "result" => "nothing");
    }
    Ok(no_store(HttpResponse::Ok()).finish())
}

/// Revocation streams served by this process at most (each holds a connection).
const MAX_STREAMS: usize = 256;
static STREAMS: AtomicUsize = AtomicUsize::new(0);
/// Events read from the snapshot store at a time, when resuming from long ago.
const STORE_PAGE: usize = 100;
/// How long a quiet stream waits before a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// Resume after this event id (as `Last-Event-ID` does); default: from now on.
    after: Option<u64>,
}

/// One ended session, as the stream tells it.
#[derive(Serialize)]
struct Ended<'a> {
    sid: &'a str,
    sub: &'a str,
    reason: &'a str,
    /// Unix milliseconds.
    at: u64,
}

/// The `data:` of a `session.revoked` audit record, if `text` is one.
fn ended_session(text: &str) -> Option<String> {
    let record: serde_json::Value = serde_json::from_str(text).ok()?;
    if record["action"] != "session.revoked" {
        return None;
    }
    let ended = Ended {
        sid: record["resource_id"].as_str()?,
        sub: record["user_id"].as_str()?,
        reason: record["changes"]["reason"].as_str().unwrap_or("unknown"),
        at: record["at"].as_u64()?,
    };
    serde_json::to_string(&ended).ok()
}

struct StreamSlot;

impl Drop for StreamSlot {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ended sessions as (event id, `data:`), and the cursor after them.
type Batch = Result<(Vec<(u64, String)>, u64), ApiError>;

/// The revocation stream's state: where it stands in the audit stream, and what it waits on.
struct Revocations {
    state: web::Data<AppState>,
    cursor: u64,
    pending: Option<BoxFuture<'static, Batch>>,
    _slot: StreamSlot,
}

impl Revocations {
    /// The next batch after `cursor`: what the replica holds, or (for a cursor older than
    /// what the replica still holds) from the snapshot store; waits for the next applied
    /// write when there is nothing new. Returns (events, new cursor).
    fn next_batch(&self) -> BoxFuture<'static, Batch> {
        let state = self.state.clone();
        let cursor = self.cursor;
        Box::pin(async move {
            let mut applied = state.node.raft().metrics();
            let mut stopping = state.stopping.clone();
            let deadline = tokio::time::Instant::now() + KEEP_ALIVE;
            loop {
                if *stopping.borrow_and_update() {
                    return Err(ApiError::unavailable(Unavailable::NoLeader));
                }
                let entries = state.node.stream_entries(audit::STREAM, cursor, 512);
                let compacted = entries.first().is_some_and(|first| first.seq > cursor + 1)
                    || (entries.is_empty() && state.node.stream_head(audit::STREAM).last > cursor);
                let (events, next) = if compacted {
                    // The replica has handed entries after `cursor` to the snapshot store.
                    let filter = Filter {
                        action: Some("session.revoked".into()),
                        after: cursor,
                        limit: STORE_PAGE,
                        ..Filter::default()
                    };
                    let (stored, through) = state
                        .audit
                        .page(filter)
                        .await
                        .map_err(|e| ApiError::unavailable_because(Unavailable::Store, e))?;
                    let next = match stored.last() {
                        Some(last) if stored.len() == STORE_PAGE => last.seq,
                        _ => through.max(cursor),
                    };
                    (stored.into_iter().filter_map(|e| ended_session(&e.text).map(|d| (e.seq, d))).collect(), next)
                } else {
                    let next = entries.last().map_or(cursor, |e| e.seq);
                    (entries.into_iter().filter_map(|e| ended_session(&e.text).map(|d| (e.seq, d))).collect(), next)
                };
                if next > cursor {
                    return Ok((events, next));
                }
                // Nothing new: wait for the replica to apply something, or send a keep-alive.
                tokio::select! {
                    changed = applied.changed() => {
                        if changed.is_err() {
                            return Err(ApiError::unavailable(Unavailable::NoLeader));
                        }
                    }
                    _ = stopping.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => return Ok((Vec::new(), cursor)),
                }
            }
        })
    }
}

impl Stream for Revocations {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending.is_none() {
            let next = self.next_batch();
            self.pending = Some(next);
        }
        let Some(pending) = self.pending.as_mut() else { return Poll::Pending };
        match pending.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.pending = None;
                match result {
                    Ok((events, next)) => {
                        self.cursor = next;
                        let mut text = String::new();
                        for (seq, data) in &events {
                            text += &format!("id: {seq}\nevent: session.ended\ndata: {data}\n\n");
                        }
                        if events.is_empty() {
                            // Keep-alive; also moves a client's resumption point past events
                            // it need not see (`id` with no data is not dispatched).
                            text += &format!(": keep-alive\nid: {next}\n\n");
                        }
                        Poll::Ready(Some(Ok(Bytes::from(text))))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation stream ended");
                        Poll::Ready(None)
                    }
                }
            }
        }
    }
}

/// Every ended session (`sid`, `sub`, `reason`, `at`) as server-sent events, the moment the
/// ending write is applied on this node; `Last-Event-ID` (or `?after=`) resumes.
#[utoipa::path(get, path = "/v1/revocations/stream", tag = "tokens",
    params(StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    security(("client" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: `event: session.ended`, `data: {\"sid\",\"sub\",\"reason\",\"at\"}`", content_type = "text/event-stream"),
        (status = 401, description = "Missing or wrong client credentials (`invalid_client`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams on this node", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revocation_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let none = TokenForm { token: String::new(), token_type_hint: None, client_id: None, client_secret: None };
    authenticate_client(&req, &state, &none, false)?;
    let resume = match req.headers().get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".into()))?,
        ),
        None => query.after,
    };
    if STREAMS.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        STREAMS.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::unavailable(Unavailable::Busy));
    }
    let slot = StreamSlot;
    let cursor = resume.unwrap_or_else(|| state.node.stream_head(audit::STREAM).last);
    let stream = Revocations { state: state.clone(), cursor, pending: None, _slot: slot };
    Ok(no_store(HttpResponse::Ok())
        .content_type("text/event-stream")
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedClient {
    pub client_id: String,
    /// Shown once; Tessera keeps only a digest.
    pub client_secret: String,
    pub name: String,
    pub created_at: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub created_at: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

/// Register a resource-server client (administrators): its secret is in this answer only.
#[utoipa::path(post, path = "/v1/admin/clients", tag = "admin", security(("admin" = [])),
    request_body = NewClient,
    responses(
        (status = 201, body = CreatedClient),
        (status = 400, description = "Bad name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cluster holds the maximum number of clients (1000)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewClient>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let name = ClientName::parse(&body.name)
        .ok_or_else(|| ApiError::BadRequest("name must be 1 to 64 printable characters".into()))?;
    let secret = ClientSecret::from_random(random(&*state.entropy));
    let client = Client {
        id: ClientId::from_random(random(&*state.entropy)),
        name,
        secret_digest: secret.digest(),
        created_at: state.clock.now(),
    };
    let created = CreatedClient {
        client_id: client.id.to_string(),
        client_secret: secret.reveal().to_string(),
        name: client.name.as_str().to_string(),
        created_at: client.created_at.as_secs(),
    };
    let origin = state.clients.origin(&req, Actor::Admin { id: "admin-token".into() });
    match state.gateway.call(CreateClient { client, origin }).await? {
        CreateOutcome::Created => Ok(no_store(HttpResponse::Created()).json(created)),
        CreateOutcome::TooMany => Err(ApiError::Conflict("the cluster holds the maximum number of clients")),
    }
}

/// Every resource-server client (administrators).
#[utoipa::path(get, path = "/v1/admin/clients", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = ClientList),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_clients(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let clients = clients::clients(&*state.replica)?
        .into_iter()
        .map(|c| ClientView {
            client_id: c.id.to_string(),
            name: c.name.as_str().to_string(),
            created_at: c.created_at.as_secs(),
        })
        .collect();
    Ok(no_store(HttpResponse::Ok()).json(ClientList { clients }))
}

/// Delete a resource-server client (administrators): its credentials stop working.
#[utoipa::path(delete, path = "/v1/admin/clients/{client_id}", tag = "admin", security(("admin" = [])),
    params(("client_id" = String, Path, description = "The client's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state.admin_token)?;
    let id = ClientId::parse(&path).ok_or(ApiError::NotFound)?;
    let origin = state.clients.origin(&req, Actor::Admin { id: "admin-token".into() });
    match state.gateway.call(DeleteClient { id, origin }).await? {
        DeleteOutcome::Deleted => Ok(HttpResponse::NoContent().finish()),
        DeleteOutcome::NotFound => Err(ApiError::NotFound),
    }
}
