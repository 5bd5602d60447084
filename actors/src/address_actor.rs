//! The `Address` actor: one per email address that a request names without an account behind
//! it (yet), on the leader.
//!
//! - It stands in for an account that does not exist: it answers [`RequestPermit`] and
//!   [`ReportGuess`] like an `Identity` actor — same rules, same mailbox hop, one replicated
//!   round trip per message (the audit record of a refusal or a failure, where an account's
//!   guard write would carry one; a compare that never holds for a granted permit) — so neither
//!   answers nor timing tell whether an account exists. Its guard lives in the registry's bounded [`UnknownLogins`]
//!   map, not in the actor, so passivating the actor never shortens a lock.
//! - It serializes registrations of its address ([`Register`]): the rule decides from the
//!   address's index entry whether it is taken, and the identity is created with a
//!   compare-and-set that expects the entry absent.
//!
//! Operation: [`Register`].

use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::commit::{self, Held, Step, audited, decide_and_commit, record_events};
use crate::context::ActorContext;
use crate::domain::login::{self, RegisterDecision};
use crate::domain::{Email, PermitVerdict, UserId};
use crate::identity_actor::{ReportGuess, RequestPermit, wait};
use crate::operation::Operation;
use crate::ports::{Write, WriteOutcome, random};
use crate::protocol::{ActorError, LoginStart, LoginSubject, RegisterOutcome};
use crate::queries;
use crate::record::{Record, keys};
use crate::refusals::{Refusals, Refusing, refuse};
use crate::service::Domain;
use crate::unknown::UnknownLogins;

pub struct Address {
    email: Email,
    guards: Arc<UnknownLogins>,
    cx: Arc<ActorContext>,
    refusals: Refusals,
}

impl Refusing for Address {
    fn refusals(&mut self) -> &mut Refusals {
        &mut self.refusals
    }

    fn actor_context(&self) -> &Arc<ActorContext> {
        &self.cx
    }
}

impl Actor for Address {
    type Context = Context<Self>;
}

impl Address {
    pub(crate) fn new(email: Email, guards: Arc<UnknownLogins>, cx: Arc<ActorContext>) -> Address {
        Address { email, guards, cx, refusals: Refusals::default() }
    }
}

/// One replicated round trip that changes nothing: where an account's guard is written
/// through Raft, this takes its place.
async fn pace(cx: &ActorContext) -> Result<(), ActorError> {
    match cx.replicator.write(Write::default().expect(keys::PACE, Some(0))).await? {
        WriteOutcome::Conflict { .. } | WriteOutcome::Committed { .. } => Ok(()),
    }
}

impl Handler<RequestPermit> for Address {
    type Result = AtomicResponse<Self, Result<LoginStart, ActorError>>;

    fn handle(&mut self, msg: RequestPermit, ctx: &mut Context<Self>) -> Self::Result {
        let (cx, guards, email) = (Arc::clone(&self.cx), Arc::clone(&self.guards), self.email.clone());
        let now = cx.clock.now();
        match guards.request_permit(&email, now, &cx.lockout) {
            PermitVerdict::Granted { permit, .. } => AtomicResponse::new(Box::pin(
                async move {
                    pace(&cx).await?;
                    Ok(LoginStart::Permit {
                        subject: LoginSubject::Unknown(email),
                        permit,
                        password_hash: None,
                        credential_version: 0,
                    })
                }
                .into_actor(self),
            )),
            refused @ (PermitVerdict::Throttled { .. } | PermitVerdict::Locked { .. }) => {
                let event = login::refusal_event(None, Some(&email), &refused).expect("a refusal has an event");
                let reply = wait(&refused, now, &cx);
                refuse(self, ctx, event, msg.origin, now, reply)
            }
        }
    }
}

impl Handler<ReportGuess> for Address {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: ReportGuess, _: &mut Context<Self>) -> Self::Result {
        let (cx, guards, email) = (Arc::clone(&self.cx), Arc::clone(&self.guards), self.email.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let now = cx.clock.now();
                guards.report(&email, msg.permit, msg.attempt, now, &cx.lockout);
                match login::unknown_account_events(&email, msg.attempt).as_slice() {
                    [] => pace(&cx).await,
                    events => record_events(&cx, now, &msg.origin, events).await,
                }
            }
            .into_actor(self),
        ))
    }
}

/// The address's index entry: whose it is, at which version (`None`: absent).
#[derive(Clone)]
struct Entry {
    email: Email,
    holder: Option<UserId>,
    version: Option<u64>,
}

impl Entry {
    fn load(cx: &ActorContext, email: &Email) -> Result<Entry, ActorError> {
        let found = queries::email_entry(&*cx.replicator, email)?;
        Ok(Entry {
            email: email.clone(),
            holder: found.map(|(_, user)| user),
            version: found.map(|(version, _)| version),
        })
    }
}

impl Held for Entry {
    fn reload(&self, cx: &ActorContext) -> Result<Option<Entry>, ActorError> {
        Entry::load(cx, &self.email).map(Some)
    }

    fn replace(&self, next: &Entry) -> Write {
        let key = keys::email(&self.email);
        let write = Write::default().expect(key.clone(), self.version);
        match next.holder {
            Some(user) => write.put(key, Record::EmailIndex(user)),
            None => write.delete(key),
        }
    }

    fn committed(&self, next: Entry, version: u64) -> Entry {
        Entry { version: Some(version), ..next }
    }
}

/// Operation (and message): create an account for `email`.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<RegisterOutcome, ActorError>")]
pub struct Register {
    pub user: UserId,
    pub email: Email,
    pub password_hash: String,
    pub origin: Origin,
}

impl Operation for Register {
    type Reply = RegisterOutcome;

    async fn run(self, domain: &Domain) -> Result<RegisterOutcome, ActorError> {
        domain.registry().address(&self.email).await?.send(self).await?
    }
}

impl Handler<Register> for Address {
    type Result = AtomicResponse<Self, Result<RegisterOutcome, ActorError>>;

    /// One write: the address's index entry, the identity, and the key that will seal the new
    /// user's personal data in the audit trail (the registration's own record included).
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let cx = Arc::clone(&self.cx);
        let pii_key: [u8; 32] = random(&*cx.entropy);
        AtomicResponse::new(Box::pin(
            async move {
                let now = cx.clock.now();
                let entry = Entry::load(&cx, &msg.email)?;
                let mut recorded = Vec::new();
                let decide = |entry: &Entry| {
                    Ok(match login::register(entry.holder, msg.user, &msg.email, &msg.password_hash, now) {
                        RegisterDecision::Create { identity, events } => {
                            let (user, pii) = (keys::user(msg.user), keys::pii(msg.user));
                            let created = Write::default()
                                .expect(user.clone(), None)
                                .put(user, Record::Identity(identity))
                                .expect(pii.clone(), None)
                                .put(pii, Record::PiiKey(pii_key));
                            let created = audited(&cx, now, &msg.origin, &events, created, Some(pii_key))?;
                            recorded = events;
                            let next = Entry { holder: Some(msg.user), ..entry.clone() };
                            Step::commit(next, RegisterOutcome::Registered).also(created)
                        }
                        RegisterDecision::Taken => Step::reply(RegisterOutcome::EmailTaken),
                    })
                };
                let (_, outcome) =
                    decide_and_commit(&cx, now, &msg.origin, entry, decide, || Ok(RegisterOutcome::EmailTaken)).await;
                if outcome == Ok(RegisterOutcome::Registered) {
                    commit::log(&recorded);
                }
                outcome
            }
            .into_actor(self),
        ))
    }
}
