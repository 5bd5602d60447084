//! Login identities: an email, a password hash and a credential version.

use serde::{Deserialize, Serialize};

use super::email::Email;
use super::ids::UserId;
use super::time::Millis;

/// A login identity's replicated state. Appending fields is the only allowed change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: UserId,
    pub email: Email,
    /// Argon2id in PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: String,
    /// Changes with every password change, so a verification against an old hash can be told
    /// from one against the current hash.
    pub credential_version: u32,
    pub created_at: Millis,
    pub disabled: bool,
}

/// What a reported successful password verification leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginVerdict {
    /// Open a session.
    Accepted,
    /// The password was checked against a hash that has since been replaced.
    StaleCredential,
    Disabled,
}

impl Identity {
    pub fn new(user: UserId, email: Email, password_hash: String, now: Millis) -> Identity {
        Identity { user, email, password_hash, credential_version: 1, created_at: now, disabled: false }
    }

    /// Decides whether a verification of credential version `verified` opens a session.
    pub fn accept_login(&self, verified: u32) -> LoginVerdict {
        if self.disabled {
            LoginVerdict::Disabled
        } else if verified != self.credential_version {
            LoginVerdict::StaleCredential
        } else {
            LoginVerdict::Accepted
        }
    }

    /// The identity with a new password hash and a new credential version.
    pub fn with_password(&self, password_hash: String) -> Identity {
        Identity { password_hash, credential_version: self.credential_version + 1, ..self.clone() }
    }

    /// Whether tokens of this identity may still be honoured.
    pub fn is_active(&self) -> bool {
        !self.disabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::new(UserId([1; 16]), Email::parse("a@example.com").unwrap(), "$argon2id$…".into(), Millis(1))
    }

    #[test]
    fn only_a_verification_of_the_current_credential_opens_a_session() {
        let mut identity = identity();
        assert_eq!(identity.accept_login(1), LoginVerdict::Accepted);
        identity.credential_version = 2;
        assert_eq!(identity.accept_login(1), LoginVerdict::StaleCredential);
        identity.disabled = true;
        assert_eq!(identity.accept_login(2), LoginVerdict::Disabled);
        assert!(!identity.is_active());
    }
}

/// What a login beyond the session cap does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapAction {
    /// Revoke the oldest sessions to make room.
    EvictOldest,
    /// Refuse the new session (not a failed attempt).
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCap {
    pub max: usize,
    pub action: CapAction,
}

impl Default for SessionCap {
    fn default() -> Self {
        SessionCap { max: 5, action: CapAction::EvictOldest }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapVerdict<Id> {
    /// Room for one more.
    Open,
    /// Open after revoking these, oldest first.
    OpenEvicting(Vec<Id>),
    Deny,
}

impl SessionCap {
    /// Decides a new login given the user's live sessions as `(id, created)`, in any order.
    pub fn admit<Id: Clone>(&self, live: &[(Id, super::time::Millis)]) -> CapVerdict<Id> {
        let max = self.max.max(1);
        if live.len() < max {
            return CapVerdict::Open;
        }
        match self.action {
            CapAction::Deny => CapVerdict::Deny,
            CapAction::EvictOldest => {
                let mut by_age: Vec<&(Id, super::time::Millis)> = live.iter().collect();
                by_age.sort_by_key(|(_, created)| *created);
                CapVerdict::OpenEvicting(by_age[..live.len() + 1 - max].iter().map(|(id, _)| id.clone()).collect())
            }
        }
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;
    use crate::domain::Millis;

    #[test]
    fn the_cap_evicts_the_oldest_or_denies() {
        let live = vec![("c", Millis(3)), ("a", Millis(1)), ("b", Millis(2))];
        let evict = SessionCap { max: 3, action: CapAction::EvictOldest };
        assert_eq!(evict.admit(&live), CapVerdict::OpenEvicting(vec!["a"]));
        assert_eq!(SessionCap { max: 2, ..evict }.admit(&live), CapVerdict::OpenEvicting(vec!["a", "b"]));
        assert_eq!(SessionCap { max: 4, ..evict }.admit(&live), CapVerdict::Open);
        assert_eq!(SessionCap { max: 3, action: CapAction::Deny }.admit(&live), CapVerdict::Deny);
    }
}
