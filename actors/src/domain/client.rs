//! Resource-server clients: the services that introspect and revoke tokens (RFC 7662, RFC
//! 7009) and follow the revocation stream. Each is a replicated record holding only a digest
//! of its secret; the secret itself is shown once, when the client is created.
//!
//! A secret is 256 random bits, so a plain SHA-256 digest is as good as a password hash here
//! (nothing to brute-force) and costs a microsecond per request instead of Argon2's tens of
//! milliseconds on every introspection.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::time::Millis;

/// `rs_` followed by 16 random bytes in base64url: 25 characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(String);

const ID_PREFIX: &str = "rs_";

impl ClientId {
    pub fn from_random(bytes: [u8; 16]) -> ClientId {
        ClientId(format!("{ID_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn parse(text: &str) -> Option<ClientId> {
        let encoded = text.strip_prefix(ID_PREFIX)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        (bytes.len() == 16 && URL_SAFE_NO_PAD.encode(&bytes) == encoded).then(|| ClientId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", self.0)
    }
}

/// A client's display name: 1 to 64 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientName(String);

impl ClientName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: &str) -> Option<ClientName> {
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        ((1..=Self::MAX_CHARS).contains(&chars) && !trimmed.chars().any(char::is_control))
            .then(|| ClientName(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client secret as issued: 32 random bytes, base64url (43 characters). Never stored.
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn from_random(bytes: [u8; 32]) -> ClientSecret {
        ClientSecret(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The text to hand to the client, once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

fn digest(secret: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"tessera/client-secret/v1/");
    hash.update(secret.as_bytes());
    hash.finalize().into()
}

/// `client/{client_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: ClientId,
    pub name: ClientName,
    pub secret_digest: [u8; 32],
    pub created_at: Millis,
}

impl Client {
    /// Whether `presented` is this client's secret (constant time in its content).
    pub fn authenticates(&self, presented: &str) -> bool {
        digest(presented).ct_eq(&self.secret_digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_spelling() {
        let id = ClientId::from_random([7; 16]);
        assert_eq!(id.as_str().len(), 25);
        assert_eq!(ClientId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(ClientId::parse(&id.as_str()[3..]), None, "the prefix is required");
        assert_eq!(ClientId::parse("rs_short"), None);
        assert_eq!(ClientId::parse(&format!("{id}=")), None);
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert_eq!(ClientName::parse("  api gateway ").unwrap().as_str(), "api gateway");
        assert!(ClientName::parse("").is_none());
        assert!(ClientName::parse(&"é".repeat(64)).is_some());
        assert!(ClientName::parse(&"a".repeat(65)).is_none());
        assert!(ClientName::parse("tab\there").is_none());
    }

    #[test]
    fn only_the_issued_secret_authenticates() {
        let secret = ClientSecret::from_random([3; 32]);
        let client = Client {
            id: ClientId::from_random([1; 16]),
            name: ClientName::parse("api").unwrap(),
            secret_digest: secret.digest(),
            created_at: Millis(0),
        };
        assert!(client.authenticates(secret.reveal()));
        assert!(!client.authenticates(&secret.reveal()[1..]));
        assert!(!client.authenticates(""));
    }
}
