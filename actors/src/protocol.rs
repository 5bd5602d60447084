//! What the edge asks of the domain and what it gets back. These types also cross the peer
//! network when a follower forwards a request to the leader, so they are serializable and
//! only ever grow at the end.

use serde::{Deserialize, Serialize};

use crate::domain::{Amr, DeviceHash, Email, FamilyId, Generation, IpPrefix, Millis, RefreshToken, UserId};

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

/// A request forwarded from a follower to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    AdmitRegistration {
        ip: Option<IpPrefix>,
    },
    Register {
        user: UserId,
        email: Email,
        password_hash: String,
    },
    BeginLogin {
        email: Email,
        ip: Option<IpPrefix>,
    },
    CompleteLogin {
        subject: LoginSubject,
        permit: u64,
        credential_version: u32,
        device: DeviceHash,
        ip: Option<IpPrefix>,
        device_label: String,
    },
    FailLogin {
        subject: LoginSubject,
        permit: u64,
        ip: Option<IpPrefix>,
    },
    AbandonLogin {
        subject: LoginSubject,
        permit: u64,
    },
    Refresh {
        token: RefreshToken,
        device: DeviceHash,
    },
    Logout {
        user: UserId,
        family: FamilyId,
    },
    LogoutAll {
        user: UserId,
    },
    Unlock {
        user: UserId,
    },
    LogoutOthers {
        user: UserId,
        keep: FamilyId,
    },
    ChangePassword(PasswordChange),
}

impl Command {
    /// Whether this command only reports the outcome of a password check already made under a
    /// permit. Such a report is worth delivering even late: recorded at once, a failure delays
    /// the next guess now, and an abandoned attempt gives its permit back instead of counting
    /// as a failure when the permit expires.
    pub fn reports_a_check(&self) -> bool {
        matches!(self, Command::FailLogin { .. } | Command::AbandonLogin { .. })
    }
}

/// A password change, after the current password was verified under `permit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PasswordChange {
    pub user: UserId,
    pub permit: u64,
    pub credential_version: u32,
    pub new_hash: String,
    /// The caller's session: it continues, with a new generation.
    pub current: FamilyId,
    pub device: DeviceHash,
    pub revoke_others: bool,
}

/// The leader's answer to a forwarded [`Command`], variant for variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    AdmitRegistration(Result<Admission, ActorError>),
    Register(Result<RegisterOutcome, ActorError>),
    BeginLogin(Result<LoginStart, ActorError>),
    CompleteLogin(Result<LoginOutcome, ActorError>),
    FailLogin(Result<(), ActorError>),
    AbandonLogin(Result<(), ActorError>),
    Refresh(Result<RefreshOutcome, ActorError>),
    Logout(Result<LogoutOutcome, ActorError>),
    LogoutAll(Result<usize, ActorError>),
    Unlock(Result<UnlockOutcome, ActorError>),
    LogoutOthers(Result<usize, ActorError>),
    ChangePassword(Result<PasswordOutcome, ActorError>),
}

impl Reply {
    /// The same kind of reply, answering `NotLeader` instead of the outcome.
    pub fn withheld(self) -> Reply {
        let e = ActorError::NotLeader;
        match self {
            Reply::AdmitRegistration(_) => Reply::AdmitRegistration(Err(e)),
            Reply::Register(_) => Reply::Register(Err(e)),
            Reply::BeginLogin(_) => Reply::BeginLogin(Err(e)),
            Reply::CompleteLogin(_) => Reply::CompleteLogin(Err(e)),
            Reply::FailLogin(_) => Reply::FailLogin(Err(e)),
            Reply::AbandonLogin(_) => Reply::AbandonLogin(Err(e)),
            Reply::Refresh(_) => Reply::Refresh(Err(e)),
            Reply::Logout(_) => Reply::Logout(Err(e)),
            Reply::LogoutAll(_) => Reply::LogoutAll(Err(e)),
            Reply::Unlock(_) => Reply::Unlock(Err(e)),
            Reply::LogoutOthers(_) => Reply::LogoutOthers(Err(e)),
            Reply::ChangePassword(_) => Reply::ChangePassword(Err(e)),
        }
    }
}
