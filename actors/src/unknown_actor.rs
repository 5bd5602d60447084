//! The `UnknownLogin` actor: the stand-in for an account that does not exist.
//!
//! It answers `RequestPermit` and `FailLogin` like an `Identity` actor — same rules, same
//! mailbox hop, one replicated round trip per message (a compare that never holds) — so
//! neither answers nor timing tell whether an account exists. Its guard lives in the
//! registry's bounded [`UnknownLogins`] map, not in the actor, so passivating the actor never
//! shortens a lock.

use std::sync::Arc;

use actix::prelude::*;

use crate::context::ActorContext;
use crate::domain::{Email, PermitVerdict};
use crate::identity_actor::{FailLogin, RequestPermit, wait_for};
use crate::ports::{Write, WriteOutcome};
use crate::protocol::{ActorError, LoginStart, LoginSubject};
use crate::record::keys;
use crate::unknown::UnknownLogins;

pub struct UnknownLogin {
    email: Email,
    guards: Arc<UnknownLogins>,
    cx: Arc<ActorContext>,
}

impl Actor for UnknownLogin {
    type Context = Context<Self>;
}

impl UnknownLogin {
    pub fn new(email: Email, guards: Arc<UnknownLogins>, cx: Arc<ActorContext>) -> UnknownLogin {
        UnknownLogin { email, guards, cx }
    }
}

/// One replicated round trip that changes nothing: where an account's guard is written
/// through Raft, this takes its place.
async fn pace(cx: &ActorContext) -> Result<(), ActorError> {
    match cx.replicator.write(Write::default().expect(keys::PACE, Some(0))).await? {
        WriteOutcome::Conflict { .. } | WriteOutcome::Committed { .. } => Ok(()),
    }
}

impl Handler<RequestPermit> for UnknownLogin {
    type Result = AtomicResponse<Self, Result<LoginStart, ActorError>>;

    fn handle(&mut self, _: RequestPermit, _: &mut Context<Self>) -> Self::Result {
        let (cx, guards, email) = (Arc::clone(&self.cx), Arc::clone(&self.guards), self.email.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let now = cx.clock.now();
                let verdict = guards.request_permit(&email, now, &cx.lockout);
                if let Some(wait) = wait_for(&verdict, now, &cx) {
                    return Ok(wait);
                }
                let PermitVerdict::Granted { permit, .. } = verdict else { unreachable!("handled above") };
                pace(&cx).await?;
                Ok(LoginStart::Permit {
                    subject: LoginSubject::Unknown(email),
                    permit,
                    password_hash: None,
                    credential_version: 0,
                })
            }
            .into_actor(self),
        ))
    }
}

impl Handler<FailLogin> for UnknownLogin {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: FailLogin, _: &mut Context<Self>) -> Self::Result {
        let (cx, guards, email) = (Arc::clone(&self.cx), Arc::clone(&self.guards), self.email.clone());
        AtomicResponse::new(Box::pin(
            async move {
                guards.report(&email, msg.permit, msg.attempt, cx.clock.now(), &cx.lockout);
                pace(&cx).await
            }
            .into_actor(self),
        ))
    }
}
