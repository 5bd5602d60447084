//! Everything Tessera keeps in the replicated store, one enum so the store has one value type,
//! and the key under which each record lives.
//!
//! Values are bincode-encoded in the Raft log and JSON in the durable snapshot store (where the
//! `identities` and `session_families` SQL views read them), so variants are only appended and
//! fields only added at the end.

use serde::{Deserialize, Serialize};

use crate::domain::{Family, FamilyId, Identity, Millis, UserId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// `user/{user_id}`
    Identity(Identity),
    /// `email/{normalised email}` → the identity using it. Created with an "absent" compare,
    /// so an address is registered at most once.
    EmailIndex(UserId),
    /// `fam/{family_id}`
    Family(Family),
    /// `ufam/{user_id}/{family_id}` → when the family was created. One per unrevoked family.
    UserFamily(Millis),
    /// `sigkey/{kid}`
    SigningKey(SigningKey),
    /// `signing/active` → the kid new access tokens are signed with.
    ActiveSigningKey(String),
}

/// An Ed25519 signing key. The private half is sealed (XChaCha20-Poly1305 under the cluster
/// key-encryption key, with the kid as associated data), so the store, its snapshots and the
/// Raft log never hold it in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    pub public: [u8; 32],
    pub nonce: [u8; 24],
    pub sealed_private: Vec<u8>,
    pub created_at: Millis,
}

/// Key layout of the replicated store.
pub mod keys {
    use super::*;

    pub const ACTIVE_SIGNING_KEY: &str = "signing/active";
    pub const SIGNING_KEY_PREFIX: &str = "sigkey/";

    pub fn user(id: UserId) -> String {
        format!("user/{id}")
    }

    pub fn email(email: &crate::domain::Email) -> String {
        format!("email/{email}")
    }

    pub fn family(id: FamilyId) -> String {
        format!("fam/{id}")
    }

    pub fn user_families(user: UserId) -> String {
        format!("ufam/{user}/")
    }

    pub fn user_family(user: UserId, family: FamilyId) -> String {
        format!("ufam/{user}/{family}")
    }

    pub fn signing_key(kid: &str) -> String {
        format!("{SIGNING_KEY_PREFIX}{kid}")
    }

    /// The family id at the end of a `ufam/{user}/{family}` key.
    pub fn family_of_user_family_key(key: &str) -> Option<FamilyId> {
        FamilyId::parse(key.rsplit_once('/')?.1)
    }
}
