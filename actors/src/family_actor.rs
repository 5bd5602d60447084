//! The `SessionFamily` actor: one per active session family, on the leader.
//!
//! A thin shell around [`Family`]'s rules. For each message it reads the clock once, asks
//! the rule, proposes the state the verdict carries as a compare-and-set on the family's
//! version, and adopts that state only after the commit. While a proposal is in flight no
//! other message of this family runs (`AtomicResponse`), so two refreshes of one token are
//! decided one after the other: the first rotates, the second sees the new state.
//!
//! A conflicting proposal means the in-memory state is stale (another leader wrote since it
//! was loaded): the actor reloads from the replica, decides again, and proposes once more. A
//! second conflict is reported as `Contention`. A family found deleted on reload (collected by
//! the `sweeper` long after it ended) is answered as one that never existed.

use std::sync::Arc;

use actix::prelude::*;

use crate::context::ActorContext;
use crate::domain::{
    DeviceHash, Family, FamilyId, Generation, RefreshToken, RefreshVerdict, RevokeReason, RevokeVerdict, UserId,
};
use crate::ports::{Write, WriteOutcome};
use crate::protocol::{ActorError, LogoutOutcome, RefreshOutcome, SessionGrant};
use crate::record::{Record, keys};

pub struct SessionFamily {
    id: FamilyId,
    family: Family,
    version: u64,
    cx: Arc<ActorContext>,
}

impl Actor for SessionFamily {
    type Context = Context<Self>;
}

impl SessionFamily {
    pub fn new(id: FamilyId, family: Family, version: u64, cx: Arc<ActorContext>) -> SessionFamily {
        SessionFamily { id, family, version, cx }
    }
}

/// Present a refresh token.
#[derive(Message)]
#[rtype(result = "Result<RefreshOutcome, ActorError>")]
pub struct Refresh {
    pub token: RefreshToken,
    pub device: DeviceHash,
}

/// Revoke the family on behalf of `owner` (a family of another user is `NotFound`).
#[derive(Message)]
#[rtype(result = "Result<LogoutOutcome, ActorError>")]
pub struct Revoke {
    pub owner: UserId,
    pub reason: RevokeReason,
}

/// The family's state as last loaded or committed.
type Current = (Family, u64);

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

/// Reads the family from the replica (after a conflict); `None` once it has been collected.
fn reload(cx: &ActorContext, id: FamilyId) -> Result<Option<Current>, ActorError> {
    match cx.replicator.read(&keys::family(id))? {
        Some((version, Record::Family(family))) => Ok(Some((family, version))),
        Some((_, other)) => Err(ActorError::Corrupt(format!("fam/{id} holds {other:?}"))),
        None => Ok(None),
    }
}

/// Proposes `next` over the family at `version`. A revoked family also leaves its user's index.
async fn commit(cx: &ActorContext, id: FamilyId, version: u64, next: &Family) -> Result<Option<u64>, ActorError> {
    let key = keys::family(id);
    let mut write = Write::default().expect(key.clone(), Some(version)).put(key, Record::Family(next.clone()));
    if next.revoked.is_some() {
        write = write.delete(keys::user_family(next.user, id));
    }
    match cx.replicator.write(write).await? {
        WriteOutcome::Committed { version } => Ok(Some(version)),
        WriteOutcome::Conflict { .. } => Ok(None),
    }
}

/// What a rule's verdict asks of the shell.
enum Step<O> {
    /// Answer without writing.
    Reply(O),
    /// Commit `next`, then answer.
    Commit { next: Family, reply: O },
}

/// Decides with `decide`, commits what it asks for, and on a conflict reloads and decides
/// once more; answers `gone` if the family was deleted meanwhile. Returns the state to adopt
/// and the answer.
async fn decide_and_commit<O>(
    cx: &ActorContext,
    id: FamilyId,
    mut current: Current,
    decide: impl Fn(&Family) -> Step<O>,
    gone: O,
) -> (Current, Result<O, ActorError>) {
    for _attempt in 0..2 {
        match decide(&current.0) {
            Step::Reply(reply) => return (current, Ok(reply)),
            Step::Commit { next, reply } => match commit(cx, id, current.1, &next).await {
                Ok(Some(version)) => return ((next, version), Ok(reply)),
                Ok(None) => match reload(cx, id) {
                    Ok(Some(reloaded)) => current = reloaded,
                    Ok(None) => return (current, Ok(gone)),
                    Err(e) => return (current, Err(e)),
                },
                Err(e) => return (current, Err(e)),
            },
        }
    }
    (current, Err(ActorError::Contention))
}

impl SessionFamily {
    /// Runs `work` with the mailbox held, then adopts the state it settled on.
    fn atomically<O: 'static>(
        &self,
        work: impl Future<Output = (Current, Result<O, ActorError>)> + 'static,
    ) -> AtomicResponse<Self, Result<O, ActorError>> {
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(current, outcome), actor, _| {
            (actor.family, actor.version) = current;
            outcome
        })))
    }
}

impl Handler<Refresh> for SessionFamily {
    type Result = AtomicResponse<Self, Result<RefreshOutcome, ActorError>>;

    fn handle(&mut self, msg: Refresh, _: &mut Context<Self>) -> Self::Result {
        let (cx, id) = (Arc::clone(&self.cx), self.id);
        let current = (self.family.clone(), self.version);
        self.atomically(async move {
            let now = cx.clock.now();
            let (current, outcome) = decide_and_commit(&cx, id, current, |family| {
                match family.refresh(id, &msg.token, msg.device, now, &cx.sessions, &cx.pepper) {
                    RefreshVerdict::Rotated { family: next } => {
                        Step::Commit { reply: RefreshOutcome::Rotated(grant(&cx, id, &next, next.generation)), next }
                    }
                    RefreshVerdict::Replayed { family: revoked } => Step::Commit { next: revoked, reply: RefreshOutcome::Replayed },
                    RefreshVerdict::Grace { successor } => Step::Reply(RefreshOutcome::Grace(grant(&cx, id, family, successor))),
                    RefreshVerdict::Expired => Step::Reply(RefreshOutcome::Expired),
                    RefreshVerdict::Revoked => Step::Reply(RefreshOutcome::Revoked),
                    RefreshVerdict::Invalid => Step::Reply(RefreshOutcome::Invalid),
                    RefreshVerdict::ForeignDevice => Step::Reply(RefreshOutcome::ForeignDevice),
                }
            }, RefreshOutcome::Invalid)
            .await;
            if let Ok(RefreshOutcome::Rotated(_)) = outcome
                && msg.device != current.0.login_device
            {
                tracing::warn!(family = %id, user = %current.0.user, "refresh from another device (binding: log)");
            }
            if let Ok(RefreshOutcome::ForeignDevice) = outcome {
                tracing::warn!(family = %id, user = %current.0.user, "refresh from another device refused");
            }
            if let Ok(RefreshOutcome::Replayed) = outcome {
                tracing::warn!(family = %id, user = %current.0.user, presented = %msg.token.generation, "refresh token replayed: family revoked");
            }
            (current, outcome)
        })
    }
}

impl Handler<Revoke> for SessionFamily {
    type Result = AtomicResponse<Self, Result<LogoutOutcome, ActorError>>;

    fn handle(&mut self, msg: Revoke, _: &mut Context<Self>) -> Self::Result {
        let (cx, id) = (Arc::clone(&self.cx), self.id);
        let current = (self.family.clone(), self.version);
        self.atomically(async move {
            let now = cx.clock.now();
            decide_and_commit(
                &cx,
                id,
                current,
                |family| {
                    if family.user != msg.owner {
                        return Step::Reply(LogoutOutcome::NotFound);
                    }
                    match family.revoke(now, msg.reason) {
                        RevokeVerdict::Revoked { family: next } => {
                            Step::Commit { next, reply: LogoutOutcome::LoggedOut }
                        }
                        RevokeVerdict::AlreadyRevoked => Step::Reply(LogoutOutcome::AlreadyLoggedOut),
                    }
                },
                LogoutOutcome::NotFound,
            )
            .await
        })
    }
}
