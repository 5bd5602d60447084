//! Reads that several places share: the actors on the leader and the edge on any node. All
//! of them read the local replica through the [`Replicator`] port.

use crate::domain::{
    AccessVerdict, DeviceBinding, DeviceHash, Email, Family, FamilyId, Generation, Identity, Mfa, Millis, Pepper,
    RefreshToken, UserId,
};
use crate::ports::Replicator;
use crate::protocol::ActorError;
use crate::record::{Record, keys};

/// One live session of a user, as stored.
#[derive(Clone, Debug)]
pub struct LiveFamily {
    pub id: FamilyId,
    pub version: u64,
    pub family: Family,
}

/// A user's live sessions (oldest first), and the index keys of sessions that are no longer
/// live (expired) so a writer can clean them up.
pub fn live_families(
    replica: &dyn Replicator,
    user: UserId,
    now: Millis,
) -> Result<(Vec<LiveFamily>, Vec<String>), ActorError> {
    let mut live = Vec::new();
    let mut stale = Vec::new();
    for (key, _, _) in replica.scan(&keys::user_families(user))? {
        let Some(id) = keys::family_of_user_family_key(&key) else { continue };
        match replica.read(&keys::family(id))? {
            Some((version, Record::Family(family))) if family.user == user && family.is_live(now) => {
                live.push(LiveFamily { id, version, family })
            }
            _ => stale.push(key),
        }
    }
    live.sort_by_key(|f| (f.family.created_at, f.id));
    Ok((live, stale))
}

/// The account an email address belongs to, if any.
pub fn account_of(replica: &dyn Replicator, email: &Email) -> Result<Option<UserId>, ActorError> {
    Ok(email_entry(replica, email)?.map(|(_, user)| user))
}

/// An email address's index entry: its version and the account it belongs to.
pub fn email_entry(replica: &dyn Replicator, email: &Email) -> Result<Option<(u64, UserId)>, ActorError> {
    match replica.read(&keys::email(email))? {
        Some((version, Record::EmailIndex(user))) => Ok(Some((version, user))),
        Some((_, other)) => Err(ActorError::Corrupt(format!("email index holds {other:?}"))),
        None => Ok(None),
    }
}

/// A user's identity, if the replica holds it.
pub fn identity(replica: &dyn Replicator, user: UserId) -> Result<Option<Identity>, ActorError> {
    match replica.read(&keys::user(user))? {
        Some((_, Record::Identity(identity))) => Ok(Some(identity)),
        Some((_, other)) => Err(ActorError::Corrupt(format!("user/{user} holds {other:?}"))),
        None => Ok(None),
    }
}

/// The session of a genuine refresh token (its MAC verifies with its family's salt), live
/// or not; `None` for a forged token or a family this replica does not hold.
pub fn refresh_session(
    replica: &dyn Replicator,
    pepper: &Pepper,
    token: &RefreshToken,
) -> Result<Option<Family>, ActorError> {
    match replica.read(&keys::family(token.family))? {
        Some((_, Record::Family(family))) if pepper.verifies(token, &family.salt) => Ok(Some(family)),
        Some((_, Record::Family(_))) | None => Ok(None),
        Some((_, other)) => Err(ActorError::Corrupt(format!("fam/{} holds {other:?}", token.family))),
    }
}

/// A user's second factor and the version it was read at (`None`: never written, so none).
pub fn mfa(replica: &dyn Replicator, user: UserId) -> Result<(Option<u64>, Mfa), ActorError> {
    match replica.read(&keys::mfa(user))? {
        Some((version, Record::Mfa(mfa))) => Ok((Some(version), mfa)),
        Some((_, _)) => Err(ActorError::Corrupt(format!("mfa/{user} holds another record"))),
        None => Ok((None, Mfa::default())),
    }
}

/// What the local replica says about the session of a verified access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionAccess {
    /// Honour the token. `other_device`: a cookie request from a device other than the
    /// session's, allowed under the `Log` binding (the caller counts and logs it).
    Live { other_device: bool },
    /// Revoked, expired, of another user, or the account is disabled.
    Ended,
    /// A cookie request from a device other than the session's, refused under `Reject`.
    ForeignDevice,
    /// The session, its generation or the account is not in this replica (yet): a token
    /// issued by the leader after a commit this replica has not applied. Catch up, then ask
    /// again; what is still missing then is ended.
    Behind,
}

/// The one liveness check of a verified access token, shared by everything that honours one
/// (verify, cookie sessions, the session list, introspection): the family exists, belongs to
/// the token's subject, is not revoked or expired, knows the token's generation and (for
/// cookie requests, `device` given) is bound to this device; the identity is active.
pub fn session_access(
    replica: &dyn Replicator,
    user: UserId,
    family: FamilyId,
    generation: Generation,
    device: Option<DeviceHash>,
    binding: DeviceBinding,
    now: Millis,
) -> Result<SessionAccess, ActorError> {
    let other_device = match replica.read(&keys::family(family))? {
        Some((_, Record::Family(f))) if f.user == user => match f.access(generation, now, device, binding) {
            AccessVerdict::Allowed => device.is_some_and(|d| d != f.login_device),
            AccessVerdict::ForeignDevice => return Ok(SessionAccess::ForeignDevice),
            AccessVerdict::UnknownGeneration => return Ok(SessionAccess::Behind),
            AccessVerdict::Revoked | AccessVerdict::Expired => return Ok(SessionAccess::Ended),
        },
        Some(_) => return Ok(SessionAccess::Ended),
        None => return Ok(SessionAccess::Behind),
    };
    Ok(match identity(replica, user)? {
        Some(identity) if identity.is_active() => SessionAccess::Live { other_device },
        Some(_) => SessionAccess::Ended,
        None => SessionAccess::Behind,
    })
}
