//! Security events: what a rule's decision means for "who did what, when".
//!
//! Rules return the events their verdict implies next to the state it carries; the shell
//! records them exactly when the decision takes effect: in the same replicated write as the
//! change (see `commit` and `audit`), or in a write of their own for a decision that changes
//! nothing (a refused attempt). They carry ids and reasons, and an email address only where no
//! account id can stand for it (the account does not exist, or is being created); the audit
//! trail seals that, and never holds a token, a password or a hash.

use super::email::Email;
use super::family::RevokeReason;
use super::ids::{FamilyId, Generation, UserId};
use super::time::Millis;

/// Why a login attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    /// A guess was evaluated and wrong (or right against a replaced credential, or for a
    /// disabled account: answered the same way).
    BadPassword,
    /// A guess for an address without an account.
    UnknownAccount,
    /// No guess was evaluated: the account (or address) is locked.
    Locked,
    /// No guess was evaluated: too soon after a failure, too many guesses in flight, or the
    /// client network is throttled.
    Throttled,
    /// The password was right, and the second factor's code wrong, replayed or used already.
    MfaFailed,
}

impl LoginFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::BadPassword => "bad_password",
            LoginFailure::UnknownAccount => "unknown_account",
            LoginFailure::Locked => "locked",
            LoginFailure::Throttled => "throttled",
            LoginFailure::MfaFailed => "mfa_failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    UserRegistered {
        user: UserId,
        email: Email,
    },
    LoginSucceeded {
        user: UserId,
        session: FamilyId,
    },
    /// `user` is `None` for an address without an account; then `email` names the address.
    /// `attempts`: 1 for an evaluated guess; for refusals (`locked`, `throttled`), how many
    /// this event stands for (see `login::RefusalTally`).
    LoginFailed {
        user: Option<UserId>,
        email: Option<Email>,
        reason: LoginFailure,
        attempts: u32,
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
    /// A refresh from a device other than the session's, refused (the `Reject` binding).
    DeviceMismatchRefused {
        user: UserId,
        session: FamilyId,
    },
    /// An authenticator app was confirmed with its first code.
    TotpEnrolled {
        user: UserId,
    },
    TotpDisabled {
        user: UserId,
    },
    RecoveryCodesRegenerated {
        user: UserId,
    },
    /// A recovery code stood in for a code; `remaining` are left.
    RecoveryCodeUsed {
        user: UserId,
        remaining: u32,
    },
    /// The session proved its user again (step-up): a new `auth_time`, and `second_factor`
    /// when that proof was a code.
    Reauthenticated {
        user: UserId,
        session: FamilyId,
        second_factor: bool,
    },
    /// A signing key was published as the active key's successor (it signs nothing yet).
    KeyPublished {
        kid: String,
    },
    /// A signing key began to sign.
    KeyActivated {
        kid: String,
        rotation: KeyRotation,
    },
    /// A signing key stopped signing; it stays published until its last token expires.
    KeyRetired {
        kid: String,
    },
    /// A signing key left the key set: tokens it signed no longer verify anywhere.
    KeyRemoved {
        kid: String,
        reason: KeyRemoval,
    },
    /// A resource-server client was registered (introspection, revocation).
    ClientCreated {
        client: String,
    },
    ClientDeleted {
        client: String,
    },
}

/// Why a key began to sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// The cluster's first key.
    First,
    /// The schedule replaced the previous key.
    Scheduled,
    /// An operator rotated at once, keeping the previous key as retired.
    Immediate,
    /// An operator rotated at once and revoked the previous key.
    Emergency,
}

impl KeyRotation {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRotation::First => "first",
            KeyRotation::Scheduled => "scheduled",
            KeyRotation::Immediate => "immediate",
            KeyRotation::Emergency => "emergency",
        }
    }
}

/// Why a key left the key set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRemoval {
    /// Retired long enough that every token it signed has expired.
    Expired,
    /// Revoked by an emergency rotation.
    Revoked,
}

impl KeyRemoval {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRemoval::Expired => "expired",
            KeyRemoval::Revoked => "revoked",
        }
    }
}

/// One value of an event's `changes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Text(&'static str),
    Number(u64),
    Flag(bool),
}

impl Event {
    /// The same event standing for `attempts` attempts (a coalesced refusal); other events
    /// are unchanged.
    pub fn standing_for(self, attempts: u32) -> Event {
        match self {
            Event::LoginFailed { user, email, reason, .. } => Event::LoginFailed { user, email, reason, attempts },
            other => other,
        }
    }

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
            Event::DeviceMismatchRefused { .. } => "device.mismatch_refused",
            Event::TotpEnrolled { .. } => "mfa.totp_enrolled",
            Event::TotpDisabled { .. } => "mfa.totp_disabled",
            Event::RecoveryCodesRegenerated { .. } => "mfa.recovery_codes_regenerated",
            Event::RecoveryCodeUsed { .. } => "mfa.recovery_code_used",
            Event::Reauthenticated { .. } => "session.reauthenticated",
            Event::KeyPublished { .. } => "key.published",
            Event::KeyActivated { .. } => "key.activated",
            Event::KeyRetired { .. } => "key.retired",
            Event::KeyRemoved { .. } => "key.removed",
            Event::ClientCreated { .. } => "client.created",
            Event::ClientDeleted { .. } => "client.deleted",
        }
    }

    /// The account the event is about, if there is one.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Event::UserRegistered { user, .. }
            | Event::LoginSucceeded { user, .. }
            | Event::AccountLocked { user, .. }
            | Event::AccountUnlocked { user, .. }
            | Event::SessionCreated { user, .. }
            | Event::SessionRevoked { user, .. }
            | Event::ReplayDetected { user, .. }
            | Event::PasswordChanged { user, .. }
            | Event::DeviceMismatchRefused { user, .. }
            | Event::TotpEnrolled { user }
            | Event::TotpDisabled { user }
            | Event::RecoveryCodesRegenerated { user }
            | Event::RecoveryCodeUsed { user, .. }
            | Event::Reauthenticated { user, .. } => Some(*user),
            Event::LoginFailed { user, .. } => *user,
            Event::KeyPublished { .. }
            | Event::KeyActivated { .. }
            | Event::KeyRetired { .. }
            | Event::KeyRemoved { .. }
            | Event::ClientCreated { .. }
            | Event::ClientDeleted { .. } => None,
        }
    }

    /// The session the event is about, if it is about one (otherwise it is about the account).
    pub fn session(&self) -> Option<FamilyId> {
        match self {
            Event::LoginSucceeded { session, .. }
            | Event::SessionCreated { session, .. }
            | Event::SessionRevoked { session, .. }
            | Event::ReplayDetected { session, .. }
            | Event::DeviceMismatchRefused { session, .. }
            | Event::Reauthenticated { session, .. } => Some(*session),
            Event::TotpEnrolled { .. }
            | Event::TotpDisabled { .. }
            | Event::RecoveryCodesRegenerated { .. }
            | Event::RecoveryCodeUsed { .. }
            | Event::UserRegistered { .. }
            | Event::LoginFailed { .. }
            | Event::AccountLocked { .. }
            | Event::AccountUnlocked { .. }
            | Event::PasswordChanged { .. }
            | Event::KeyPublished { .. }
            | Event::KeyActivated { .. }
            | Event::KeyRetired { .. }
            | Event::KeyRemoved { .. }
            | Event::ClientCreated { .. }
            | Event::ClientDeleted { .. } => None,
        }
    }

    /// What the event is about when it is neither a session nor an account: its resource type
    /// and id (a signing key, a client).
    pub fn resource(&self) -> Option<(&'static str, &str)> {
        match self {
            Event::KeyPublished { kid }
            | Event::KeyActivated { kid, .. }
            | Event::KeyRetired { kid }
            | Event::KeyRemoved { kid, .. } => Some(("signing_key", kid)),
            Event::ClientCreated { client } | Event::ClientDeleted { client } => Some(("client", client)),
            Event::UserRegistered { .. }
            | Event::LoginSucceeded { .. }
            | Event::LoginFailed { .. }
            | Event::AccountLocked { .. }
            | Event::AccountUnlocked { .. }
            | Event::SessionCreated { .. }
            | Event::SessionRevoked { .. }
            | Event::ReplayDetected { .. }
            | Event::PasswordChanged { .. }
            | Event::DeviceMismatchRefused { .. }
            | Event::TotpEnrolled { .. }
            | Event::TotpDisabled { .. }
            | Event::RecoveryCodesRegenerated { .. }
            | Event::RecoveryCodeUsed { .. }
            | Event::Reauthenticated { .. } => None,
        }
    }

    /// The email address the event names (sealed in the audit trail).
    pub fn email(&self) -> Option<&Email> {
        match self {
            Event::UserRegistered { email, .. } => Some(email),
            Event::LoginFailed { email, .. } => email.as_ref(),
            Event::LoginSucceeded { .. }
            | Event::AccountLocked { .. }
            | Event::AccountUnlocked { .. }
            | Event::SessionCreated { .. }
            | Event::SessionRevoked { .. }
            | Event::ReplayDetected { .. }
            | Event::PasswordChanged { .. }
            | Event::DeviceMismatchRefused { .. }
            | Event::TotpEnrolled { .. }
            | Event::TotpDisabled { .. }
            | Event::RecoveryCodesRegenerated { .. }
            | Event::RecoveryCodeUsed { .. }
            | Event::Reauthenticated { .. }
            | Event::KeyPublished { .. }
            | Event::KeyActivated { .. }
            | Event::KeyRetired { .. }
            | Event::KeyRemoved { .. }
            | Event::ClientCreated { .. }
            | Event::ClientDeleted { .. } => None,
        }
    }

    /// What changed, as plain named values (no personal data).
    pub fn changes(&self) -> Vec<(&'static str, Change)> {
        match self {
            Event::LoginFailed { reason, attempts, .. } => match reason {
                LoginFailure::Locked | LoginFailure::Throttled => {
                    vec![("reason", Change::Text(reason.as_str())), ("attempts", Change::Number(u64::from(*attempts)))]
                }
                LoginFailure::BadPassword | LoginFailure::UnknownAccount | LoginFailure::MfaFailed => {
                    vec![("reason", Change::Text(reason.as_str()))]
                }
            },
            Event::AccountLocked { failures, until, .. } => {
                let mut changes = vec![("failures", Change::Number(u64::from(*failures)))];
                match until {
                    Some(until) => changes.push(("until", Change::Number(until.0))),
                    None => changes.push(("permanent", Change::Flag(true))),
                }
                changes
            }
            Event::AccountUnlocked { was_locked, .. } => vec![("was_locked", Change::Flag(*was_locked))],
            Event::SessionRevoked { reason, .. } => vec![("reason", Change::Text(reason.as_str()))],
            Event::ReplayDetected { presented, .. } => vec![("presented_generation", Change::Number(presented.0))],
            Event::PasswordChanged { others_revoked, .. } => vec![("others_revoked", Change::Flag(*others_revoked))],
            Event::RecoveryCodeUsed { remaining, .. } => vec![("remaining", Change::Number(u64::from(*remaining)))],
            Event::Reauthenticated { second_factor, .. } => vec![("second_factor", Change::Flag(*second_factor))],
            Event::KeyActivated { rotation, .. } => vec![("rotation", Change::Text(rotation.as_str()))],
            Event::KeyRemoved { reason, .. } => vec![("reason", Change::Text(reason.as_str()))],
            Event::KeyPublished { .. }
            | Event::KeyRetired { .. }
            | Event::ClientCreated { .. }
            | Event::ClientDeleted { .. } => Vec::new(),
            Event::UserRegistered { .. }
            | Event::LoginSucceeded { .. }
            | Event::SessionCreated { .. }
            | Event::DeviceMismatchRefused { .. }
            | Event::TotpEnrolled { .. }
            | Event::TotpDisabled { .. }
            | Event::RecoveryCodesRegenerated { .. } => Vec::new(),
        }
    }
}
