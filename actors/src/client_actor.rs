//! The `ClientAddr` actor: one per client network (IPv4 /24, IPv6 /64) on the leader.
//!
//! It counts failed logins across all accounts (credential stuffing) and registration
//! attempts, in sliding windows. Because every login and registration is decided on the
//! leader, the limits hold for the whole cluster, not per node. The counts live in memory on
//! the leader: a leadership change starts them afresh (account lockouts, which are
//! replicated, are unaffected).

use std::sync::Arc;

use actix::prelude::*;

use crate::context::ActorContext;
use crate::domain::{SlidingWindow, WindowVerdict};
use crate::identity_actor::retry_secs;
use crate::protocol::Admission;

pub struct ClientAddr {
    failures: SlidingWindow,
    registrations: SlidingWindow,
    cx: Arc<ActorContext>,
}

impl Actor for ClientAddr {
    type Context = Context<Self>;
}

impl ClientAddr {
    pub fn new(cx: Arc<ActorContext>) -> ClientAddr {
        ClientAddr { failures: SlidingWindow::default(), registrations: SlidingWindow::default(), cx }
    }
}

fn admission(verdict: WindowVerdict) -> Admission {
    match verdict {
        WindowVerdict::Allowed => Admission::Allowed,
        WindowVerdict::Throttled { retry_after } => Admission::Throttled { retry_after_secs: retry_secs(retry_after) },
    }
}

/// May this network attempt a login now?
#[derive(Message)]
#[rtype(result = "Admission")]
pub struct CheckLogin;

/// A login from this network failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordLoginFailure;

/// May this network attempt a registration now? (An admitted attempt counts.)
#[derive(Message)]
#[rtype(result = "Admission")]
pub struct AdmitRegistration;

impl Handler<CheckLogin> for ClientAddr {
    type Result = MessageResult<CheckLogin>;

    fn handle(&mut self, _: CheckLogin, _: &mut Context<Self>) -> Self::Result {
        let now = self.cx.clock.now();
        MessageResult(admission(self.failures.check(now, &self.cx.throttle.login_failures)))
    }
}

impl Handler<RecordLoginFailure> for ClientAddr {
    type Result = ();

    fn handle(&mut self, _: RecordLoginFailure, _: &mut Context<Self>) {
        let now = self.cx.clock.now();
        self.failures.record(now, &self.cx.throttle.login_failures);
    }
}

impl Handler<AdmitRegistration> for ClientAddr {
    type Result = MessageResult<AdmitRegistration>;

    fn handle(&mut self, _: AdmitRegistration, _: &mut Context<Self>) -> Self::Result {
        let now = self.cx.clock.now();
        let policy = self.cx.throttle.registrations;
        let verdict = self.registrations.check(now, &policy);
        if verdict == WindowVerdict::Allowed {
            self.registrations.record(now, &policy);
        }
        MessageResult(admission(verdict))
    }
}
