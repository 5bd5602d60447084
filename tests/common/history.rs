//! A record of every client operation in a fault scenario and its outcome, and the checks of
//! Tessera's invariants against that record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::generation_of;

/// What a client learned from one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx, with its JSON body (`Null` for an empty one).
    Ok(u16, Value),
    /// A definite answer that is not a success (4xx/5xx), or a connection that was refused (0):
    /// the request had no effect, or (for 5xx) an effect the client cannot rely on.
    Failed(u16),
    /// No answer (timeout, connection reset): the request may or may not have taken effect.
    Unknown,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Ok(..))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Ok(s, _) | Outcome::Failed(s) => Some(*s),
            Outcome::Unknown => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Op {
    pub kind: &'static str,
    pub node: u64,
    /// Which of the scenario's sessions (or accounts) the operation concerns.
    pub subject: usize,
    /// The refresh token presented, for refreshes.
    pub presented: Option<String>,
    pub outcome: Outcome,
    /// The body of a failed answer, or the error without one (for the failure message).
    pub detail: String,
    pub start: Instant,
    pub end: Instant,
}

/// The shared, append-only history of a scenario, plus the HTTP client that records into it.
#[derive(Clone)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
    pub http: reqwest::Client,
    pub urls: Arc<Vec<String>>,
    timeout: Duration,
}

impl History {
    /// `urls[i]` is node `i + 1`'s public base URL; requests time out after `timeout`.
    pub fn new(urls: Vec<String>, timeout: Duration) -> History {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        History { ops: Arc::default(), http, urls: Arc::new(urls), timeout }
    }

    pub fn url(&self, node: u64, path: &str) -> String {
        format!("{}{path}", self.urls[(node - 1) as usize])
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }

    /// The operations on `subject`, one line each (for failure messages).
    pub fn trace(&self, subject: usize) -> String {
        let ops = self.ops();
        let first = ops.first().map(|op| op.start);
        ops.iter()
            .filter(|op| op.subject == subject)
            .map(|op| {
                let at = first.map(|f| op.start - f).unwrap_or_default();
                let generation = op.presented.as_deref().map(generation_of);
                let next = match &op.outcome {
                    Outcome::Ok(_, body) => body["refresh_token"].as_str().map(generation_of),
                    _ => None,
                };
                format!(
                    "  +{:>6} ms {:>5} ms {} node {} gen {:?} -> {:?} {:?} {}\n",
                    at.as_millis(),
                    (op.end - op.start).as_millis(),
                    op.kind,
                    op.node,
                    generation,
                    next,
                    op.outcome.status(),
                    op.detail
                )
            })
            .collect()
    }

    /// Sends one request and records it.
    pub async fn call(
        &self,
        kind: &'static str,
        node: u64,
        subject: usize,
        request: reqwest::RequestBuilder,
        presented: Option<String>,
    ) -> Outcome {
        let start = Instant::now();
        let (outcome, detail) = match request.timeout(self.timeout).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let ok = response.status().is_success();
                let body = response.bytes().await.unwrap_or_default();
                if ok {
                    (Outcome::Ok(status, serde_json::from_slice(&body).unwrap_or(Value::Null)), String::new())
                } else {
                    (Outcome::Failed(status), String::from_utf8_lossy(&body).chars().take(300).collect())
                }
            }
            Err(e) if e.is_connect() => (Outcome::Failed(0), e.to_string()),
            Err(e) => (Outcome::Unknown, e.to_string()),
        };
        let op = Op { kind, node, subject, presented, outcome: outcome.clone(), detail, start, end: Instant::now() };
        self.ops.lock().push(op);
        outcome
    }

    pub async fn refresh(&self, node: u64, subject: usize, token: &str) -> Outcome {
        let request = self.http.post(self.url(node, "/v1/token/refresh")).json(&json!({ "refresh_token": token }));
        self.call("refresh", node, subject, request, Some(token.to_string())).await
    }

    pub async fn logout(&self, node: u64, subject: usize, access: &str) -> Outcome {
        let request = self.http.post(self.url(node, "/v1/logout")).bearer_auth(access);
        self.call("logout", node, subject, request, None).await
    }

    pub async fn login(&self, node: u64, subject: usize, email: &str, password: &str) -> Outcome {
        let request =
            self.http.post(self.url(node, "/v1/login")).json(&json!({ "email": email, "password": password }));
        self.call("login", node, subject, request, None).await
    }

    pub async fn register(&self, node: u64, subject: usize, email: &str, password: &str) -> Outcome {
        let request =
            self.http.post(self.url(node, "/v1/users")).json(&json!({ "email": email, "password": password }));
        self.call("register", node, subject, request, None).await
    }

    pub async fn verify(&self, node: u64, subject: usize, access: &str, strong: bool) -> Outcome {
        let path = if strong { "/v1/verify?consistency=strong" } else { "/v1/verify" };
        let request = self.http.get(self.url(node, path)).bearer_auth(access);
        self.call("verify", node, subject, request, None).await
    }

    /// Retries `attempt` (over the nodes in turn) until it succeeds or `limit` passes.
    pub async fn until_ok<F, Fut>(&self, limit: Duration, mut attempt: F) -> Value
    where
        F: FnMut(u64) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        let started = Instant::now();
        let mut node = 0;
        loop {
            node = node % self.urls.len() as u64 + 1;
            let outcome = attempt(node).await;
            if let Outcome::Ok(_, body) = outcome {
                return body;
            }
            assert!(started.elapsed() < limit, "no success within {limit:?}; last: {outcome:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Invariant 1: no refresh token ever had two distinct successors, and no family two
    /// distinct tokens for one generation.
    pub fn assert_one_successor(&self) -> usize {
        let ops = self.ops();
        let mut successors: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut generations: BTreeMap<(usize, u64), BTreeSet<String>> = BTreeMap::new();
        for op in ops.iter().filter(|op| op.kind == "refresh") {
            if let (Some(presented), Outcome::Ok(_, body)) = (&op.presented, &op.outcome) {
                let successor = body["refresh_token"].as_str().expect("a refresh answer carries a token").to_string();
                assert_eq!(generation_of(&successor), generation_of(presented) + 1, "successor skips a generation");
                generations.entry((op.subject, generation_of(&successor))).or_default().insert(successor.clone());
                successors.entry(presented.as_str()).or_default().insert(successor);
            }
        }
        for (presented, set) in &successors {
            assert_eq!(set.len(), 1, "refresh token {presented} has {} distinct successors: {set:?}", set.len());
        }
        for ((subject, generation), set) in &generations {
            assert_eq!(set.len(), 1, "session {subject} has {} tokens for generation {generation}", set.len());
        }
        successors.len()
    }

    /// Counts of outcomes by kind: (ok, failed, unknown).
    pub fn tally(&self, kind: &str) -> (usize, usize, usize) {
        let ops = self.ops();
        let of_kind = ops.iter().filter(|op| op.kind == kind);
        of_kind.fold((0, 0, 0), |(ok, failed, unknown), op| match op.outcome {
            Outcome::Ok(..) => (ok + 1, failed, unknown),
            Outcome::Failed(_) => (ok, failed + 1, unknown),
            Outcome::Unknown => (ok, failed, unknown + 1),
        })
    }

    /// The first write (refresh, login, logout, register) started after `after` that
    /// succeeded: how long after `after` it completed.
    pub fn first_write_after(&self, after: Instant) -> Option<Duration> {
        self.ops()
            .iter()
            .filter(|op| matches!(op.kind, "refresh" | "login" | "logout" | "register"))
            .filter(|op| op.start >= after && op.outcome.ok())
            .map(|op| op.end - after)
            .min()
    }
}

impl History {
    /// Every event of the audit trail, read through `node`'s admin query.
    pub async fn audit_events(&self, node: u64, admin: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = String::new();
        loop {
            let url = self.url(node, &format!("/v1/admin/audit?limit=100{after}"));
            let page: Value = self.http.get(url).bearer_auth(admin).send().await.unwrap().json().await.unwrap();
            events.extend(page["events"].as_array().expect("an audit page").iter().cloned());
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return events,
            }
        }
    }

    /// Invariant 9 against the record: every acknowledged registration and login has its
    /// events exactly once, no event is recorded twice, and events without an acknowledgement
    /// come only from requests whose outcome the client never learned. Returns the number of
    /// events checked.
    pub async fn assert_audit_exactly_once(&self, node: u64, admin: &str) -> usize {
        let events = self.audit_events(node, admin).await;
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "the trail has gaps: {seqs:?}");
        let ops = self.ops();
        let unsure = |kind: &str| {
            ops.iter()
                .filter(|op| op.kind == kind && matches!(op.outcome, Outcome::Unknown | Outcome::Failed(500..)))
                .count()
        };
        let acknowledged = |kind: &str, field: &str| -> BTreeSet<String> {
            ops.iter()
                .filter(|op| op.kind == kind)
                .filter_map(|op| match &op.outcome {
                    Outcome::Ok(_, body) => body[field].as_str().map(str::to_string),
                    _ => None,
                })
                .collect()
        };
        let recorded = |action: &str, field: &str| -> Vec<String> {
            events.iter().filter(|e| e["action"] == action).map(|e| e[field].as_str().unwrap().to_string()).collect()
        };
        let checks = [
            ("user.registered", "user_id", "register", "user_id"),
            ("login.succeeded", "resource_id", "login", "session_id"),
            ("session.created", "resource_id", "login", "session_id"),
        ];
        for (action, field, kind, reply_field) in checks {
            let recorded = recorded(action, field);
            let distinct: BTreeSet<String> = recorded.iter().cloned().collect();
            assert_eq!(distinct.len(), recorded.len(), "{action} recorded twice for the same {field}");
            let acked = acknowledged(kind, reply_field);
            let missing: Vec<&String> = acked.difference(&distinct).collect();
            assert!(missing.is_empty(), "acknowledged {kind}s without {action}: {missing:?}");
            assert!(distinct.len() <= acked.len() + unsure(kind), "{action} events for {kind}s that were refused");
        }
        let revoked = recorded("session.revoked", "resource_id");
        let distinct: BTreeSet<&String> = revoked.iter().collect();
        assert_eq!(distinct.len(), revoked.len(), "a session revoked twice");
        events.len()
    }
}
