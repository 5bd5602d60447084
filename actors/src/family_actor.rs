//! The `SessionFamily` actor: one per active session family, on the leader.
//!
//! A thin shell around [`Family`]'s rules. For each message it reads the clock once, asks
//! the rule, proposes the state the verdict carries as a compare-and-set on the family's
//! version, and adopts that state only after the commit ([`Shell::decide`]). While a proposal
//! is in flight no other message of this family runs, so two refreshes of one token are
//! decided one after the other: the first rotates, the second sees the new state.
//!
//! A family found deleted on reload (collected by the `sweeper` long after it ended) is
//! answered as one that never existed.
//!
//! Operations: [`Refresh`], [`Logout`], [`LogoutAll`], [`LogoutOthers`].

use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::commit::{Held, Shell, Step};
use crate::context::ActorContext;
use crate::domain::{
    DeviceHash, EndVerdict, Family, FamilyId, Generation, RefreshToken, RefreshVerdict, RevokeReason, UserId,
};
use crate::operation::Operation;
use crate::ports::Write;
use crate::protocol::{ActorError, LogoutOutcome, RefreshOutcome, SessionGrant};
use crate::record::{Record, keys};
use crate::service::Domain;

/// A family as last loaded or committed.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) id: FamilyId,
    pub(crate) family: Family,
    pub(crate) version: u64,
}

impl Stored {
    fn with(&self, family: Family) -> Stored {
        Stored { family, ..self.clone() }
    }
}

impl Held for Stored {
    fn reload(&self, cx: &ActorContext) -> Result<Option<Stored>, ActorError> {
        load(cx, self.id)
    }

    /// A compare-and-set on the family's version; a revoked family also leaves its user's index.
    fn replace(&self, next: &Stored) -> Write {
        let key = keys::family(self.id);
        let write =
            Write::default().expect(key.clone(), Some(self.version)).put(key, Record::Family(next.family.clone()));
        match next.family.revoked {
            Some(_) => write.delete(keys::user_family(next.family.user, self.id)),
            None => write,
        }
    }

    fn committed(&self, next: Stored, version: u64) -> Stored {
        Stored { version, ..next }
    }
}

/// Reads family `id` from the replica; `None` if there is none (never was, or collected).
pub(crate) fn load(cx: &ActorContext, id: FamilyId) -> Result<Option<Stored>, ActorError> {
    match cx.replicator.read(&keys::family(id))? {
        Some((version, Record::Family(family))) => Ok(Some(Stored { id, family, version })),
        Some((_, other)) => Err(ActorError::Corrupt(format!("fam/{id} holds {other:?}"))),
        None => Ok(None),
    }
}

pub struct SessionFamily {
    stored: Stored,
    cx: Arc<ActorContext>,
}

impl Actor for SessionFamily {
    type Context = Context<Self>;
}

impl SessionFamily {
    pub(crate) fn new(stored: Stored, cx: Arc<ActorContext>) -> SessionFamily {
        SessionFamily { stored, cx }
    }
}

impl Shell for SessionFamily {
    type State = Stored;

    fn state(&mut self) -> &mut Stored {
        &mut self.stored
    }

    fn context(&self) -> &Arc<ActorContext> {
        &self.cx
    }
}

pub(crate) fn grant(cx: &ActorContext, id: FamilyId, family: &Family, generation: Generation) -> SessionGrant {
    SessionGrant {
        family: id,
        user: family.user,
        generation,
        refresh_token: cx.pepper.issue(id, generation, &family.salt),
        auth_time: family.auth_time,
        amr: family.amr,
        refresh_expires: family.idle_deadline.min(family.absolute_deadline),
    }
}

/// Operation (and message): present a refresh token.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<RefreshOutcome, ActorError>")]
pub struct Refresh {
    pub token: RefreshToken,
    pub device: DeviceHash,
    pub origin: Origin,
}

impl Operation for Refresh {
    type Reply = RefreshOutcome;

    async fn run(self, domain: &Domain) -> Result<RefreshOutcome, ActorError> {
        match domain.registry().family(self.token.family).await? {
            Some(actor) => actor.send(self).await?,
            None => Ok(RefreshOutcome::Invalid),
        }
    }
}

impl Handler<Refresh> for SessionFamily {
    type Result = AtomicResponse<Self, Result<RefreshOutcome, ActorError>>;

    fn handle(&mut self, msg: Refresh, _: &mut Context<Self>) -> Self::Result {
        self.decide(
            msg.origin.clone(),
            move |stored, now, cx| {
                let (id, family) = (stored.id, &stored.family);
                let verdict = family.refresh(id, &msg.token, msg.device, now, &cx.sessions, &cx.pepper);
                if let RefreshVerdict::Rotated { .. } = verdict
                    && msg.device != family.login_device
                {
                    tracing::warn!(user = %family.user, session = %id, "refresh from another device (binding: log)");
                }
                let events = verdict.events(id, family, msg.token.generation);
                let step = match verdict {
                    RefreshVerdict::Rotated { family: next } => {
                        let reply = RefreshOutcome::Rotated(grant(cx, id, &next, next.generation));
                        Step::commit(stored.with(next), reply)
                    }
                    RefreshVerdict::Replayed { family: revoked } => {
                        Step::commit(stored.with(revoked), RefreshOutcome::Replayed)
                    }
                    RefreshVerdict::Grace { successor } => {
                        Step::reply(RefreshOutcome::Grace(grant(cx, id, family, successor)))
                    }
                    RefreshVerdict::Expired => Step::reply(RefreshOutcome::Expired),
                    RefreshVerdict::Revoked => Step::reply(RefreshOutcome::Revoked),
                    RefreshVerdict::Invalid => Step::reply(RefreshOutcome::Invalid),
                    RefreshVerdict::ForeignDevice => Step::reply(RefreshOutcome::ForeignDevice),
                };
                Ok(step.events(events))
            },
            || Ok(RefreshOutcome::Invalid),
        )
    }
}

/// Message: end the family on behalf of `owner` (a family of another user is `NotFound`).
#[derive(Message)]
#[rtype(result = "Result<LogoutOutcome, ActorError>")]
pub(crate) struct End {
    pub owner: UserId,
    pub reason: RevokeReason,
    pub origin: Origin,
}

impl Handler<End> for SessionFamily {
    type Result = AtomicResponse<Self, Result<LogoutOutcome, ActorError>>;

    fn handle(&mut self, msg: End, _: &mut Context<Self>) -> Self::Result {
        self.decide(
            msg.origin.clone(),
            move |stored, now, _| {
                Ok(match stored.family.end_for(msg.owner, now, msg.reason) {
                    EndVerdict::Revoked { family } => {
                        let event = crate::domain::Event::SessionRevoked {
                            user: msg.owner,
                            session: stored.id,
                            reason: msg.reason,
                        };
                        Step::commit(stored.with(family), LogoutOutcome::LoggedOut).events(vec![event])
                    }
                    EndVerdict::AlreadyRevoked => Step::reply(LogoutOutcome::AlreadyLoggedOut),
                    EndVerdict::NotOwner => Step::reply(LogoutOutcome::NotFound),
                })
            },
            || Ok(LogoutOutcome::NotFound),
        )
    }
}

/// Ends `family` for `user`, through its actor.
async fn end(domain: &Domain, end: End, family: FamilyId) -> Result<LogoutOutcome, ActorError> {
    match domain.registry().family(family).await? {
        Some(actor) => actor.send(end).await?,
        None => Ok(LogoutOutcome::NotFound),
    }
}

/// Operation: end one session of `user` (a logout, or one's own session list).
#[derive(Serialize, Deserialize)]
pub struct Logout {
    pub user: UserId,
    pub family: FamilyId,
    pub origin: Origin,
}

impl Operation for Logout {
    type Reply = LogoutOutcome;

    async fn run(self, domain: &Domain) -> Result<LogoutOutcome, ActorError> {
        end(domain, End { owner: self.user, reason: RevokeReason::Logout, origin: self.origin }, self.family).await
    }
}

/// Operation: end the session of a token a resource server revoked (RFC 7009).
#[derive(Serialize, Deserialize)]
pub struct Revoke {
    pub user: UserId,
    pub family: FamilyId,
    pub origin: Origin,
}

impl Operation for Revoke {
    type Reply = LogoutOutcome;

    async fn run(self, domain: &Domain) -> Result<LogoutOutcome, ActorError> {
        end(domain, End { owner: self.user, reason: RevokeReason::Revocation, origin: self.origin }, self.family).await
    }
}

/// Operation: end every session of `user`; answers how many this call ended.
#[derive(Serialize, Deserialize)]
pub struct LogoutAll {
    pub user: UserId,
    pub origin: Origin,
}

impl Operation for LogoutAll {
    type Reply = usize;

    async fn run(self, domain: &Domain) -> Result<usize, ActorError> {
        end_all_but(domain, self.user, None, RevokeReason::LogoutAll, self.origin).await
    }
}

/// Operation: end every session of `user` but `keep`; answers how many this call ended.
#[derive(Serialize, Deserialize)]
pub struct LogoutOthers {
    pub user: UserId,
    pub keep: FamilyId,
    pub origin: Origin,
}

impl Operation for LogoutOthers {
    type Reply = usize;

    async fn run(self, domain: &Domain) -> Result<usize, ActorError> {
        end_all_but(domain, self.user, Some(self.keep), RevokeReason::LogoutOthers, self.origin).await
    }
}

async fn end_all_but(
    domain: &Domain,
    user: UserId,
    keep: Option<FamilyId>,
    reason: RevokeReason,
    origin: Origin,
) -> Result<usize, ActorError> {
    domain.registry().ensure_leading().await?;
    let families: Vec<FamilyId> = domain
        .context()
        .replicator
        .scan(&keys::user_families(user))?
        .into_iter()
        .filter_map(|(key, _, _)| keys::family_of_user_family_key(&key))
        .filter(|family| Some(*family) != keep)
        .collect();
    let ends =
        families.into_iter().map(|family| end(domain, End { owner: user, reason, origin: origin.clone() }, family));
    let mut ended = 0;
    for outcome in futures::future::join_all(ends).await {
        if outcome? == LogoutOutcome::LoggedOut {
            ended += 1;
        }
    }
    Ok(ended)
}
