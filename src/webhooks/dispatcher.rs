//! The leader's webhook dispatcher: for each endpoint in turn, the next matching audit event
//! after its replicated cursor is `POST`ed, then the cursor moves in a compare-and-set write
//! that also appends the attempt to the `webhook-deliveries` stream (the delivery log). One
//! event in flight per endpoint, so events arrive in order; a slow or failing endpoint delays
//! only itself. The rule for the cursor is `tessera_actors::domain::webhook`.
//!
//! At least once: the cursor moves only after the receiver answered 2xx, so a leader that dies
//! in between leaves the event to its successor, which sends it again with the same
//! `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};
use tessera_actors::audit;
use tessera_actors::domain::{Due, WebhookAttempt, WebhookCursor};
use tessera_actors::ports::{Clock, Entropy, Replicator, Write, WriteOutcome, random};
use tessera_actors::record::{Record, keys};
use tessera_cluster::ClusterNode;
use tokio::sync::watch;

use super::{payload, signature, webhook_id};
use crate::audit::store::{AuditStore, Entry, Filter};
use crate::config::{WebhookDelivery, WebhookSettings};

/// The stream of delivery attempts.
pub const DELIVERIES: &str = "webhook-deliveries";
const TICK: Duration = Duration::from_millis(200);
/// Events looked at per step when skipping those an endpoint does not want.
const SCAN: usize = 512;
/// Longest error text a delivery record keeps.
const MAX_ERROR_CHARS: usize = 200;

pub struct Dispatcher {
    pub cluster: ClusterNode<Record>,
    pub replica: Arc<dyn Replicator>,
    pub store: AuditStore,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub endpoints: Vec<WebhookSettings>,
    pub delivery: WebhookDelivery,
}

/// What one step for an endpoint did.
enum Stepped {
    Idle,
    Moved,
}

impl Dispatcher {
    /// Runs on the Raft runtime until `stop` changes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.endpoints.is_empty() {
            return;
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(self.delivery.timeout_ms))
            .user_agent(concat!("tessera-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default TLS builds");
        let schedule: Vec<Duration> = self.delivery.retry_ms.iter().map(|ms| Duration::from_millis(*ms)).collect();
        loop {
            let mut moved = false;
            if self.cluster.leadership().this_node_leads {
                for endpoint in &self.endpoints {
                    match self.step(&http, &schedule, endpoint).await {
                        Ok(Stepped::Moved) => moved = true,
                        Ok(Stepped::Idle) => {}
                        Err(e) => tracing::debug!(endpoint = endpoint.name, error = %e, "webhook step interrupted"),
                    }
                }
            }
            let pause = if moved { Duration::ZERO } else { TICK };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One step for `endpoint`: create its cursor, skip what it does not want, or attempt the
    /// next event it does.
    async fn step(
        &self,
        http: &reqwest::Client,
        schedule: &[Duration],
        endpoint: &WebhookSettings,
    ) -> Result<Stepped, String> {
        let key = keys::webhook(&endpoint.name);
        let (version, cursor) = match self.replica.read(&key).map_err(|e| e.to_string())? {
            Some((version, Record::Webhook(cursor))) => (Some(version), cursor),
            Some((_, other)) => return Err(format!("{key} holds {other:?}")),
            None => {
                let head = self.cluster.stream_head(audit::STREAM).last;
                self.commit(&key, None, WebhookCursor::starting_at(head), None).await?;
                return Ok(Stepped::Moved);
            }
        };
        let now = self.clock.now();
        metrics::gauge!("tessera_webhook_disabled", "endpoint" => endpoint.name.clone())
            .set(f64::from(u8::from(cursor.disabled)));
        match cursor.due(now) {
            Due::Disabled | Due::Later => return Ok(Stepped::Idle),
            Due::Now => {}
        }
        let batch = self.entries_after(cursor.delivered).await?;
        let Some(last) = batch.last().map(|e| e.seq) else { return Ok(Stepped::Idle) };
        let wanted = batch.into_iter().find_map(|entry| {
            let record: Value = serde_json::from_str(&entry.text).ok()?;
            let action = record.get("action")?.as_str()?.to_string();
            endpoint.wants(&action).then_some((entry.seq, record))
        });
        let Some((seq, record)) = wanted else {
            self.commit(&key, version, cursor.skipped_to(last), None).await?;
            return Ok(Stepped::Moved);
        };
        let (attempt, status, error) = self.attempt(http, endpoint, seq, &record).await;
        let jitter = (u64::from_be_bytes(random(&*self.entropy)) >> 11) as f64 / (1u64 << 53) as f64;
        let next = cursor.after(seq, attempt, self.clock.now(), schedule, jitter);
        let outcome = match (attempt, next.disabled) {
            (WebhookAttempt::Delivered, _) => "delivered",
            (WebhookAttempt::Failed { .. }, false) => "failed",
            (WebhookAttempt::Failed { .. }, true) => "disabled",
        };
        metrics::counter!("tessera_webhook_deliveries_total", "endpoint" => endpoint.name.clone(), "outcome" => outcome)
            .increment(1);
        if next.disabled {
            tracing::warn!(
                endpoint = endpoint.name,
                failures = next.failures,
                "webhook endpoint disabled after failing"
            );
        }
        let logged = json!({
            "at": now.0,
            "attempt": cursor.failures + 1,
            "endpoint": endpoint.name,
            "error": error,
            "event_seq": seq,
            "next_attempt_at": (outcome == "failed").then_some(next.retry_at),
            "outcome": outcome,
            "status": status,
            "webhook_id": webhook_id(seq),
        });
        self.commit(&key, version, next, Some(logged.to_string())).await?;
        Ok(Stepped::Moved)
    }

    /// Up to [`SCAN`] audit entries after `after`: from this replica while it still holds
    /// them, else from the store.
    async fn entries_after(&self, after: u64) -> Result<Vec<Entry>, String> {
        let pending = self.cluster.stream_entries(audit::STREAM, after, SCAN);
        if pending.first().is_some_and(|e| e.seq == after + 1) {
            return Ok(pending.into_iter().map(Entry::from).collect());
        }
        let filter = Filter { after, limit: SCAN, ..Filter::default() };
        let (stored, _) = self.store.page(&filter).await.map_err(|e| e.to_string())?;
        Ok(stored)
    }

    /// Sends the event once; returns what came of it, the status and a short error.
    async fn attempt(
        &self,
        http: &reqwest::Client,
        endpoint: &WebhookSettings,
        seq: u64,
        record: &Value,
    ) -> (WebhookAttempt, Option<u16>, Option<String>) {
        let Some(key) = endpoint.key() else {
            return (WebhookAttempt::Failed { retry_after: None }, None, Some("the secret is not usable".into()));
        };
        let id = webhook_id(seq);
        let timestamp = self.clock.now().0 / 1_000;
        let body = payload(seq, record).to_string();
        let sent = http
            .post(&endpoint.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&key, &id, timestamp, &body))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                (WebhookAttempt::Delivered, Some(response.status().as_u16()), None)
            }
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let status = response.status();
                (WebhookAttempt::Failed { retry_after }, Some(status.as_u16()), Some(format!("answered {status}")))
            }
            Err(e) => {
                // reqwest's error names the URL; the delivery log keeps only the kind of failure.
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                let error: String = kind.chars().take(MAX_ERROR_CHARS).collect();
                (WebhookAttempt::Failed { retry_after: None }, None, Some(error))
            }
        }
    }

    /// Replaces the cursor at `version` (absent: creates it), with the delivery record.
    async fn commit(
        &self,
        key: &str,
        version: Option<u64>,
        cursor: WebhookCursor,
        logged: Option<String>,
    ) -> Result<(), String> {
        let mut write = Write { expect: vec![(key.to_string(), version)], ..Write::default() };
        write.puts.push((key.to_string(), Record::Webhook(cursor)));
        if let Some(text) = logged {
            write = write.append(DELIVERIES, text);
        }
        match self.replica.write(write).await.map_err(|e| e.to_string())? {
            WriteOutcome::Committed { .. } => Ok(()),
            WriteOutcome::Conflict { .. } => Err(format!("{key} changed meanwhile")),
        }
    }
}

/// The cursor of every configured endpoint, as this replica holds it.
pub fn cursors(replica: &dyn Replicator, endpoints: &[WebhookSettings]) -> Vec<(String, Option<WebhookCursor>)> {
    endpoints
        .iter()
        .map(|e| {
            let cursor = match replica.read(&keys::webhook(&e.name)) {
                Ok(Some((_, Record::Webhook(cursor)))) => Some(cursor),
                _ => None,
            };
            (e.name.clone(), cursor)
        })
        .collect()
}
