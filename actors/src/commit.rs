//! The one shape every actor write takes: decide, commit, reload once, report contention.
//!
//! ```text
//!   decide(state) ──► Reply ─────────────────────────────────► answer
//!        │
//!        └────────► Commit(next, also) ──► compare-and-set ──ok──► adopt next, answer
//!                                               │ conflict: written by someone else since loaded
//!                                               ▼
//!                                            reload ──gone──► answer as for nothing
//!                                               │
//!                                               └──► decide again, once; a second conflict is
//!                                                    reported as `Contention`
//! ```
//!
//! A decision's events go into the audit trail in the same write as its change (see `audit`),
//! so an event exists exactly when its change was acknowledged; a decision that changes nothing
//! but has events (a refused attempt) writes them on their own. While the durable store cannot
//! take the trail (its backlog in the replicas is full), such writes are refused. An actor
//! adopts its new state only after the commit, and holds its mailbox while the proposal is in
//! flight ([`Shell::decide`]), so one actor's messages never interleave.

use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;

use crate::audit::{self, Origin};
use crate::context::ActorContext;
use crate::domain::{Event, Millis};
use crate::ports::{Write, WriteOutcome};
use crate::protocol::ActorError;

/// What an actor holds of the replicated store: its state and the versions it was read at.
pub(crate) trait Held: Clone + 'static {
    /// The state as the local replica holds it now; `None` once it has been deleted.
    fn reload(&self, cx: &ActorContext) -> Result<Option<Self>, ActorError>;

    /// The compare-and-set write that replaces this state by `next`.
    fn replace(&self, next: &Self) -> Write;

    /// `next` as it stands once the write that made it committed at `version`.
    fn committed(&self, next: Self, version: u64) -> Self;
}

/// What a rule's decision asks of the shell.
pub(crate) enum Step<S, O> {
    /// Answer without writing.
    Reply { reply: O, events: Vec<Event> },
    /// Commit `next`, together with `also` (other keys the decision touches), then answer.
    Commit { next: S, also: Write, reply: O, events: Vec<Event> },
}

impl<S, O> Step<S, O> {
    pub(crate) fn reply(reply: O) -> Step<S, O> {
        Step::Reply { reply, events: Vec::new() }
    }

    pub(crate) fn commit(next: S, reply: O) -> Step<S, O> {
        Step::Commit { next, also: Write::default(), reply, events: Vec::new() }
    }

    /// Writes `write` in the same transaction (a commit only).
    pub(crate) fn also(self, write: Write) -> Step<S, O> {
        match self {
            Step::Commit { next, also, reply, events } => Step::Commit { next, also: also.merge(write), reply, events },
            reply @ Step::Reply { .. } => reply,
        }
    }

    /// Records `more` when the decision takes effect.
    pub(crate) fn events(self, more: Vec<Event>) -> Step<S, O> {
        match self {
            Step::Reply { reply, mut events } => {
                events.extend(more);
                Step::Reply { reply, events }
            }
            Step::Commit { next, also, reply, mut events } => {
                events.extend(more);
                Step::Commit { next, also, reply, events }
            }
        }
    }
}

/// `write` with the audit records of `events` appended; refused while the trail's backlog is
/// full (the durable store has not taken it for a while). Personal data is sealed under each
/// event's user's key as the replica holds it, or under `created` for a key this very write
/// creates (a registration).
pub(crate) fn audited(
    cx: &ActorContext,
    now: Millis,
    origin: &Origin,
    events: &[Event],
    write: Write,
    created: Option<[u8; 32]>,
) -> Result<Write, ActorError> {
    if events.is_empty() {
        return Ok(write);
    }
    if cx.replicator.stream_backlog() >= cx.audit.max_backlog {
        return Err(ActorError::AuditBacklog);
    }
    events.iter().try_fold(write, |write, event| {
        let key = match created {
            Some(key) => Some(key),
            None => audit::sealing_key(cx, event.user())?,
        };
        Ok(write.append(audit::STREAM, audit::record(cx, event, now, origin, key)?))
    })
}

/// Records `events` of a decision that changes nothing (a refused attempt): one write of the
/// audit records alone.
pub(crate) async fn record_events(
    cx: &ActorContext,
    now: Millis,
    origin: &Origin,
    events: &[Event],
) -> Result<(), ActorError> {
    if events.is_empty() {
        return Ok(());
    }
    match cx.replicator.write(audited(cx, now, origin, events, Write::default(), None)?).await? {
        WriteOutcome::Committed { .. } | WriteOutcome::Conflict { .. } => {
            log(events);
            Ok(())
        }
    }
}

/// Decides with `decide`, commits what it asks for (with the audit records of its events), and
/// on a conflict reloads and decides once more; answers `gone()` if the state was deleted
/// meanwhile. Returns the state to adopt and the answer.
pub(crate) async fn decide_and_commit<S: Held, O>(
    cx: &ActorContext,
    now: Millis,
    origin: &Origin,
    mut current: S,
    mut decide: impl FnMut(&S) -> Result<Step<S, O>, ActorError>,
    gone: impl FnOnce() -> Result<O, ActorError>,
) -> (S, Result<O, ActorError>) {
    for _attempt in 0..2 {
        let step = match decide(&current) {
            Ok(step) => step,
            Err(e) => return (current, Err(e)),
        };
        let (next, also, reply, events) = match step {
            Step::Reply { reply, events } => {
                let recorded = record_events(cx, now, origin, &events).await;
                return (current, recorded.map(|()| reply));
            }
            Step::Commit { next, also, reply, events } => (next, also, reply, events),
        };
        let write = match audited(cx, now, origin, &events, current.replace(&next).merge(also), None) {
            Ok(write) => write,
            Err(e) => return (current, Err(e)),
        };
        match cx.replicator.write(write).await {
            Ok(WriteOutcome::Committed { version }) => {
                log(&events);
                return (current.committed(next, version), Ok(reply));
            }
            Ok(WriteOutcome::Conflict { .. }) => match current.reload(cx) {
                Ok(Some(reloaded)) => current = reloaded,
                Ok(None) => return (current, gone()),
                Err(e) => return (current, Err(e)),
            },
            Err(e) => return (current, Err(e.into())),
        }
    }
    (current, Err(ActorError::Contention))
}

/// An actor shell over one piece of replicated state.
pub(crate) trait Shell: Actor<Context = Context<Self>> {
    type State: Held;

    fn state(&mut self) -> &mut Self::State;

    fn context(&self) -> &Arc<ActorContext>;

    /// Reads the clock once, runs [`decide_and_commit`] with the mailbox held (no other message
    /// of this actor runs until it is done), then adopts the state it settled on.
    fn decide<O: 'static>(
        &mut self,
        origin: Origin,
        mut decide: impl FnMut(&Self::State, Millis, &ActorContext) -> Result<Step<Self::State, O>, ActorError> + 'static,
        gone: impl FnOnce() -> Result<O, ActorError> + 'static,
    ) -> AtomicResponse<Self, Result<O, ActorError>> {
        let cx = Arc::clone(self.context());
        let current = self.state().clone();
        let work = async move {
            let now = cx.clock.now();
            decide_and_commit(&cx, now, &origin, current, |state| decide(state, now, &cx), gone).await
        };
        atomically(self, work)
    }
}

/// Runs `work` with the actor's mailbox held, then adopts the state it settled on.
pub(crate) fn atomically<A: Shell, O: 'static>(
    actor: &A,
    work: impl Future<Output = (A::State, Result<O, ActorError>)> + 'static,
) -> AtomicResponse<A, Result<O, ActorError>> {
    AtomicResponse::new(Box::pin(work.into_actor(actor).map(|(state, outcome), actor, _| {
        *actor.state() = state;
        outcome
    })))
}

/// Logs events that took effect (ids and reasons only: never an email address).
pub(crate) fn log(events: &[Event]) {
    for event in events {
        let action = event.action();
        match event {
            Event::ReplayDetected { user, session, presented } => {
                tracing::warn!(action, %user, %session, %presented, "refresh token replayed: session revoked")
            }
            Event::DeviceMismatchRefused { user, session } => {
                tracing::warn!(action, %user, %session, "refresh from another device refused")
            }
            Event::AccountLocked { user, failures, until } => {
                tracing::warn!(action, %user, failures, until = ?until, "account locked after failed logins")
            }
            Event::LoginFailed { user, reason, .. } => {
                tracing::debug!(action, user = ?user.map(|u| u.to_string()), reason = reason.as_str(), "failed login")
            }
            Event::SessionRevoked { user, session, reason } => {
                tracing::info!(action, %user, %session, reason = reason.as_str(), "session revoked")
            }
            Event::UserRegistered { user, .. } => tracing::info!(action, %user, "account registered"),
            Event::LoginSucceeded { user, session } => tracing::info!(action, %user, %session, "login"),
            Event::SessionCreated { user, session } => tracing::debug!(action, %user, %session, "session created"),
            Event::AccountUnlocked { user, was_locked } => {
                tracing::info!(action, %user, was_locked, "account unlocked by an administrator")
            }
            Event::PasswordChanged { user, others_revoked } => {
                tracing::info!(action, %user, others_revoked, "password changed")
            }
            Event::TotpEnrolled { user } => tracing::info!(action, %user, "authenticator app enrolled"),
            Event::TotpDisabled { user } => tracing::info!(action, %user, "second factor disabled"),
            Event::RecoveryCodesRegenerated { user } => tracing::info!(action, %user, "recovery codes replaced"),
            Event::RecoveryCodeUsed { user, remaining } => {
                tracing::info!(action, %user, remaining, "recovery code used")
            }
            Event::Reauthenticated { user, session, second_factor } => {
                tracing::info!(action, %user, %session, second_factor, "session re-authenticated")
            }
            Event::KeyPublished { kid } => tracing::info!(action, %kid, "signing key published as the successor"),
            Event::KeyActivated { kid, rotation } => {
                tracing::info!(action, %kid, rotation = rotation.as_str(), "signing key activated")
            }
            Event::KeyRetired { kid } => tracing::info!(action, %kid, "signing key retired"),
            Event::ClientCreated { client } => tracing::info!(action, %client, "resource-server client created"),
            Event::ClientDeleted { client } => tracing::info!(action, %client, "resource-server client deleted"),
            Event::KeyRemoved { kid, reason } => {
                tracing::warn!(action, %kid, reason = reason.as_str(), "signing key removed from the key set")
            }
        }
    }
}
