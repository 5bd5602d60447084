//! The identity actor's second-factor operations: enrolment, its confirmation, new recovery
//! codes, disabling, the second half of a login, and re-authentication (step-up).
//!
//! Each is decided by a rule in `domain::mfa` or `domain::login` over the account as held and
//! committed in one compare-and-set write of the account's keys ([`Shell::decide`]); a code is
//! checked and its step consumed in the same write, so it opens at most one session.
//!
//! Operations: [`StartTotp`], [`ConfirmTotp`], [`RegenerateRecoveryCodes`], [`DisableTotp`],
//! [`PassSecondFactor`], [`Reauthenticate`].

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::client_actor::record_network_failure;
use crate::commit::{Shell, Step};
use crate::context::ActorContext;
use crate::domain::login::{self, Presented};
use crate::domain::{
    FamilyId, Generation, NewSession, PermitVerdict, Proof, ReauthDecision, Reproof, Sealed, SecondFactorDecision,
    UserId,
};
use crate::family_actor::grant;
use crate::identity_actor::{Account, IdentityActor, gone, opened, password_opening, rewrite, to_identity, views};
use crate::operation::Operation;
use crate::ports::{Write, random};
use crate::protocol::{
    ActorError, ClientContext, ConfirmOutcome, EnrolOutcome, MfaChange, ReauthOutcome, SecondFactorOutcome,
};
use crate::queries::live_families;
use crate::refusals::refuse;
use crate::service::Domain;

/// A factor's secret, opened with the cluster's factor key; one that does not open means the
/// replica or the key-encryption key is wrong.
fn open_secret(cx: &ActorContext, user: UserId, factor: [u8; 16], sealed: &Sealed) -> Result<Vec<u8>, ActorError> {
    cx.factors
        .open(user, factor, sealed)
        .ok_or_else(|| ActorError::Corrupt(format!("mfa/{user}: a secret does not open")))
}

/// The enrolled factor's secret, if there is one.
fn enrolled_secret(cx: &ActorContext, account: &Account) -> Result<Option<Vec<u8>>, ActorError> {
    account.mfa.totp.as_ref().map(|totp| open_secret(cx, account.user, totp.id, &totp.secret)).transpose()
}

/// Operation (and message): start a TOTP enrolment with a secret the edge drew and sealed.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<EnrolOutcome, ActorError>")]
pub struct StartTotp {
    pub user: UserId,
    pub factor: [u8; 16],
    pub secret: Sealed,
    pub origin: Origin,
}

impl Operation for StartTotp {
    type Reply = EnrolOutcome;

    async fn run(self, domain: &Domain) -> Result<EnrolOutcome, ActorError> {
        to_identity(domain, self.user, self, EnrolOutcome::AlreadyEnrolled).await
    }
}

impl Handler<StartTotp> for IdentityActor {
    type Result = AtomicResponse<Self, Result<EnrolOutcome, ActorError>>;

    fn handle(&mut self, msg: StartTotp, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, now, _| {
                Ok(match account.mfa.begin_enrolment(msg.factor, msg.secret.clone(), now) {
                    Some(mfa) => Step::commit(account.with_mfa(mfa), EnrolOutcome::Started),
                    None => Step::reply(EnrolOutcome::AlreadyEnrolled),
                })
            },
            gone(user),
        )
    }
}

/// Operation (and message): confirm an enrolment with its first code; `recovery` are the
/// keyed digests of the recovery codes the edge drew.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<ConfirmOutcome, ActorError>")]
pub struct ConfirmTotp {
    pub user: UserId,
    pub factor: [u8; 16],
    pub code: String,
    pub recovery: Vec<[u8; 32]>,
    pub origin: Origin,
}

impl Operation for ConfirmTotp {
    type Reply = ConfirmOutcome;

    async fn run(self, domain: &Domain) -> Result<ConfirmOutcome, ActorError> {
        to_identity(domain, self.user, self, ConfirmOutcome::NoSuchEnrolment).await
    }
}

impl Handler<ConfirmTotp> for IdentityActor {
    type Result = AtomicResponse<Self, Result<ConfirmOutcome, ActorError>>;

    fn handle(&mut self, msg: ConfirmTotp, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, now, cx| {
                let Some(pending) = account.mfa.pending(msg.factor, now) else {
                    return Ok(Step::reply(ConfirmOutcome::NoSuchEnrolment));
                };
                let secret = open_secret(cx, account.user, pending.id, &pending.secret)?;
                Ok(match account.mfa.confirm(account.user, &secret, &msg.code, msg.recovery.clone(), now) {
                    Some((mfa, events)) => {
                        Step::commit(account.with_mfa(mfa), ConfirmOutcome::Confirmed).events(events)
                    }
                    None => Step::reply(ConfirmOutcome::WrongCode),
                })
            },
            gone(user),
        )
    }
}

/// Operation (and message): replace the recovery codes.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<MfaChange, ActorError>")]
pub struct RegenerateRecoveryCodes {
    pub user: UserId,
    pub recovery: Vec<[u8; 32]>,
    pub origin: Origin,
}

impl Operation for RegenerateRecoveryCodes {
    type Reply = MfaChange;

    async fn run(self, domain: &Domain) -> Result<MfaChange, ActorError> {
        to_identity(domain, self.user, self, MfaChange::NotEnrolled).await
    }
}

impl Handler<RegenerateRecoveryCodes> for IdentityActor {
    type Result = AtomicResponse<Self, Result<MfaChange, ActorError>>;

    fn handle(&mut self, msg: RegenerateRecoveryCodes, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, now, _| {
                Ok(match account.mfa.regenerate(account.user, msg.recovery.clone(), now) {
                    Some((mfa, events)) => Step::commit(account.with_mfa(mfa), MfaChange::Done).events(events),
                    None => Step::reply(MfaChange::NotEnrolled),
                })
            },
            gone(user),
        )
    }
}

/// Operation (and message): disable the second factor.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<MfaChange, ActorError>")]
pub struct DisableTotp {
    pub user: UserId,
    pub origin: Origin,
}

impl Operation for DisableTotp {
    type Reply = MfaChange;

    async fn run(self, domain: &Domain) -> Result<MfaChange, ActorError> {
        to_identity(domain, self.user, self, MfaChange::NotEnrolled).await
    }
}

impl Handler<DisableTotp> for IdentityActor {
    type Result = AtomicResponse<Self, Result<MfaChange, ActorError>>;

    fn handle(&mut self, msg: DisableTotp, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, _, _| {
                Ok(match account.mfa.disable(account.user) {
                    Some((mfa, events)) => Step::commit(account.with_mfa(mfa), MfaChange::Done).events(events),
                    None => Step::reply(MfaChange::NotEnrolled),
                })
            },
            gone(user),
        )
    }
}

/// Operation (and message): the second half of a login: a code or a recovery code for the
/// challenge whose token has `digest`.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<SecondFactorOutcome, ActorError>")]
pub struct PassSecondFactor {
    pub user: UserId,
    pub digest: [u8; 32],
    pub proof: Proof,
    pub client: ClientContext,
    pub origin: Origin,
}

impl Operation for PassSecondFactor {
    type Reply = SecondFactorOutcome;

    /// A wrong code also counts against the client network, like a wrong password.
    async fn run(self, domain: &Domain) -> Result<SecondFactorOutcome, ActorError> {
        let ip = self.client.ip;
        let outcome = to_identity(domain, self.user, self, SecondFactorOutcome::NoChallenge).await?;
        if outcome == SecondFactorOutcome::Refused {
            record_network_failure(domain, ip).await?;
        }
        Ok(outcome)
    }
}

impl Handler<PassSecondFactor> for IdentityActor {
    type Result = AtomicResponse<Self, Result<SecondFactorOutcome, ActorError>>;

    fn handle(&mut self, msg: PassSecondFactor, ctx: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        let now = self.cx.clock.now();
        // A refusal of the guard changes nothing: recorded through the tally, as for passwords.
        if self.account.mfa.find_challenge(msg.digest, now).is_some()
            && let refused @ (PermitVerdict::Throttled { .. } | PermitVerdict::Locked { .. }) =
                self.account.guard.request_permit(now, &self.cx.lockout)
        {
            let reply = SecondFactorOutcome::Wait { retry_after_secs: refused.retry_after_secs(now, &self.cx.lockout) };
            let event = login::refusal_event(Some(user), None, &refused).expect("a refusal has an event");
            return refuse(self, ctx, event, msg.origin, now, reply);
        }
        let (id, salt) = (FamilyId(random(&*self.cx.entropy)), random(&*self.cx.entropy));
        self.decide(
            msg.origin.clone(),
            move |account, now, cx| {
                let Some(secret) = enrolled_secret(cx, account)? else {
                    return Ok(Step::reply(SecondFactorOutcome::NoChallenge));
                };
                let (live, stale) = live_families(&*cx.replicator, account.user, now)?;
                let opening = password_opening(account.user, salt, &msg.client, now);
                let presented = Presented { digest: msg.digest, secret: &secret, proof: &msg.proof };
                let policy = login::LoginPolicy { lockout: &cx.lockout, cap: &cx.cap, sessions: &cx.sessions };
                let decision = login::pass_second_factor(
                    &account.identity,
                    &account.guard,
                    &account.mfa,
                    presented,
                    &views(&live),
                    NewSession { id, opening },
                    now,
                    policy,
                );
                let unindexed = stale.into_iter().fold(Write::default(), Write::delete);
                Ok(match decision {
                    SecondFactorDecision::NoChallenge => Step::reply(SecondFactorOutcome::NoChallenge),
                    SecondFactorDecision::Wait { refused } => Step::reply(SecondFactorOutcome::Wait {
                        retry_after_secs: refused.retry_after_secs(now, &cx.lockout),
                    }),
                    SecondFactorDecision::Wrong { guard, mfa, events }
                    | SecondFactorDecision::Refused { guard, mfa, events } => {
                        Step::commit(account.with(guard, mfa), SecondFactorOutcome::Refused).events(events)
                    }
                    SecondFactorDecision::CapReached { guard, mfa } => {
                        Step::commit(account.with(guard, mfa), SecondFactorOutcome::CapReached).also(unindexed)
                    }
                    SecondFactorDecision::Opened { guard, mfa, id, family, evicted, events } => {
                        let grant = grant(cx, id, &family, Generation::FIRST);
                        Step::commit(account.with(guard, mfa), SecondFactorOutcome::Opened(grant))
                            .also(unindexed.merge(opened(account.user, &live, (id, family), evicted, now)))
                            .events(events)
                    }
                })
            },
            gone(user),
        )
    }
}

/// Operation (and message): the caller's session proves its user again (step-up).
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<ReauthOutcome, ActorError>")]
pub struct Reauthenticate {
    pub user: UserId,
    pub session: FamilyId,
    pub proof: Reproof,
    pub origin: Origin,
}

impl Operation for Reauthenticate {
    type Reply = ReauthOutcome;

    async fn run(self, domain: &Domain) -> Result<ReauthOutcome, ActorError> {
        to_identity(domain, self.user, self, ReauthOutcome::SessionEnded).await
    }
}

impl Handler<Reauthenticate> for IdentityActor {
    type Result = AtomicResponse<Self, Result<ReauthOutcome, ActorError>>;

    fn handle(&mut self, msg: Reauthenticate, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, now, cx| {
                let secret = enrolled_secret(cx, account)?;
                let (live, _) = live_families(&*cx.replicator, account.user, now)?;
                let decision = login::reauthenticate(
                    &account.identity,
                    &account.guard,
                    &account.mfa,
                    secret.as_deref(),
                    &msg.proof,
                    msg.session,
                    &views(&live),
                    now,
                    &cx.lockout,
                );
                Ok(match decision {
                    ReauthDecision::NoSuchPermit => Step::reply(ReauthOutcome::Refused),
                    ReauthDecision::NotEnrolled => Step::reply(ReauthOutcome::NotEnrolled),
                    ReauthDecision::Wait { refused } => Step::reply(ReauthOutcome::Wait {
                        retry_after_secs: refused.retry_after_secs(now, &cx.lockout),
                    }),
                    ReauthDecision::Refused { guard, mfa, events } => {
                        Step::commit(account.with(guard, mfa), ReauthOutcome::Refused).events(events)
                    }
                    ReauthDecision::SessionEnded { guard, mfa } => {
                        Step::commit(account.with(guard, mfa), ReauthOutcome::SessionEnded)
                    }
                    ReauthDecision::Reauthenticated { guard, mfa, current, events } => {
                        let reply =
                            ReauthOutcome::Reauthenticated(grant(cx, current.0, &current.1, current.1.generation));
                        Step::commit(account.with(guard, mfa), reply)
                            .also(rewrite(account.user, &live, std::iter::once(current)))
                            .events(events)
                    }
                })
            },
            gone(user),
        )
    }
}
