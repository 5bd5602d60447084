//! The `Identity` actor: one per active login identity, on the leader.
//!
//! It serializes everything that happens to one account:
//! - `RequestPermit`: may a password be checked now? If so, a permit is committed to the
//!   account's replicated guard and the hash to check against is handed out.
//! - `FailLogin` / `CompleteLogin`: the node that checked the password reports the result.
//!   A failure is recorded (delays, lock); a success resets the guard, applies the session
//!   cap and opens a session — guard, identity, new family, evicted families, all in one
//!   compare-and-set write.
//! - `Unlock`: an administrator clears the guard.
//!
//! Every decision is a rule in `domain` (`LoginGuard`, `Identity`, `SessionCap`, `Family`);
//! this shell reads the clock once per message, commits, and adopts the new state after the
//! commit. A conflict reloads both keys and decides once more.

use std::sync::Arc;

use actix::prelude::*;

use crate::context::ActorContext;
use crate::domain::{
    Amr, Attempt, CapVerdict, DeviceHash, Family, FamilyId, Generation, Identity, IpPrefix, LoginGuard, LoginVerdict,
    Millis, Opening, PermitVerdict, ReportVerdict, RevokeReason, RevokeVerdict, UserId,
};
use crate::family_actor::grant;
use crate::ports::{Write, WriteOutcome, random};
use crate::protocol::{ActorError, LoginOutcome, LoginStart, LoginSubject, PasswordChange, PasswordOutcome};
use crate::queries::live_families;
use crate::record::{Record, keys};

/// The actor's view of its two replicated keys.
#[derive(Clone)]
pub(crate) struct State {
    identity: Identity,
    version: u64,
    guard: LoginGuard,
    /// `None` until the first attempt writes the guard.
    guard_version: Option<u64>,
}

pub struct IdentityActor {
    user: UserId,
    state: State,
    cx: Arc<ActorContext>,
}

impl Actor for IdentityActor {
    type Context = Context<Self>;
}

/// Reads an identity and its guard from the replica.
pub(crate) fn load(cx: &ActorContext, user: UserId) -> Result<Option<State>, ActorError> {
    let (version, identity) = match cx.replicator.read(&keys::user(user))? {
        Some((version, Record::Identity(identity))) => (version, identity),
        Some((_, other)) => return Err(ActorError::Corrupt(format!("user/{user} holds {other:?}"))),
        None => return Ok(None),
    };
    let (guard_version, guard) = match cx.replicator.read(&keys::guard(user))? {
        Some((version, Record::LoginGuard(guard))) => (Some(version), guard),
        Some((_, other)) => return Err(ActorError::Corrupt(format!("guard/{user} holds {other:?}"))),
        None => (None, LoginGuard::default()),
    };
    Ok(Some(State { identity, version, guard, guard_version }))
}

fn reload(cx: &ActorContext, user: UserId) -> Result<State, ActorError> {
    load(cx, user)?.ok_or_else(|| ActorError::Corrupt(format!("user/{user} vanished")))
}

impl IdentityActor {
    pub(crate) fn new(user: UserId, state: State, cx: Arc<ActorContext>) -> IdentityActor {
        IdentityActor { user, state, cx }
    }

    /// Runs `work` with the mailbox held, then adopts the state it settled on.
    fn atomically<O: 'static>(
        &self,
        work: impl Future<Output = (State, Result<O, ActorError>)> + 'static,
    ) -> AtomicResponse<Self, Result<O, ActorError>> {
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(state, outcome), actor, _| {
            actor.state = state;
            outcome
        })))
    }
}

/// The guard write every attempt makes: compare-and-set on the guard's version.
fn guard_write(user: UserId, state: &State, next: &LoginGuard) -> Write {
    Write::default()
        .expect(keys::guard(user), state.guard_version)
        .put(keys::guard(user), Record::LoginGuard(next.clone()))
}

/// After a committed write, the state that includes it.
fn committed(state: &State, guard: LoginGuard, version: u64) -> State {
    State { guard, guard_version: Some(version), ..state.clone() }
}

/// Seconds to tell a client to wait: whole seconds, at least one.
pub(crate) fn retry_secs(duration: std::time::Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}

/// Turns a permit verdict into the edge's answer (the same for accounts and unknown emails).
pub(crate) fn wait_for(verdict: &PermitVerdict, now: Millis, cx: &ActorContext) -> Option<LoginStart> {
    match verdict {
        PermitVerdict::Granted { .. } => None,
        PermitVerdict::Throttled { retry_after } => {
            Some(LoginStart::Wait { retry_after_secs: retry_secs(*retry_after) })
        }
        PermitVerdict::Locked { until: Some(until) } => {
            Some(LoginStart::Wait { retry_after_secs: retry_secs(until.since(now)) })
        }
        PermitVerdict::Locked { until: None } => {
            Some(LoginStart::Wait { retry_after_secs: retry_secs(cx.lockout.lock) })
        }
    }
}

/// May a password be checked now?
#[derive(Message)]
#[rtype(result = "Result<LoginStart, ActorError>")]
pub struct RequestPermit;

/// The password checked under `permit` was wrong (`Failed`), or never checked (`Abandoned`).
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct FailLogin {
    pub permit: u64,
    pub attempt: Attempt,
}

/// The password checked under `permit` (against `credential_version`) was right: open a session.
#[derive(Message)]
#[rtype(result = "Result<LoginOutcome, ActorError>")]
pub struct CompleteLogin {
    pub permit: u64,
    pub credential_version: u32,
    pub device: DeviceHash,
    pub ip: Option<IpPrefix>,
    pub device_label: String,
}

/// Clear failures and locks (administrator). Answers whether the account was locked.
#[derive(Message)]
#[rtype(result = "Result<bool, ActorError>")]
pub struct Unlock;

impl Handler<RequestPermit> for IdentityActor {
    type Result = AtomicResponse<Self, Result<LoginStart, ActorError>>;

    fn handle(&mut self, _: RequestPermit, _: &mut Context<Self>) -> Self::Result {
        let (cx, user, mut state) = (Arc::clone(&self.cx), self.user, self.state.clone());
        self.atomically(async move {
            let now = cx.clock.now();
            for _attempt in 0..2 {
                let verdict = state.guard.request_permit(now, &cx.lockout);
                if let Some(wait) = wait_for(&verdict, now, &cx) {
                    return (state, Ok(wait));
                }
                let PermitVerdict::Granted { guard, permit } = verdict else { unreachable!("handled above") };
                match cx.replicator.write(guard_write(user, &state, &guard)).await {
                    Ok(WriteOutcome::Committed { version }) => {
                        let start = LoginStart::Permit {
                            subject: LoginSubject::Account(user),
                            permit,
                            password_hash: Some(state.identity.password_hash.clone()),
                            credential_version: state.identity.credential_version,
                        };
                        return (committed(&state, guard, version), Ok(start));
                    }
                    Ok(WriteOutcome::Conflict { .. }) => match reload(&cx, user) {
                        Ok(reloaded) => state = reloaded,
                        Err(e) => return (state, Err(e)),
                    },
                    Err(e) => return (state, Err(e.into())),
                }
            }
            (state, Err(ActorError::Contention))
        })
    }
}

impl Handler<FailLogin> for IdentityActor {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: FailLogin, _: &mut Context<Self>) -> Self::Result {
        let (cx, user, mut state) = (Arc::clone(&self.cx), self.user, self.state.clone());
        self.atomically(async move {
            let now = cx.clock.now();
            for _attempt in 0..2 {
                let guard = match state.guard.report(msg.permit, msg.attempt, now, &cx.lockout) {
                    ReportVerdict::Recorded { guard } => guard,
                    ReportVerdict::NoSuchPermit => return (state, Ok(())),
                };
                match cx.replicator.write(guard_write(user, &state, &guard)).await {
                    Ok(WriteOutcome::Committed { version }) => {
                        if guard.is_locked(now) {
                            tracing::warn!(%user, failures = guard.failures, "account locked after failed logins");
                        }
                        return (committed(&state, guard, version), Ok(()));
                    }
                    Ok(WriteOutcome::Conflict { .. }) => match reload(&cx, user) {
                        Ok(reloaded) => state = reloaded,
                        Err(e) => return (state, Err(e)),
                    },
                    Err(e) => return (state, Err(e.into())),
                }
            }
            (state, Err(ActorError::Contention))
        })
    }
}

impl Handler<CompleteLogin> for IdentityActor {
    type Result = AtomicResponse<Self, Result<LoginOutcome, ActorError>>;

    fn handle(&mut self, msg: CompleteLogin, _: &mut Context<Self>) -> Self::Result {
        let (cx, user, mut state) = (Arc::clone(&self.cx), self.user, self.state.clone());
        self.atomically(async move {
            let now = cx.clock.now();
            for _attempt in 0..2 {
                // A success against a replaced credential or a disabled account is a failure.
                let attempt = match state.identity.accept_login(msg.credential_version) {
                    LoginVerdict::Accepted => Attempt::Succeeded,
                    LoginVerdict::StaleCredential | LoginVerdict::Disabled => Attempt::Failed,
                };
                let guard = match state.guard.report(msg.permit, attempt, now, &cx.lockout) {
                    ReportVerdict::Recorded { guard } => guard,
                    ReportVerdict::NoSuchPermit => return (state, Ok(LoginOutcome::Rejected)),
                };
                let mut write = guard_write(user, &state, &guard);
                let outcome = match attempt {
                    Attempt::Failed | Attempt::Abandoned => None,
                    Attempt::Succeeded => {
                        let (live, stale) = match live_families(&*cx.replicator, user, now) {
                            Ok(found) => found,
                            Err(e) => return (state, Err(e)),
                        };
                        for key in stale {
                            write = write.delete(key);
                        }
                        let ids: Vec<(FamilyId, Millis)> = live.iter().map(|f| (f.id, f.family.created_at)).collect();
                        match cx.cap.admit(&ids) {
                            CapVerdict::Deny => Some(LoginOutcome::CapReached),
                            verdict @ (CapVerdict::Open | CapVerdict::OpenEvicting(_)) => {
                                if let CapVerdict::OpenEvicting(evicted) = verdict {
                                    for old in live.iter().filter(|f| evicted.contains(&f.id)) {
                                        if let RevokeVerdict::Revoked { family: revoked } =
                                            old.family.revoke(now, RevokeReason::Cap)
                                        {
                                            write = write
                                                .expect(keys::family(old.id), Some(old.version))
                                                .put(keys::family(old.id), Record::Family(revoked))
                                                .delete(keys::user_family(user, old.id));
                                        }
                                    }
                                }
                                let id = FamilyId(random(&*cx.entropy));
                                let opening = Opening {
                                    user,
                                    salt: random(&*cx.entropy),
                                    device: msg.device,
                                    ip_prefix: msg.ip,
                                    amr: Amr::PASSWORD,
                                    auth_time: now,
                                    device_label: msg.device_label.clone(),
                                };
                                let family = Family::open(opening, now, &cx.sessions);
                                write = write
                                    .expect(keys::user(user), Some(state.version))
                                    .expect(keys::family(id), None)
                                    .put(keys::family(id), Record::Family(family.clone()))
                                    .put(keys::user_family(user, id), Record::UserFamily(now));
                                Some(LoginOutcome::Opened(grant(&cx, id, &family, Generation::FIRST)))
                            }
                        }
                    }
                };
                match cx.replicator.write(write).await {
                    Ok(WriteOutcome::Committed { version }) => {
                        let next = committed(&state, guard, version);
                        return (next, Ok(outcome.unwrap_or(LoginOutcome::Rejected)));
                    }
                    Ok(WriteOutcome::Conflict { .. }) => match reload(&cx, user) {
                        Ok(reloaded) => state = reloaded,
                        Err(e) => return (state, Err(e)),
                    },
                    Err(e) => return (state, Err(e.into())),
                }
            }
            (state, Err(ActorError::Contention))
        })
    }
}

impl Handler<Unlock> for IdentityActor {
    type Result = AtomicResponse<Self, Result<bool, ActorError>>;

    fn handle(&mut self, _: Unlock, _: &mut Context<Self>) -> Self::Result {
        let (cx, user, mut state) = (Arc::clone(&self.cx), self.user, self.state.clone());
        self.atomically(async move {
            let now = cx.clock.now();
            for _attempt in 0..2 {
                let was_locked = state.guard.is_locked(now);
                let guard = state.guard.unlocked();
                match cx.replicator.write(guard_write(user, &state, &guard)).await {
                    Ok(WriteOutcome::Committed { version }) => {
                        tracing::info!(%user, was_locked, "account unlocked by an administrator");
                        return (committed(&state, guard, version), Ok(was_locked));
                    }
                    Ok(WriteOutcome::Conflict { .. }) => match reload(&cx, user) {
                        Ok(reloaded) => state = reloaded,
                        Err(e) => return (state, Err(e)),
                    },
                    Err(e) => return (state, Err(e.into())),
                }
            }
            (state, Err(ActorError::Contention))
        })
    }
}

/// Change the password (the current one was verified under `change.permit`).
#[derive(Message)]
#[rtype(result = "Result<PasswordOutcome, ActorError>")]
pub struct ChangePassword(pub PasswordChange);

impl Handler<ChangePassword> for IdentityActor {
    type Result = AtomicResponse<Self, Result<PasswordOutcome, ActorError>>;

    /// One write: the guard records the success, the identity takes the new hash and a new
    /// credential version, the caller's session moves to a new generation, and (unless told
    /// otherwise) every other session of the account is revoked.
    fn handle(&mut self, ChangePassword(change): ChangePassword, _: &mut Context<Self>) -> Self::Result {
        let (cx, user, mut state) = (Arc::clone(&self.cx), self.user, self.state.clone());
        self.atomically(async move {
            let now = cx.clock.now();
            for _attempt in 0..2 {
                let attempt = match state.identity.accept_login(change.credential_version) {
                    LoginVerdict::Accepted => Attempt::Succeeded,
                    LoginVerdict::StaleCredential | LoginVerdict::Disabled => Attempt::Failed,
                };
                let guard = match state.guard.report(change.permit, attempt, now, &cx.lockout) {
                    ReportVerdict::Recorded { guard } => guard,
                    ReportVerdict::NoSuchPermit => return (state, Ok(PasswordOutcome::Rejected)),
                };
                let mut write = guard_write(user, &state, &guard);
                let mut outcome = PasswordOutcome::Rejected;
                let mut identity = state.identity.clone();
                if attempt == Attempt::Succeeded {
                    let (live, _) = match live_families(&*cx.replicator, user, now) {
                        Ok(found) => found,
                        Err(e) => return (state, Err(e)),
                    };
                    let current = live.iter().find(|f| f.id == change.current);
                    let reissued = current.and_then(|f| f.family.reissued(now, change.device, &cx.sessions));
                    outcome = match (current, reissued) {
                        (Some(current), Some(next)) => {
                            identity = identity.with_password(change.new_hash.clone());
                            write = write
                                .expect(keys::user(user), Some(state.version))
                                .put(keys::user(user), Record::Identity(identity.clone()))
                                .expect(keys::family(current.id), Some(current.version))
                                .put(keys::family(current.id), Record::Family(next.clone()));
                            if change.revoke_others {
                                for other in live.iter().filter(|f| f.id != change.current) {
                                    if let RevokeVerdict::Revoked { family } =
                                        other.family.revoke(now, RevokeReason::PasswordChange)
                                    {
                                        write = write
                                            .expect(keys::family(other.id), Some(other.version))
                                            .put(keys::family(other.id), Record::Family(family))
                                            .delete(keys::user_family(user, other.id));
                                    }
                                }
                            }
                            PasswordOutcome::Changed(grant(&cx, current.id, &next, next.generation))
                        }
                        _ => PasswordOutcome::SessionEnded,
                    };
                }
                match cx.replicator.write(write).await {
                    Ok(WriteOutcome::Committed { version }) => {
                        let changed = matches!(outcome, PasswordOutcome::Changed(_));
                        if changed {
                            tracing::info!(%user, revoke_others = change.revoke_others, "password changed");
                        }
                        let next = State {
                            identity: if changed { identity } else { state.identity.clone() },
                            version: if changed { version } else { state.version },
                            guard,
                            guard_version: Some(version),
                        };
                        return (next, Ok(outcome));
                    }
                    Ok(WriteOutcome::Conflict { .. }) => match reload(&cx, user) {
                        Ok(reloaded) => state = reloaded,
                        Err(e) => return (state, Err(e)),
                    },
                    Err(e) => return (state, Err(e.into())),
                }
            }
            (state, Err(ActorError::Contention))
        })
    }
}
