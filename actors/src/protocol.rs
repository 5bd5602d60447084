//! The answers operations give, and the failures they report. These cross the peer network
//! when a follower forwards an operation to the leader, so they are serializable and only
//! ever grow at the end.

use serde::{Deserialize, Serialize};

use crate::domain::{Amr, DeviceHash, Email, FamilyId, Generation, IpPrefix, Millis, RefreshToken, UserId};

/// Who is asking, as far as the domain cares: the device fingerprint, the client network and a
/// short description of the device for session lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientContext {
    pub device: DeviceHash,
    pub ip: Option<IpPrefix>,
    pub label: String,
}

/// What the edge needs to answer with tokens for a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub family: FamilyId,
    pub user: UserId,
    pub generation: Generation,
    pub refresh_token: RefreshToken,
    pub auth_time: Millis,
    pub amr: Amr,
    /// When the refresh token stops working if unused (idle deadline, capped by the absolute one).
    pub refresh_expires: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutcome {
    Registered,
    EmailTaken,
}

/// Whether a client network may do something now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admission {
    Allowed,
    Throttled { retry_after_secs: u64 },
}

/// Whose password a login checks: an account, or an address with no account (which gets
/// the same treatment, so the two cannot be told apart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginSubject {
    Account(UserId),
    Unknown(Email),
}

/// The first half of a login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginStart {
    /// Verify the password under `permit`, against `password_hash` (a dummy hash when there
    /// is none), then report the result.
    Permit { subject: LoginSubject, permit: u64, password_hash: Option<String>, credential_version: u32 },
    /// Not now: too soon after a failure, locked, or the client network is throttled. The same
    /// answer whatever the reason and whether or not the account exists.
    Wait { retry_after_secs: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginOutcome {
    Opened(SessionGrant),
    /// The permit expired, the verified credential is no longer current, or the account is
    /// disabled. Answered exactly like a wrong password.
    Rejected,
    /// The session cap is reached and its policy is to refuse (not a failed attempt).
    CapReached,
    /// The password was right and the account has a second factor: no session yet; the
    /// client presents a code with `token` (see `PassSecondFactor`).
    MfaRequired {
        token: String,
        expires_in_secs: u64,
    },
}

/// The second half of a login with a second factor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecondFactorOutcome {
    Opened(SessionGrant),
    /// No live challenge for this token (unknown, expired, passed, or dead of wrong codes).
    NoChallenge,
    /// The code or recovery code is wrong, replayed or used.
    Refused,
    Wait {
        retry_after_secs: u64,
    },
    CapReached,
}

/// A step-up: the session proved its user again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReauthOutcome {
    Reauthenticated(SessionGrant),
    /// The password or code is wrong (counted as a failure).
    Refused,
    /// A code, and the account has no second factor.
    NotEnrolled,
    Wait {
        retry_after_secs: u64,
    },
    SessionEnded,
}

/// The start of a TOTP enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrolOutcome {
    Started,
    AlreadyEnrolled,
}

/// The confirmation of a TOTP enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfirmOutcome {
    Confirmed,
    /// No pending enrolment with this id (unknown, expired or confirmed already).
    NoSuchEnrolment,
    WrongCode,
}

/// A change to an enrolled second factor (disable, new recovery codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MfaChange {
    Done,
    NotEnrolled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshOutcome {
    Rotated(SessionGrant),
    /// A retry of the immediate parent within the grace window: the same successor.
    Grace(SessionGrant),
    /// An older token came back: the family is now revoked.
    Replayed,
    Expired,
    Revoked,
    Invalid,
    /// The current token from another device, refused under `Reject` binding; nothing changed.
    ForeignDevice,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasswordOutcome {
    /// Changed; the caller's session continues with this new generation.
    Changed(SessionGrant),
    /// The permit expired or the credential changed meanwhile (counted as a failure).
    Rejected,
    /// The caller's session is no longer live.
    SessionEnded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogoutOutcome {
    LoggedOut,
    AlreadyLoggedOut,
    /// No such session for this user.
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnlockOutcome {
    Unlocked,
    WasNotLocked,
    NoSuchUser,
}

/// Why an operation produced no answer. Variants carry the cause for the log; the edge maps
/// each to a fixed sentence for clients.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ActorError {
    #[error("this node is not the leader")]
    NotLeader,
    /// A write conflicted twice in a row; the caller may retry.
    #[error("concurrent updates; retry")]
    Contention,
    #[error("{0}")]
    Unavailable(String),
    #[error("stored state is malformed: {0}")]
    Corrupt(String),
    /// The audit trail's backlog in the replicas is full (the durable store has not taken it
    /// for a while): writes that record events are refused until it drains.
    #[error("the audit trail cannot be stored right now")]
    AuditBacklog,
}

impl From<crate::ports::ReplicaError> for ActorError {
    fn from(e: crate::ports::ReplicaError) -> ActorError {
        use crate::ports::ReplicaError;
        match e {
            ReplicaError::NotLeader => ActorError::NotLeader,
            ReplicaError::Unavailable(reason) => ActorError::Unavailable(reason),
            ReplicaError::Corrupt(reason) => ActorError::Corrupt(reason),
        }
    }
}

impl From<actix::MailboxError> for ActorError {
    fn from(e: actix::MailboxError) -> ActorError {
        ActorError::Unavailable(format!("actor mailbox: {e}"))
    }
}
