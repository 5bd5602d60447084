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
