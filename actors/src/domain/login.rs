//! What a verified password leads to: opening a session (login) or replacing the password.
//!
//! The node that checked a password under a permit reports the result to the account. Before
//! anything else the report settles the permit against the guard:
//!
//! ```text
//!   report(permit, verified credential version)
//!        │
//!        ├── permit unknown or expired ─────────────────────► NoSuchPermit   (nothing written)
//!        ├── credential replaced meanwhile, or disabled ────► Refused        failure recorded
//!        └── current credential ── success recorded, then:
//!              login:   cap refuses ────────────────────────► CapReached     (not a failure)
//!                       otherwise ──────────────────────────► Opened         evict the oldest if the
//!                                                                             cap says so, open a session
//!              change:  caller's session no longer live ────► SessionEnded
//!                       otherwise ──────────────────────────► Changed        new hash and credential
//!                                                                             version, the caller's session
//!                                                                             reissued, others revoked
//! ```
//!
//! Everything is decided here over plain data; the identity actor reads the inputs from its
//! state and the replica, draws the new session's id and salt, and commits what is decided in
//! one compare-and-set write.

use super::device::DeviceHash;
use super::email::Email;
use super::event::{Event, LoginFailure};
use super::family::Amr;
use super::family::{Family, Opening, RevokeReason, RevokeVerdict, SessionPolicy};
use super::guard::{Attempt, LockoutPolicy, LoginGuard, PermitVerdict, ReportVerdict};
use super::identity::{CapVerdict, Identity, LoginVerdict, SessionCap};
use super::ids::{FamilyId, UserId};
use super::mfa::{FactorVerdict, Mfa, Proof};
use super::time::Millis;

/// A live session of the account, as stored.
#[derive(Clone, Copy, Debug)]
pub struct Live<'a> {
    pub id: FamilyId,
    pub family: &'a Family,
}

/// A password the edge verified: under which permit, against which credential version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verified {
    pub permit: u64,
    pub credential_version: u32,
}

/// What reporting a verified password under a permit decides, before anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The permit is unknown or has expired (and was already counted as a failure).
    NoSuchPermit,
    /// Counted as a failure: the password was checked against a replaced credential, or the
    /// account is disabled. Answered exactly like a wrong password.
    Refused { guard: LoginGuard },
    /// The success is recorded.
    Accepted { guard: LoginGuard },
}

/// Settles the permit of a password that verified.
pub fn check(
    identity: &Identity,
    guard: &LoginGuard,
    verified: Verified,
    now: Millis,
    policy: &LockoutPolicy,
) -> Checked {
    let attempt = match identity.accept_login(verified.credential_version) {
        LoginVerdict::Accepted => Attempt::Succeeded,
        LoginVerdict::StaleCredential | LoginVerdict::Disabled => Attempt::Failed,
    };
    match (guard.report(verified.permit, attempt, now, policy), attempt) {
        (ReportVerdict::NoSuchPermit, _) => Checked::NoSuchPermit,
        (ReportVerdict::Recorded { guard }, Attempt::Succeeded) => Checked::Accepted { guard },
        (ReportVerdict::Recorded { guard }, Attempt::Failed | Attempt::Abandoned) => Checked::Refused { guard },
    }
}

/// The events of a recorded failure: the failure, and the lock it caused, if it did.
pub fn failure_events(user: UserId, before: &LoginGuard, after: &LoginGuard, now: Millis) -> Vec<Event> {
    failure_events_for(LoginFailure::BadPassword, user, before, after, now)
}

/// [`failure_events`] for a failure of another kind (a wrong code).
fn failure_events_for(
    reason: LoginFailure,
    user: UserId,
    before: &LoginGuard,
    after: &LoginGuard,
    now: Millis,
) -> Vec<Event> {
    let mut events = vec![Event::LoginFailed { user: Some(user), email: None, reason, attempts: 1 }];
    if !before.is_locked(now) && after.is_locked(now) {
        let until = if after.locked_forever { None } else { after.locked_until };
        events.push(Event::AccountLocked { user, failures: after.failures, until });
    }
    events
}

/// The events of a report that was recorded: a failure and the lock it caused, if it did;
/// nothing for a check that was never made.
pub fn report_events(
    user: UserId,
    attempt: Attempt,
    before: &LoginGuard,
    after: &LoginGuard,
    now: Millis,
) -> Vec<Event> {
    match attempt {
        Attempt::Failed => failure_events(user, before, after, now),
        Attempt::Succeeded | Attempt::Abandoned => Vec::new(),
    }
}

/// The event of a permit refused for `user` (or, when `user` is `None`, for `email`, an
/// address without an account); `None` for a granted permit.
pub fn refusal_event(user: Option<UserId>, email: Option<&Email>, refused: &PermitVerdict) -> Option<Event> {
    let reason = match refused {
        PermitVerdict::Granted { .. } => return None,
        PermitVerdict::Throttled { .. } => LoginFailure::Throttled,
        PermitVerdict::Locked { .. } => LoginFailure::Locked,
    };
    Some(Event::LoginFailed { user, email: user.is_none().then(|| email.cloned()).flatten(), reason, attempts: 1 })
}

/// How long refusals of one account, address or client network are gathered into one event.
pub const REFUSAL_WINDOW_MS: u64 = 1_000;

/// Refusals of an account (or address, or client network) that is already locked or throttled
/// cost no password check, so an attacker can send tens of thousands a second; recording each
/// as its own replicated write would hand them the log and the trail. They are recorded per
/// window instead:
///
/// ```text
///   refusal, no window open ──► record it (attempts 1), open a window of REFUSAL_WINDOW_MS
///   refusal, window open ─────► hold it (count); the first one held asks for a flush at the
///                               window's end
///   window ends ──────────────► record the held ones as one event (attempts = count)
/// ```
///
/// So every refusal is counted in the trail, within a second, by at most two events a second
/// per account, address or network. The tally lives in the deciding actor's memory: if
/// leadership moves within a window, the refusals held in it are not recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalTally {
    open_until: Option<Millis>,
    held: u32,
}

/// What to do with one refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tallied {
    /// Record it now, standing for `attempts` (itself and any held before).
    Record { attempts: u32 },
    /// Counted; `flush_at` is set for the first refusal held in this window.
    Held { flush_at: Option<Millis> },
}

impl RefusalTally {
    pub fn refused(self, now: Millis) -> (RefusalTally, Tallied) {
        match self.open_until {
            Some(until) if now < until => {
                let flush_at = (self.held == 0).then_some(until);
                (RefusalTally { held: self.held + 1, ..self }, Tallied::Held { flush_at })
            }
            _ => (
                RefusalTally { open_until: Some(Millis(now.0 + REFUSAL_WINDOW_MS)), held: 0 },
                Tallied::Record { attempts: self.held + 1 },
            ),
        }
    }

    /// The window's end: how many refusals were held in it (0: none), now to be recorded.
    pub fn flushed(self) -> (RefusalTally, u32) {
        (RefusalTally { held: 0, ..self }, self.held)
    }
}

/// The events of a check reported for an address without an account: a failure (every guess
/// for it is wrong), or nothing for a check that was never made.
pub fn unknown_account_events(email: &Email, attempt: Attempt) -> Vec<Event> {
    match attempt {
        Attempt::Failed | Attempt::Succeeded => {
            vec![Event::LoginFailed {
                user: None,
                email: Some(email.clone()),
                reason: LoginFailure::UnknownAccount,
                attempts: 1,
            }]
        }
        Attempt::Abandoned => Vec::new(),
    }
}

/// An administrator's unlock: the cleared guard, whether it was locked, and the event.
pub fn unlock(user: UserId, guard: &LoginGuard, now: Millis) -> (LoginGuard, bool, Vec<Event>) {
    let was_locked = guard.is_locked(now);
    (guard.unlocked(), was_locked, vec![Event::AccountUnlocked { user, was_locked }])
}

/// A new session's identity and starting point, drawn by the shell.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: FamilyId,
    pub opening: Opening,
}

/// Policies a login is decided under.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy<'a> {
    pub lockout: &'a LockoutPolicy,
    pub cap: &'a SessionCap,
    pub sessions: &'a SessionPolicy,
}

// A transient return value, matched at once: boxing the large variant would only add an
// allocation per login.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginDecision {
    NoSuchPermit,
    /// Commit `guard` (a failure); answer as a wrong password.
    Refused {
        guard: LoginGuard,
        events: Vec<Event>,
    },
    /// Commit `guard` (a success); the cap refuses the new session.
    CapReached {
        guard: LoginGuard,
    },
    /// Commit `guard`, the revoked `evicted` sessions and the new session `family` as `id`.
    Opened {
        guard: LoginGuard,
        id: FamilyId,
        family: Family,
        evicted: Vec<(FamilyId, Family)>,
        events: Vec<Event>,
    },
}

/// Completes a login whose password verified. `live` are the account's live sessions; `new` is
/// the session to open if the login succeeds.
pub fn complete(
    identity: &Identity,
    guard: &LoginGuard,
    verified: Verified,
    live: &[Live<'_>],
    new: NewSession,
    now: Millis,
    policy: LoginPolicy<'_>,
) -> LoginDecision {
    let user = identity.user;
    let guard = match check(identity, guard, verified, now, policy.lockout) {
        Checked::NoSuchPermit => return LoginDecision::NoSuchPermit,
        Checked::Refused { guard: after } => {
            let events = failure_events(user, guard, &after, now);
            return LoginDecision::Refused { guard: after, events };
        }
        Checked::Accepted { guard } => guard,
    };
    let ages: Vec<(FamilyId, Millis)> = live.iter().map(|s| (s.id, s.family.created_at)).collect();
    let evict = match policy.cap.admit(&ages) {
        CapVerdict::Deny => return LoginDecision::CapReached { guard },
        CapVerdict::Open => Vec::new(),
        CapVerdict::OpenEvicting(evict) => evict,
    };
    let evicted = revoke_all(live.iter().filter(|s| evict.contains(&s.id)), now, RevokeReason::Cap);
    let mut events = vec![Event::LoginSucceeded { user, session: new.id }];
    events.extend(evicted.iter().map(|(session, _)| Event::SessionRevoked {
        user,
        session: *session,
        reason: RevokeReason::Cap,
    }));
    events.push(Event::SessionCreated { user, session: new.id });
    let family = Family::open(new.opening, now, policy.sessions);
    LoginDecision::Opened { guard, id: new.id, family, evicted, events }
}

/// Revokes each of `sessions` that is not revoked yet.
fn revoke_all<'a>(
    sessions: impl Iterator<Item = &'a Live<'a>>,
    now: Millis,
    reason: RevokeReason,
) -> Vec<(FamilyId, Family)> {
    sessions
        .filter_map(|s| match s.family.revoke(now, reason) {
            RevokeVerdict::Revoked { family } => Some((s.id, family)),
            RevokeVerdict::AlreadyRevoked => None,
        })
        .collect()
}

/// What a right password does for an account with a second factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeDecision {
    NoSuchPermit,
    /// Commit `guard` (a failure); answer as a wrong password.
    Refused {
        guard: LoginGuard,
        events: Vec<Event>,
    },
    /// Commit `guard` (the permit settled, failures kept) and `mfa` (with the new challenge).
    Challenged {
        guard: LoginGuard,
        mfa: Mfa,
    },
}

/// A password that verified for an account with a second factor opens a challenge, not a
/// session. Its permit is settled without resetting the account's failures: only a passed
/// second factor does that, so a wrong code counts like a wrong password (invariant 5).
pub fn challenge(
    identity: &Identity,
    guard: &LoginGuard,
    verified: Verified,
    mfa: &Mfa,
    digest: [u8; 32],
    now: Millis,
    lockout: &LockoutPolicy,
) -> ChallengeDecision {
    let attempt = match identity.accept_login(verified.credential_version) {
        LoginVerdict::Accepted => Attempt::Abandoned,
        LoginVerdict::StaleCredential | LoginVerdict::Disabled => Attempt::Failed,
    };
    match (guard.report(verified.permit, attempt, now, lockout), attempt) {
        (ReportVerdict::NoSuchPermit, _) => ChallengeDecision::NoSuchPermit,
        (ReportVerdict::Recorded { guard: after }, Attempt::Abandoned) => {
            ChallengeDecision::Challenged { guard: after, mfa: mfa.challenge(digest, verified.credential_version, now) }
        }
        (ReportVerdict::Recorded { guard: after }, Attempt::Failed | Attempt::Succeeded) => {
            let events = failure_events(identity.user, guard, &after, now);
            ChallengeDecision::Refused { guard: after, events }
        }
    }
}

/// Reports `attempt` under a permit granted in the same decision (so it cannot have expired).
fn settle(permitted: &LoginGuard, permit: u64, attempt: Attempt, now: Millis, lockout: &LockoutPolicy) -> LoginGuard {
    match permitted.report(permit, attempt, now, lockout) {
        ReportVerdict::Recorded { guard } => guard,
        ReportVerdict::NoSuchPermit => permitted.clone(),
    }
}

/// The second half of a login with a second factor.
#[allow(clippy::large_enum_variant)] // as for `LoginDecision`
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondFactorDecision {
    /// No live challenge has this token (unknown, expired, passed, or dead of wrong codes).
    NoChallenge,
    /// No code may be checked now (too soon after a failure, or locked): nothing changes.
    Wait { refused: PermitVerdict },
    /// Commit `guard` (a failure) and `mfa` (one more wrong code for the challenge).
    Wrong { guard: LoginGuard, mfa: Mfa, events: Vec<Event> },
    /// Commit `guard` and `mfa`: the credential changed since the password was checked, or
    /// the account was disabled; answer as a wrong code.
    Refused { guard: LoginGuard, mfa: Mfa, events: Vec<Event> },
    /// Commit `guard` (a success) and `mfa` (factor used, challenge passed); the cap refuses.
    CapReached { guard: LoginGuard, mfa: Mfa },
    /// Commit as for [`LoginDecision::Opened`], and `mfa`.
    Opened {
        guard: LoginGuard,
        mfa: Mfa,
        id: FamilyId,
        family: Family,
        evicted: Vec<(FamilyId, Family)>,
        events: Vec<Event>,
    },
}

/// The factor a login presents for the challenge whose token has `digest`.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    pub digest: [u8; 32],
    /// The enrolled factor's secret, unsealed by the shell.
    pub secret: &'a [u8],
    pub proof: &'a Proof,
}

/// Completes a login at its second factor: the code is a guess under a permit of the account's
/// guard, checked and consumed in the same decision, so a step or a recovery code opens at most
/// one session.
#[allow(clippy::too_many_arguments)]
pub fn pass_second_factor(
    identity: &Identity,
    guard: &LoginGuard,
    mfa: &Mfa,
    presented: Presented<'_>,
    live: &[Live<'_>],
    mut new: NewSession,
    now: Millis,
    policy: LoginPolicy<'_>,
) -> SecondFactorDecision {
    let user = identity.user;
    let Some(challenge) = mfa.find_challenge(presented.digest, now).cloned() else {
        return SecondFactorDecision::NoChallenge;
    };
    let (permitted, permit) = match guard.request_permit(now, policy.lockout) {
        PermitVerdict::Granted { guard, permit } => (guard, permit),
        refused @ (PermitVerdict::Throttled { .. } | PermitVerdict::Locked { .. }) => {
            return SecondFactorDecision::Wait { refused };
        }
    };
    let (used, amr, mut events) = match mfa.accept(user, presented.secret, presented.proof, now) {
        FactorVerdict::Accepted { mfa, amr, events } => (mfa.without_challenge(presented.digest, now), amr, events),
        FactorVerdict::Refused => {
            let after = settle(&permitted, permit, Attempt::Failed, now, policy.lockout);
            let events = failure_events_for(LoginFailure::MfaFailed, user, guard, &after, now);
            return SecondFactorDecision::Wrong { guard: after, mfa: mfa.wrong_code(presented.digest, now), events };
        }
    };
    new.opening.amr = Amr::PASSWORD.with(amr);
    let verified = Verified { permit, credential_version: challenge.credential_version };
    match complete(identity, &permitted, verified, live, new, now, policy) {
        LoginDecision::NoSuchPermit => SecondFactorDecision::NoChallenge,
        LoginDecision::Refused { guard, events } => SecondFactorDecision::Refused { guard, mfa: used, events },
        LoginDecision::CapReached { guard } => SecondFactorDecision::CapReached { guard, mfa: used },
        LoginDecision::Opened { guard, id, family, evicted, events: opened } => {
            events.extend(opened);
            SecondFactorDecision::Opened { guard, mfa: used, id, family, evicted, events }
        }
    }
}

/// How a session proves its user again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reproof {
    /// The password, verified by the edge under a permit.
    Password(Verified),
    /// A TOTP code, checked here under a permit.
    Code(String),
}

#[allow(clippy::large_enum_variant)] // as for `LoginDecision`
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReauthDecision {
    NoSuchPermit,
    /// A code, and the account has no second factor.
    NotEnrolled,
    Wait {
        refused: PermitVerdict,
    },
    /// Commit `guard` (a failure) and `mfa`; answer as a wrong password or code.
    Refused {
        guard: LoginGuard,
        mfa: Mfa,
        events: Vec<Event>,
    },
    /// Commit `guard` and `mfa`; the session is no longer live.
    SessionEnded {
        guard: LoginGuard,
        mfa: Mfa,
    },
    /// Commit `guard`, `mfa` and the session's new generation.
    Reauthenticated {
        guard: LoginGuard,
        mfa: Mfa,
        current: (FamilyId, Family),
        events: Vec<Event>,
    },
}

/// Re-authenticates the session `current`: a password or a code, each a guess under a permit;
/// then the session's `auth_time` is now and the proved factor joins its `amr` (NIST SP
/// 800-63B: within a session, one factor re-authenticates); its refresh lineage is unchanged.
#[allow(clippy::too_many_arguments)]
pub fn reauthenticate(
    identity: &Identity,
    guard: &LoginGuard,
    mfa: &Mfa,
    secret: Option<&[u8]>,
    proof: &Reproof,
    current: FamilyId,
    live: &[Live<'_>],
    now: Millis,
    lockout: &LockoutPolicy,
) -> ReauthDecision {
    let user = identity.user;
    let (guard, mfa, proved) = match proof {
        Reproof::Password(verified) => match check(identity, guard, *verified, now, lockout) {
            Checked::NoSuchPermit => return ReauthDecision::NoSuchPermit,
            Checked::Refused { guard: after } => {
                let events = failure_events(user, guard, &after, now);
                return ReauthDecision::Refused { guard: after, mfa: mfa.clone(), events };
            }
            Checked::Accepted { guard } => (guard, mfa.clone(), Amr::PASSWORD),
        },
        Reproof::Code(code) => {
            let (Some(secret), true) = (secret, mfa.enrolled()) else { return ReauthDecision::NotEnrolled };
            let (permitted, permit) = match guard.request_permit(now, lockout) {
                PermitVerdict::Granted { guard, permit } => (guard, permit),
                refused @ (PermitVerdict::Throttled { .. } | PermitVerdict::Locked { .. }) => {
                    return ReauthDecision::Wait { refused };
                }
            };
            let (attempt, accepted) = match mfa.accept(user, secret, &Proof::Code(code.clone()), now) {
                FactorVerdict::Accepted { mfa, amr, .. } => (Attempt::Succeeded, Some((mfa, amr))),
                FactorVerdict::Refused => (Attempt::Failed, None),
            };
            let after = settle(&permitted, permit, attempt, now, lockout);
            match accepted {
                Some((mfa, amr)) => (after, mfa, amr),
                None => {
                    let events = failure_events_for(LoginFailure::MfaFailed, user, guard, &after, now);
                    return ReauthDecision::Refused { guard: after, mfa: mfa.clone(), events };
                }
            }
        }
    };
    let Some(session) = live.iter().find(|s| s.id == current) else {
        return ReauthDecision::SessionEnded { guard, mfa };
    };
    let Some(family) = session.family.reauthenticated(now, proved) else {
        return ReauthDecision::SessionEnded { guard, mfa };
    };
    let second_factor = proved != Amr::PASSWORD;
    let events = vec![Event::Reauthenticated { user, session: current, second_factor }];
    ReauthDecision::Reauthenticated { guard, mfa, current: (current, family), events }
}

/// A password change the caller asked for, its current password verified under `permit`.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    pub verified: Verified,
    pub new_hash: &'a str,
    /// The caller's session: it continues, with a new generation.
    pub current: FamilyId,
    pub device: DeviceHash,
    pub revoke_others: bool,
}

#[allow(clippy::large_enum_variant)] // as for `LoginDecision`
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeDecision {
    NoSuchPermit,
    /// Commit `guard` (a failure); answer as a wrong current password.
    Refused {
        guard: LoginGuard,
        events: Vec<Event>,
    },
    /// Commit `guard` (a success); the caller's session is no longer live, nothing changes.
    SessionEnded {
        guard: LoginGuard,
    },
    /// Commit `guard`, `identity`, the caller's reissued session and the revoked others.
    Changed {
        guard: LoginGuard,
        identity: Identity,
        current: (FamilyId, Family),
        revoked: Vec<(FamilyId, Family)>,
        events: Vec<Event>,
    },
}

/// Changes the password, in one decision: the guard records the success, the identity takes
/// the new hash and a new credential version, the caller's session moves to a new generation
/// (so every refresh token handed out before is superseded) and, unless told otherwise, every
/// other session of the account is revoked.
pub fn change_password(
    identity: &Identity,
    guard: &LoginGuard,
    change: &Change<'_>,
    live: &[Live<'_>],
    now: Millis,
    lockout: &LockoutPolicy,
    sessions: &SessionPolicy,
) -> ChangeDecision {
    let user = identity.user;
    let guard = match check(identity, guard, change.verified, now, lockout) {
        Checked::NoSuchPermit => return ChangeDecision::NoSuchPermit,
        Checked::Refused { guard: after } => {
            let events = failure_events(user, guard, &after, now);
            return ChangeDecision::Refused { guard: after, events };
        }
        Checked::Accepted { guard } => guard,
    };
    let Some(current) = live.iter().find(|s| s.id == change.current) else {
        return ChangeDecision::SessionEnded { guard };
    };
    let Some(reissued) = current.family.reissued(now, change.device, sessions) else {
        return ChangeDecision::SessionEnded { guard };
    };
    let revoked = if change.revoke_others {
        revoke_all(live.iter().filter(|s| s.id != change.current), now, RevokeReason::PasswordChange)
    } else {
        Vec::new()
    };
    let mut events: Vec<Event> = revoked
        .iter()
        .map(|(session, _)| Event::SessionRevoked { user, session: *session, reason: RevokeReason::PasswordChange })
        .collect();
    events.push(Event::PasswordChanged { user, others_revoked: change.revoke_others });
    ChangeDecision::Changed {
        guard,
        identity: identity.with_password(change.new_hash.to_string()),
        current: (current.id, reissued),
        revoked,
        events,
    }
}

/// What a registration for an address decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterDecision {
    /// Commit the new identity and its email index entry.
    Create { identity: Identity, events: Vec<Event> },
    /// The address belongs to an account already.
    Taken,
}

/// Registers `email` for `user`, unless `holder` (the account the address belongs to, if
/// any) says it is taken.
pub fn register(
    holder: Option<UserId>,
    user: UserId,
    email: &Email,
    password_hash: &str,
    now: Millis,
) -> RegisterDecision {
    match holder {
        Some(_) => RegisterDecision::Taken,
        None => RegisterDecision::Create {
            identity: Identity::new(user, email.clone(), password_hash.to_string(), now),
            events: vec![Event::UserRegistered { user, email: email.clone() }],
        },
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn refusals_are_recorded_once_per_window_and_every_one_is_counted() {
        let tally = RefusalTally::default();
        let (tally, first) = tally.refused(Millis(0));
        assert_eq!(first, Tallied::Record { attempts: 1 });
        let (tally, second) = tally.refused(Millis(10));
        assert_eq!(second, Tallied::Held { flush_at: Some(Millis(REFUSAL_WINDOW_MS)) });
        let (tally, third) = tally.refused(Millis(20));
        assert_eq!(third, Tallied::Held { flush_at: None });
        let (tally, held) = tally.flushed();
        assert_eq!(held, 2);
        let (tally, later) = tally.refused(Millis(REFUSAL_WINDOW_MS + 1));
        assert_eq!(later, Tallied::Record { attempts: 1 });
        // A flush that never came (the timer was lost): the next record carries the count.
        let (tally, _) = tally.refused(Millis(REFUSAL_WINDOW_MS + 2));
        assert_eq!(tally.refused(Millis(10 * REFUSAL_WINDOW_MS)).1, Tallied::Record { attempts: 2 });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Amr, CapAction};

    const T0: Millis = Millis(1_000_000);
    const PHONE: DeviceHash = DeviceHash([1; 16]);

    fn identity() -> Identity {
        Identity::new(UserId([1; 16]), Email::parse("a@example.com").unwrap(), "$argon2id$old".into(), Millis(1))
    }

    fn permitted(guard: &LoginGuard) -> (LoginGuard, u64) {
        match guard.request_permit(T0, &LockoutPolicy::default()) {
            PermitVerdict::Granted { guard, permit } => (guard, permit),
            other => panic!("{other:?}"),
        }
    }

    fn opening(created: Millis) -> Opening {
        Opening {
            user: UserId([1; 16]),
            salt: [2; 16],
            device: PHONE,
            ip_prefix: None,
            amr: Amr::PASSWORD,
            auth_time: created,
            device_label: "phone".into(),
        }
    }

    fn session(n: u8, created: Millis) -> (FamilyId, Family) {
        (FamilyId([n; 16]), Family::open(opening(created), created, &SessionPolicy::default()))
    }

    fn new_session() -> NewSession {
        NewSession { id: FamilyId([9; 16]), opening: opening(T0) }
    }

    /// A login of `identity()` against `guard`, with a new session ready to open.
    fn login(
        guard: &LoginGuard,
        verified: Verified,
        live: &[Live<'_>],
        cap: SessionCap,
        lockout: LockoutPolicy,
    ) -> LoginDecision {
        let sessions = SessionPolicy::default();
        let policy = LoginPolicy { lockout: &lockout, cap: &cap, sessions: &sessions };
        complete(&identity(), guard, verified, live, new_session(), T0, policy)
    }

    #[test]
    fn a_login_opens_a_session_and_evicts_the_oldest_beyond_the_cap() {
        let (guard, permit) = permitted(&LoginGuard::default());
        let stored = [session(1, Millis(10)), session(2, Millis(5))];
        let live: Vec<Live<'_>> = stored.iter().map(|(id, family)| Live { id: *id, family }).collect();
        let cap = SessionCap { max: 2, action: CapAction::EvictOldest };
        let decision = login(&guard, Verified { permit, credential_version: 1 }, &live, cap, LockoutPolicy::default());
        let LoginDecision::Opened { guard, id, family, evicted, events } = decision else { panic!("{decision:?}") };
        assert_eq!((id, family.generation.0, guard.permits.len()), (FamilyId([9; 16]), 1, 0));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].0, FamilyId([2; 16]), "the oldest");
        assert_eq!(evicted[0].1.revoked.map(|r| r.reason), Some(RevokeReason::Cap));
        assert_eq!(
            events.iter().map(Event::action).collect::<Vec<_>>(),
            vec!["login.succeeded", "session.revoked", "session.created"]
        );
    }

    #[test]
    fn a_login_against_a_replaced_credential_is_a_failure_that_can_lock() {
        let lockout = LockoutPolicy { threshold: 1, ..LockoutPolicy::default() };
        let guard = match LoginGuard::default().request_permit(T0, &lockout) {
            PermitVerdict::Granted { guard, .. } => guard,
            other => panic!("{other:?}"),
        };
        let decision =
            login(&guard, Verified { permit: 0, credential_version: 2 }, &[], SessionCap::default(), lockout);
        let LoginDecision::Refused { guard, events } = decision else { panic!("{decision:?}") };
        assert!(guard.is_locked(T0));
        assert_eq!(events.iter().map(Event::action).collect::<Vec<_>>(), vec!["login.failed", "account.locked"]);
    }

    #[test]
    fn a_denying_cap_records_the_success_but_opens_nothing() {
        let (guard, permit) = permitted(&LoginGuard { failures: 3, ..LoginGuard::default() });
        let stored = [session(1, Millis(10))];
        let live: Vec<Live<'_>> = stored.iter().map(|(id, family)| Live { id: *id, family }).collect();
        let cap = SessionCap { max: 1, action: CapAction::Deny };
        let decision = login(&guard, Verified { permit, credential_version: 1 }, &live, cap, LockoutPolicy::default());
        assert!(matches!(decision, LoginDecision::CapReached { guard } if guard.failures == 0));
        let unknown = Verified { permit: 42, credential_version: 1 };
        assert_eq!(
            login(&guard, unknown, &[], SessionCap::default(), LockoutPolicy::default()),
            LoginDecision::NoSuchPermit
        );
    }

    #[test]
    fn a_password_change_reissues_the_callers_session_and_revokes_the_others() {
        let (guard, permit) = permitted(&LoginGuard::default());
        let stored = [session(1, Millis(10)), session(2, Millis(20))];
        let live: Vec<Live<'_>> = stored.iter().map(|(id, family)| Live { id: *id, family }).collect();
        let change = |revoke_others, current| Change {
            verified: Verified { permit, credential_version: 1 },
            new_hash: "$argon2id$new",
            current,
            device: PHONE,
            revoke_others,
        };
        let (lockout, sessions) = (LockoutPolicy::default(), SessionPolicy::default());
        let now = T0.saturating_add(Duration::from_secs(1));
        let decision =
            change_password(&identity(), &guard, &change(true, FamilyId([2; 16])), &live, now, &lockout, &sessions);
        let ChangeDecision::Changed { identity: changed, current, revoked, .. } = decision else { panic!() };
        assert_eq!((changed.credential_version, changed.password_hash.as_str()), (2, "$argon2id$new"));
        assert_eq!((current.0, current.1.generation.0), (FamilyId([2; 16]), 2));
        assert_eq!(revoked.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![FamilyId([1; 16])]);

        let kept =
            change_password(&identity(), &guard, &change(false, FamilyId([2; 16])), &live, now, &lockout, &sessions);
        assert!(matches!(kept, ChangeDecision::Changed { revoked, .. } if revoked.is_empty()));
        let ended =
            change_password(&identity(), &guard, &change(true, FamilyId([7; 16])), &live, now, &lockout, &sessions);
        assert!(matches!(ended, ChangeDecision::SessionEnded { .. }));
    }

    #[test]
    fn an_address_is_registered_once() {
        let email = Email::parse("a@example.com").unwrap();
        assert!(matches!(register(None, UserId([1; 16]), &email, "$h", T0), RegisterDecision::Create { .. }));
        assert_eq!(register(Some(UserId([2; 16])), UserId([1; 16]), &email, "$h", T0), RegisterDecision::Taken);
    }
}

#[cfg(test)]
mod second_factor_tests {
    use totp_rs::{Algorithm, Builder};

    use super::*;
    use crate::domain::Sealed;
    use crate::domain::mfa::DIGITS;

    const T0: Millis = Millis(1_700_000_000_000);
    const SECRET: &[u8] = b"12345678901234567890";
    const PHONE: DeviceHash = DeviceHash([1; 16]);

    fn code(at: Millis) -> String {
        let totp =
            Builder::new().with_algorithm(Algorithm::SHA1).with_digits(DIGITS as u8).with_secret(SECRET.to_vec());
        totp.build_noncompliant().generate(at.as_secs()).to_string()
    }

    fn identity() -> Identity {
        Identity::new(UserId([1; 16]), Email::parse("a@example.com").unwrap(), "$argon2id$h".into(), Millis(1))
    }

    fn enrolled() -> Mfa {
        let pending = Mfa::default().begin_enrolment([7; 16], Sealed { nonce: [0; 24], bytes: vec![] }, T0).unwrap();
        pending.confirm(UserId([1; 16]), SECRET, &code(T0), vec![[9; 32]], T0).unwrap().0
    }

    fn new_session() -> NewSession {
        let opening = Opening {
            user: UserId([1; 16]),
            salt: [2; 16],
            device: PHONE,
            ip_prefix: None,
            amr: Amr::PASSWORD,
            auth_time: T0,
            device_label: "phone".into(),
        };
        NewSession { id: FamilyId([9; 16]), opening }
    }

    fn permitted(guard: &LoginGuard, now: Millis) -> (LoginGuard, u64) {
        match guard.request_permit(now, &LockoutPolicy::default()) {
            PermitVerdict::Granted { guard, permit } => (guard, permit),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_right_password_opens_a_challenge_and_keeps_the_failures() {
        let (guard, permit) = permitted(&LoginGuard { failures: 3, ..LoginGuard::default() }, T0);
        let lockout = LockoutPolicy::default();
        let verified = Verified { permit, credential_version: 1 };
        let decision = challenge(&identity(), &guard, verified, &enrolled(), [5; 32], T0, &lockout);
        let ChallengeDecision::Challenged { guard, mfa } = decision else { panic!("{decision:?}") };
        assert_eq!((guard.failures, guard.permits.len()), (3, 0), "settled, not reset");
        assert!(mfa.find_challenge([5; 32], T0).is_some());
    }

    #[test]
    fn a_wrong_code_is_a_failure_and_a_right_one_opens_an_aal2_session_once() {
        let mfa = enrolled().challenge([5; 32], 1, T0);
        let (lockout, cap, sessions) = (LockoutPolicy::default(), SessionCap::default(), SessionPolicy::default());
        let policy = LoginPolicy { lockout: &lockout, cap: &cap, sessions: &sessions };
        let later = Millis(T0.0 + 30_000);
        let wrong = Proof::Code(if code(later) == "000000" { "000001".into() } else { "000000".into() });
        let presented = Presented { digest: [5; 32], secret: SECRET, proof: &wrong };
        let decision =
            pass_second_factor(&identity(), &LoginGuard::default(), &mfa, presented, &[], new_session(), later, policy);
        let SecondFactorDecision::Wrong { guard, mfa, events } = decision else { panic!("{decision:?}") };
        assert_eq!(guard.failures, 1);
        assert_eq!(
            events[0],
            Event::LoginFailed {
                user: Some(UserId([1; 16])),
                email: None,
                reason: LoginFailure::MfaFailed,
                attempts: 1
            }
        );
        let too_soon = pass_second_factor(&identity(), &guard, &mfa, presented, &[], new_session(), later, policy);
        assert!(matches!(too_soon, SecondFactorDecision::Wait { .. }), "a code guess waits like a password guess");

        let after_delay = Millis(later.0 + 1_000);
        let right = Proof::Code(code(later));
        let presented = Presented { digest: [5; 32], secret: SECRET, proof: &right };
        let decision =
            pass_second_factor(&identity(), &guard, &mfa, presented, &[], new_session(), after_delay, policy);
        let SecondFactorDecision::Opened { guard, mfa, family, .. } = decision else { panic!("{decision:?}") };
        assert_eq!((guard.failures, family.amr), (0, Amr::PASSWORD.with(Amr::OTP)));
        assert!(mfa.find_challenge([5; 32], after_delay).is_none(), "passed once");
        let again = mfa.challenge([6; 32], 1, after_delay);
        let presented = Presented { digest: [6; 32], secret: SECRET, proof: &right };
        let replay =
            pass_second_factor(&identity(), &guard, &again, presented, &[], new_session(), after_delay, policy);
        assert!(matches!(replay, SecondFactorDecision::Wrong { .. }), "the step is used");
    }

    #[test]
    fn re_authentication_renews_auth_time_and_adds_the_proved_factor() {
        let sessions = SessionPolicy::default();
        let family = Family::open(new_session().opening, T0, &sessions);
        let live = [Live { id: FamilyId([9; 16]), family: &family }];
        let later = Millis(T0.0 + 60_000);
        let lockout = LockoutPolicy::default();
        let mfa = enrolled();
        let proof = Reproof::Code(code(later));
        let decision = reauthenticate(
            &identity(),
            &LoginGuard::default(),
            &mfa,
            Some(SECRET),
            &proof,
            FamilyId([9; 16]),
            &live,
            later,
            &lockout,
        );
        let ReauthDecision::Reauthenticated { current: (id, renewed), mfa: used, .. } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!((id, renewed.auth_time, renewed.amr), (FamilyId([9; 16]), later, Amr::PASSWORD.with(Amr::OTP)));
        assert_eq!(renewed.generation, family.generation, "the refresh lineage is unchanged");
        assert!(used.last_step > mfa.last_step);
        let none = reauthenticate(
            &identity(),
            &LoginGuard::default(),
            &Mfa::default(),
            None,
            &proof,
            FamilyId([9; 16]),
            &live,
            later,
            &lockout,
        );
        assert_eq!(none, ReauthDecision::NotEnrolled);
    }
}
