//! Security events: what a rule's decision means for "who did what, when".
//!
//! Rules return the events their verdict implies next to the state it carries; the shell
//! records them exactly when the decision takes effect (after its write commits, or at once
//! for a decision that writes nothing). They carry ids and reasons only: never a token, a
//! password, a hash or an email address.

use super::family::RevokeReason;
use super::ids::{FamilyId, Generation, UserId};
use super::time::Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    UserRegistered {
        user: UserId,
    },
    LoginSucceeded {
        user: UserId,
        session: FamilyId,
    },
    /// A guess evaluated under a permit was wrong, or right against a replaced credential or a
    /// disabled account (answered like a wrong password).
    LoginFailed {
        user: UserId,
    },
    /// The failure recorded with this event locked the account (`until: None`: until an
    /// administrator unlocks it).
    AccountLocked {
        user: UserId,
        failures: u32,
        until: Option<Millis>,
    },
    AccountUnlocked {
        user: UserId,
        was_locked: bool,
    },
    SessionCreated {
        user: UserId,
        session: FamilyId,
    },
    SessionRevoked {
        user: UserId,
        session: FamilyId,
        reason: RevokeReason,
    },
    /// An older generation of a refresh token came back: the session is revoked.
    ReplayDetected {
        user: UserId,
        session: FamilyId,
        presented: Generation,
    },
    PasswordChanged {
        user: UserId,
        others_revoked: bool,
    },
    /// A refresh from a device other than the session's: refused, or allowed and logged
    /// (depending on the binding policy).
    DeviceMismatch {
        user: UserId,
        session: FamilyId,
        refused: bool,
    },
}

impl Event {
    /// The event's name in the audit vocabulary (`session.revoked`, …).
    pub fn action(&self) -> &'static str {
        match self {
            Event::UserRegistered { .. } => "user.registered",
            Event::LoginSucceeded { .. } => "login.succeeded",
            Event::LoginFailed { .. } => "login.failed",
            Event::AccountLocked { .. } => "account.locked",
            Event::AccountUnlocked { .. } => "account.unlocked",
            Event::SessionCreated { .. } => "session.created",
            Event::SessionRevoked { .. } => "session.revoked",
            Event::ReplayDetected { .. } => "session.replay_detected",
            Event::PasswordChanged { .. } => "password.changed",
            Event::DeviceMismatch { .. } => "device.mismatch",
        }
    }
}
