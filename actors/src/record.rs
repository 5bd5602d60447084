//! Everything Tessera keeps in the replicated store, one enum so the store has one value type,
//! and the key under which each record lives.
//!
//! Values are bincode-encoded in the Raft log and JSON in the durable snapshot store (where the
//! `identities` and `session_families` SQL views read them), so variants are only appended and
//! fields only added at the end.

use serde::{Deserialize, Serialize};

use crate::domain::{Client, ClientId, Family, FamilyId, Identity, LoginGuard, Mfa, Millis, UserId, WebhookCursor};

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
    /// `sigkey/{kid}` as versions before the key lifecycle wrote it (read, never written: such
    /// a key was active from its creation).
    SigningKey(SigningKey),
    /// `signing/active` → the kid new access tokens are signed with.
    ActiveSigningKey(String),
    /// `guard/{user_id}` → failed attempts, permits in flight, lock state.
    LoginGuard(LoginGuard),
    /// `cluster/issuer` → the `iss` of the cluster's access tokens where no node configures
    /// one: the initialising node's public URL, recorded once so every node agrees.
    Issuer(String),
    /// `pii/{user_id}` → the key that seals this user's personal data in the audit trail.
    /// Deleting it erases that data (the sealed bytes stay, so the chain still verifies).
    PiiKey([u8; 32]),
    /// `webhook/{name}` → where delivery to a configured endpoint stands.
    Webhook(WebhookCursor),
    /// `mfa/{user_id}` → the account's second factor: sealed TOTP secret, last accepted step,
    /// recovery-code digests, a pending enrolment, login challenges.
    Mfa(Mfa),
    /// `signing/next` → the kid of the published successor of the active key.
    NextSigningKey(String),
    /// `client/{client_id}` → a resource-server client (its secret only as a digest).
    Client(Client),
    /// `sigkey/{kid}` → a signing key and the moments of its life (see `domain::keys`).
    LifecycleKey(SigningKey, KeyLife),
}

/// When a signing key began and stopped signing. A separate value rather than fields of
/// [`SigningKey`], so keys stored before the lifecycle still decode (values are bincode in the
/// log and in snapshots, where a field cannot be added to a stored struct).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLife {
    /// When it began to sign (`None`: it never has).
    pub activated_at: Option<Millis>,
    /// When it stopped signing.
    pub retired_at: Option<Millis>,
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
    /// When it was published.
    pub created_at: Millis,
}

/// Key layout of the replicated store.
pub mod keys {
    use super::*;

    pub const ACTIVE_SIGNING_KEY: &str = "signing/active";
    pub const NEXT_SIGNING_KEY: &str = "signing/next";
    pub const ISSUER: &str = "cluster/issuer";
    /// Never written: the target of compare-only writes that pace unknown-account logins.
    pub const PACE: &str = "pace/unknown-login";
    pub const SIGNING_KEY_PREFIX: &str = "sigkey/";
    pub const FAMILY_PREFIX: &str = "fam/";
    pub const CLIENT_PREFIX: &str = "client/";

    pub fn client(id: &ClientId) -> String {
        format!("{CLIENT_PREFIX}{id}")
    }

    pub fn user(id: UserId) -> String {
        format!("user/{id}")
    }

    pub fn email(email: &crate::domain::Email) -> String {
        format!("email/{email}")
    }

    pub fn guard(id: UserId) -> String {
        format!("guard/{id}")
    }

    pub fn mfa(id: UserId) -> String {
        format!("mfa/{id}")
    }

    pub fn pii(id: UserId) -> String {
        format!("pii/{id}")
    }

    pub fn webhook(name: &str) -> String {
        format!("webhook/{name}")
    }

    pub fn family(id: FamilyId) -> String {
        format!("{FAMILY_PREFIX}{id}")
    }

    /// The family id of a `fam/{family}` key.
    pub fn family_of_key(key: &str) -> Option<FamilyId> {
        FamilyId::parse(key.strip_prefix(FAMILY_PREFIX)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amr, DeviceHash, Email, Opening, SessionPolicy};

    fn family() -> Family {
        let opening = Opening {
            user: UserId::from_random([1; 16]),
            salt: [2; 16],
            device: DeviceHash([3; 16]),
            ip_prefix: Some(crate::domain::IpPrefix::V4([203, 0, 113])),
            amr: Amr::PASSWORD,
            auth_time: Millis(1_000),
            device_label: "Mozilla/5.0".into(),
        };
        Family::open(opening, Millis(1_000), &SessionPolicy::default())
    }

    #[test]
    fn records_round_trip_through_json_and_bincode() {
        let records = vec![
            Record::Family(family()),
            Record::Identity(Identity::new(
                UserId::from_random([4; 16]),
                Email::parse("a@example.com").unwrap(),
                "$argon2id$x".into(),
                Millis(5),
            )),
            Record::EmailIndex(UserId::from_random([5; 16])),
            Record::UserFamily(Millis(7)),
            Record::LifecycleKey(
                SigningKey {
                    kid: "k".into(),
                    public: [6; 32],
                    nonce: [7; 24],
                    sealed_private: vec![8; 48],
                    created_at: Millis(9),
                },
                KeyLife { activated_at: Some(Millis(10)), retired_at: None },
            ),
            Record::Client(Client {
                id: ClientId::from_random([11; 16]),
                name: crate::domain::ClientName::parse("api").unwrap(),
                secret_digest: [12; 32],
                created_at: Millis(13),
            }),
        ];
        for record in records {
            let json = serde_json::to_string(&record).unwrap();
            assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record, "{json}");
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(&record, config).unwrap();
            let (back, _): (Record, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn json_is_readable_by_operators() {
        let json = serde_json::to_value(Record::Family(family())).unwrap();
        let f = &json["Family"];
        assert_eq!(f["user"], UserId::from_random([1; 16]).to_string());
        assert_eq!(f["ip_prefix"], "203.0.113.0/24");
        assert_eq!(f["login_device"], "03030303030303030303030303030303");
    }
}
