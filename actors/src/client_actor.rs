//! The `ClientAddr` actor: one per client network (IPv4 /24, IPv6 /64) on the leader.
//!
//! It counts failed logins across all accounts (credential stuffing) and registration
//! attempts, in sliding windows. Because every login and registration is decided on the
//! leader, the limits hold for the whole cluster, not per node. The counts live in memory on
//! the leader: a leadership change starts them afresh (account lockouts, which are
//! replicated, are unaffected).

use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::context::ActorContext;
use crate::domain::{Event, IpPrefix, SlidingWindow, WindowVerdict, whole_seconds};
use crate::operation::Operation;
use crate::protocol::{ActorError, Admission};
use crate::refusals::{Refusals, Refusing, refuse};
use crate::service::Domain;

pub struct ClientAddr {
    failures: SlidingWindow,
    registrations: SlidingWindow,
    cx: Arc<ActorContext>,
    refusals: Refusals,
}

impl Refusing for ClientAddr {
    fn refusals(&mut self) -> &mut Refusals {
        &mut self.refusals
    }

    fn actor_context(&self) -> &Arc<ActorContext> {
        &self.cx
    }
}

impl Actor for ClientAddr {
    type Context = Context<Self>;
}

impl ClientAddr {
    pub fn new(cx: Arc<ActorContext>) -> ClientAddr {
        ClientAddr {
            failures: SlidingWindow::default(),
            registrations: SlidingWindow::default(),
            cx,
            refusals: Refusals::default(),
        }
    }
}

fn admission(verdict: WindowVerdict) -> Admission {
    match verdict {
        WindowVerdict::Allowed => Admission::Allowed,
        WindowVerdict::Throttled { retry_after } => {
            Admission::Throttled { retry_after_secs: whole_seconds(retry_after) }
        }
    }
}

/// May this network attempt a login now?
/// Message: may this network try a password now? `refusal` is the event to record if not.
#[derive(Message)]
#[rtype(result = "Result<Admission, ActorError>")]
pub struct CheckLogin {
    pub refusal: Event,
    pub origin: Origin,
}

/// A login from this network failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordLoginFailure;

/// May this network attempt a registration now? (An admitted attempt counts.)
#[derive(Message)]
#[rtype(result = "Admission")]
pub struct RegistrationAttempt;

/// Operation: count a registration attempt from `ip` against its network's limit.
#[derive(Serialize, Deserialize)]
pub struct AdmitRegistration {
    pub ip: Option<IpPrefix>,
}

impl Operation for AdmitRegistration {
    type Reply = Admission;

    async fn run(self, domain: &Domain) -> Result<Admission, ActorError> {
        match domain.limited(self.ip) {
            Some(prefix) => Ok(domain.registry().client(prefix).await?.send(RegistrationAttempt).await?),
            None => Ok(Admission::Allowed),
        }
    }
}

/// Counts a failed login against the client network, if limits apply to it.
pub(crate) async fn record_network_failure(domain: &Domain, ip: Option<IpPrefix>) -> Result<(), ActorError> {
    if let Some(prefix) = domain.limited(ip) {
        domain.registry().client(prefix).await?.send(RecordLoginFailure).await?;
    }
    Ok(())
}

impl Handler<CheckLogin> for ClientAddr {
    type Result = AtomicResponse<Self, Result<Admission, ActorError>>;

    fn handle(&mut self, msg: CheckLogin, ctx: &mut Context<Self>) -> Self::Result {
        let now = self.cx.clock.now();
        match admission(self.failures.check(now, &self.cx.throttle.login_failures)) {
            Admission::Allowed => AtomicResponse::new(Box::pin(fut::ready(Ok(Admission::Allowed)))),
            throttled @ Admission::Throttled { .. } => refuse(self, ctx, msg.refusal, msg.origin, now, throttled),
        }
    }
}

impl Handler<RecordLoginFailure> for ClientAddr {
    type Result = ();

    fn handle(&mut self, _: RecordLoginFailure, _: &mut Context<Self>) {
        let now = self.cx.clock.now();
        self.failures.record(now, &self.cx.throttle.login_failures);
    }
}

impl Handler<RegistrationAttempt> for ClientAddr {
    type Result = MessageResult<RegistrationAttempt>;

    fn handle(&mut self, _: RegistrationAttempt, _: &mut Context<Self>) -> Self::Result {
        let now = self.cx.clock.now();
        let policy = self.cx.throttle.registrations;
        let verdict = self.registrations.check(now, &policy);
        if verdict == WindowVerdict::Allowed {
            self.registrations.record(now, &policy);
        }
        MessageResult(admission(verdict))
    }
}
