//! What each virtual user does, per scenario.

use std::sync::Arc;
use std::time::Instant;

use hyper::Method;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Call, Conn, Target};
use crate::report::{Outcome, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Hot access tokens, alternating GET and HEAD /v1/verify.
    Verify,
    /// Each virtual user rotates its own refresh-token chain.
    Refresh,
    /// Logins of pre-registered users (Argon2id-bound).
    Login,
    /// Verify, refresh, login and logout in configurable proportions.
    Mixed,
    /// K concurrent refreshes of one token, repeated; all answers must carry one successor.
    Race,
    /// A wrong-password storm against one account.
    Lockout,
    /// `GET /healthz`: the HTTP ceiling of the same server, middleware and all.
    Trivial,
    /// RFC 7662 introspection of hot access tokens by a resource-server client (needs
    /// `--admin-token` to register the client).
    Introspect,
}

/// Mixed-scenario weights, in percent.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub verify: u32,
    pub refresh: u32,
    pub login: u32,
    pub logout: u32,
}

impl Mix {
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let parts: Vec<u32> = text.split(',').map(|p| p.trim().parse()).collect::<Result<_, _>>()?;
        let [verify, refresh, login, logout] = parts[..] else {
            anyhow::bail!("--mix takes four weights: verify,refresh,login,logout");
        };
        anyhow::ensure!(verify + refresh + login + logout > 0, "--mix weights must not all be zero");
        Ok(Mix { verify, refresh, login, logout })
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

pub fn login_call(email: &str, password: &str) -> Call {
    Call::post_json("/v1/login", &json!({ "email": email, "password": password }))
}

fn refresh_call(token: &str) -> Call {
    Call::post_json("/v1/token/refresh", &json!({ "refresh_token": token }))
}

/// What all virtual users share.
pub struct Plan {
    pub scenario: Scenario,
    pub mix: Mix,
    /// Login requests of the seeded accounts, prepared once.
    pub logins: Vec<Call>,
    pub wrong_password: Call,
    /// Basic credentials (base64 of `client_id:client_secret`) of the introspecting client.
    pub client: Option<String>,
}

pub struct VirtualUser {
    pub id: usize,
    conns: Vec<Conn>,
    session: Option<Session>,
    account: usize,
    steps: u64,
    rng: StdRng,
    plan: Arc<Plan>,
}

fn transport(e: anyhow::Error) -> Outcome {
    let text = e.to_string();
    let kind = if text.contains("refused") {
        "connection refused"
    } else if text.contains("reset") {
        "connection reset"
    } else if text.contains("closed") {
        "connection closed"
    } else {
        "transport"
    };
    Outcome::Transport(kind.to_string())
}

impl VirtualUser {
    pub fn new(id: usize, targets: &[Target], plan: Arc<Plan>, session: Option<Session>, race_k: usize) -> VirtualUser {
        let connections = if plan.scenario == Scenario::Race { race_k } else { 1 };
        // Round-robin across nodes: user i talks to node i (and its race peers to the next ones).
        let conns = (0..connections)
            .map(|c| Conn::new(targets[(id + c) % targets.len()].clone(), "tessera-loadtest"))
            .collect();
        let account = id % plan.logins.len().max(1);
        VirtualUser { id, conns, session, account, steps: 0, rng: rand::SeedableRng::seed_from_u64(id as u64), plan }
    }

    async fn login(&mut self, recorder: &mut Recorder, due: Instant) -> bool {
        let call = self.plan.logins[self.account].clone();
        // The login scenario spreads over every account; the others keep one account per user,
        // so no user's sessions are evicted by another's logins (the per-user session cap).
        if self.plan.scenario == Scenario::Login {
            self.account = (self.account + 1) % self.plan.logins.len();
        }
        match self.conns[0].send(&call).await {
            Ok((status, body)) if status == 200 => match serde_json::from_slice::<Tokens>(&body) {
                Ok(t) => {
                    self.session = Some(Session { access: t.access_token, refresh: t.refresh_token });
                    recorder.record(due, Outcome::Ok);
                    true
                }
                Err(e) => {
                    recorder.record(due, Outcome::Transport(format!("bad login body: {e}")));
                    false
                }
            },
            Ok((status, _)) => {
                recorder.record(due, Outcome::Status(status.as_u16()));
                false
            }
            Err(e) => {
                recorder.record(due, transport(e));
                false
            }
        }
    }

    async fn verify(&mut self, recorder: &mut Recorder, due: Instant) {
        let Some(session) = &self.session else { return };
        let method = if self.steps.is_multiple_of(2) { Method::GET } else { Method::HEAD };
        let call = Call::with_bearer(method, "/v1/verify", &session.access);
        let outcome = match self.conns[0].send(&call).await {
            Ok((status, _)) if status == 200 || status == 204 => Outcome::Ok,
            Ok((status, _)) => Outcome::Status(status.as_u16()),
            Err(e) => transport(e),
        };
        recorder.record(due, outcome);
    }

    async fn introspect(&mut self, recorder: &mut Recorder, due: Instant) {
        let (Some(session), Some(client)) = (&self.session, &self.plan.client) else { return };
        let call = Call::post_form("/v1/introspect", client, format!("token={}", session.access));
        let outcome = match self.conns[0].send(&call).await {
            Ok((status, body)) if status == 200 && body.starts_with(br#"{"active":true"#) => Outcome::Ok,
            Ok((status, _)) if status == 200 => Outcome::Violation(format!("user {}: a live token inactive", self.id)),
            Ok((status, _)) => Outcome::Status(status.as_u16()),
            Err(e) => transport(e),
        };
        recorder.record(due, outcome);
    }

    async fn refresh(&mut self, recorder: &mut Recorder, due: Instant) {
        let Some(session) = &self.session else { return };
        let call = refresh_call(&session.refresh);
        let outcome = match self.conns[0].send(&call).await {
            Ok((status, body)) if status == 200 => match serde_json::from_slice::<Tokens>(&body) {
                Ok(t) => {
                    self.session = Some(Session { access: t.access_token, refresh: t.refresh_token });
                    Outcome::Ok
                }
                Err(e) => Outcome::Transport(format!("bad refresh body: {e}")),
            },
            Ok((status, _)) => {
                if status == 401 {
                    // The chain is gone (expired or revoked): start a new session next time.
                    self.session = None;
                }
                Outcome::Status(status.as_u16())
            }
            Err(e) => transport(e),
        };
        recorder.record(due, outcome);
    }

    async fn logout(&mut self, recorder: &mut Recorder, due: Instant) {
        let Some(session) = self.session.take() else { return };
        let call = Call::with_bearer(Method::POST, "/v1/logout", &session.access);
        let outcome = match self.conns[0].send(&call).await {
            Ok((status, _)) if status == 204 => Outcome::Ok,
            Ok((status, _)) => Outcome::Status(status.as_u16()),
            Err(e) => transport(e),
        };
        recorder.record(due, outcome);
    }

    /// K concurrent refreshes of the current token on K connections; one successor expected.
    async fn race(&mut self, recorder: &mut Recorder, due: Instant) {
        let Some(session) = self.session.clone() else {
            self.login(recorder, due).await;
            return;
        };
        let call = refresh_call(&session.refresh);
        let answers = futures::future::join_all(self.conns.iter_mut().map(|conn| conn.send(&call))).await;
        let mut successors: Vec<Session> = Vec::new();
        for answer in answers {
            let outcome = match answer {
                Ok((status, body)) if status == 200 => match serde_json::from_slice::<Tokens>(&body) {
                    Ok(t) => {
                        successors.push(Session { access: t.access_token, refresh: t.refresh_token });
                        Outcome::Ok
                    }
                    Err(e) => Outcome::Transport(format!("bad refresh body: {e}")),
                },
                Ok((status, _)) => Outcome::Status(status.as_u16()),
                Err(e) => transport(e),
            };
            recorder.record(due, outcome);
        }
        let mut distinct: Vec<&str> = successors.iter().map(|s| s.refresh.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            recorder.record(
                due,
                Outcome::Violation(format!("user {}: {} distinct successors of one token", self.id, distinct.len())),
            );
        }
        self.session = successors.into_iter().next();
    }

    async fn trivial(&mut self, recorder: &mut Recorder, due: Instant) {
        let call = Call::get("/healthz");
        let outcome = match self.conns[0].send(&call).await {
            Ok((status, _)) if status == 200 => Outcome::Ok,
            Ok((status, _)) => Outcome::Status(status.as_u16()),
            Err(e) => transport(e),
        };
        recorder.record(due, outcome);
    }

    async fn wrong_password(&mut self, recorder: &mut Recorder, due: Instant) {
        let outcome = match self.conns[0].send(&self.plan.wrong_password).await {
            Ok((status, _)) if status == 401 || status == 429 => Outcome::Ok,
            Ok((status, _)) => Outcome::Status(status.as_u16()),
            Err(e) => transport(e),
        };
        recorder.record(due, outcome);
    }

    /// One step of this user's scenario.
    pub async fn step(&mut self, recorder: &mut Recorder, due: Instant) {
        self.steps += 1;
        match self.plan.scenario {
            Scenario::Verify => self.verify(recorder, due).await,
            Scenario::Refresh => {
                if self.session.is_none() {
                    self.login(recorder, due).await;
                } else {
                    self.refresh(recorder, due).await;
                }
            }
            Scenario::Login => {
                self.login(recorder, due).await;
            }
            Scenario::Race => self.race(recorder, due).await,
            Scenario::Lockout => self.wrong_password(recorder, due).await,
            Scenario::Trivial => self.trivial(recorder, due).await,
            Scenario::Introspect => self.introspect(recorder, due).await,
            Scenario::Mixed => {
                if self.session.is_none() {
                    self.login(recorder, due).await;
                    return;
                }
                let m = self.plan.mix;
                let roll = self.rng.gen_range(0..m.verify + m.refresh + m.login + m.logout);
                if roll < m.verify {
                    self.verify(recorder, due).await;
                } else if roll < m.verify + m.refresh {
                    self.refresh(recorder, due).await;
                } else if roll < m.verify + m.refresh + m.login {
                    self.login(recorder, due).await;
                } else {
                    self.logout(recorder, due).await;
                }
            }
        }
    }
}
