//! Signing keys' cryptography: generating and sealing them (the [`KeyMaker`] the leader's
//! provisioning uses), and the in-memory ring every node rebuilds from the replicated key
//! records (unsealed, published as JWKS). Which keys exist and which one signs is decided in
//! `tessera_actors::keys`.
//!
//! The private half of each Ed25519 key is sealed with XChaCha20-Poly1305 under the cluster's
//! key-encryption key (the kid is the associated data, so a sealed key cannot be swapped
//! under another kid). The Raft log, local snapshots and the snapshot store only ever hold the
//! sealed form. Every node rebuilds the same key ring from the replica, so every node serves
//! the identical JWKS.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::SigningKey as DalekKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use parking_lot::RwLock;
use serde_json::json;
use sha2::{Digest, Sha256};
use tessera_actors::domain::Millis;
use tessera_actors::keys::{KeyMaker, KeySet};
use tessera_actors::ports::{Entropy, Replicator, random};
use tessera_actors::protocol::ActorError;
use tessera_actors::record::{SigningKey, keys};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {0} does not unseal with this cluster's key-encryption key")]
    Unseal(String),
    #[error("replicated store: {0}")]
    Store(#[from] ActorError),
}

/// A key that can sign (the active one).
pub struct ActiveKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

/// Everything the node knows about signing keys at one moment.
pub struct Keys {
    pub active: Option<Arc<ActiveKey>>,
    pub verifying: HashMap<String, DecodingKey>,
    /// The JWKS document, rendered once per change: every published key (next, active,
    /// retired), so a verifier's cached copy holds a successor before it signs anything.
    pub jwks: String,
    /// A strong validator of `jwks` (quoted, for `ETag`): the same on every node that holds
    /// the same keys.
    pub jwks_etag: String,
    /// The issuer recorded when the cluster was initialised (`cluster/issuer`), once known.
    pub issuer: Option<String>,
    /// Grows with every rebuild that changed something: a verification cached under an
    /// older generation checks that its key is still published.
    pub generation: u64,
    /// (key, version) of every key record and pointer: what a reload compares.
    fingerprint: Vec<(String, u64)>,
}

pub struct KeyRing {
    kek: [u8; 32],
    keys: RwLock<Arc<Keys>>,
    /// Grows whenever the replica applies a write to a key record or pointer (see
    /// `ClusterNode::watch_prefixes`); `None` in tests without a cluster.
    changes: Option<Arc<AtomicU64>>,
    /// The value of `changes` the current keys were loaded after.
    seen: AtomicU64,
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key.
pub fn thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn cipher(kek: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(kek.into())
}

/// A strong `ETag` for a rendered document.
fn etag(document: &str) -> String {
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&Sha256::digest(document.as_bytes())[..18]))
}

/// Makes keys sealed under the cluster's key-encryption key.
pub struct Sealer {
    pub entropy: Arc<dyn Entropy>,
    pub kek: [u8; 32],
}

impl KeyMaker for Sealer {
    fn generate(&self, now: Millis) -> SigningKey {
        generate(&*self.entropy, &self.kek, now)
    }
}

/// A fresh Ed25519 key, sealed for storage.
pub fn generate(entropy: &dyn Entropy, kek: &[u8; 32], now: Millis) -> SigningKey {
    let seed: [u8; 32] = random(entropy);
    let public = DalekKey::from_bytes(&seed).verifying_key().to_bytes();
    let kid = thumbprint(&public);
    let nonce: [u8; 24] = random(entropy);
    let sealed_private = cipher(kek)
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &seed, aad: kid.as_bytes() })
        .expect("sealing 32 bytes cannot fail");
    SigningKey { kid, public, nonce, sealed_private, created_at: now }
}

fn unseal(kek: &[u8; 32], key: &SigningKey) -> Result<[u8; 32], KeyError> {
    let seed = cipher(kek)
        .decrypt(XNonce::from_slice(&key.nonce), Payload { msg: &key.sealed_private, aad: key.kid.as_bytes() })
        .map_err(|_| KeyError::Unseal(key.kid.clone()))?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::Unseal(key.kid.clone()))?;
    if DalekKey::from_bytes(&seed).verifying_key().to_bytes() != key.public {
        return Err(KeyError::Unseal(key.kid.clone()));
    }
    Ok(seed)
}

impl KeyRing {
    /// The prefixes whose writes [`KeyRing::fresh`] must notice.
    pub const WATCHED: [&'static str; 3] = [keys::SIGNING_KEY_PREFIX, "signing/", keys::ISSUER];

    /// A ring that rebuilds itself when `changes` (a counter of writes to [`Self::WATCHED`])
    /// moves.
    pub fn new(kek: [u8; 32], changes: Option<Arc<AtomicU64>>) -> KeyRing {
        let jwks = json!({ "keys": [] }).to_string();
        let empty = Keys {
            active: None,
            verifying: HashMap::new(),
            jwks_etag: etag(&jwks),
            jwks,
            issuer: None,
            generation: 0,
            fingerprint: Vec::new(),
        };
        KeyRing { kek, keys: RwLock::new(Arc::new(empty)), changes, seen: AtomicU64::new(u64::MAX) }
    }

    /// The keys as the local replica holds them now: rebuilt first if the replica applied a
    /// write to a key record since the last load (a rotation or revocation a moment ago).
    /// One atomic load when nothing changed, so the request paths can call it every time.
    pub fn fresh(&self, replica: &dyn Replicator) -> Arc<Keys> {
        if let Some(changes) = &self.changes {
            let now = changes.load(Ordering::SeqCst);
            if now != self.seen.load(Ordering::SeqCst) {
                match self.reload(replica) {
                    // Changes made while reloading move the counter again: seen next time.
                    Ok(()) => self.seen.store(now, Ordering::SeqCst),
                    Err(e) => tracing::error!(error = %e, "reloading signing keys failed"),
                }
            }
        }
        self.current()
    }

    pub fn current(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read())
    }

    /// Rebuilds the ring from the local replica if the stored keys changed. Cheap when nothing did.
    pub fn reload(&self, replica: &dyn Replicator) -> Result<(), KeyError> {
        let set = KeySet::read(replica)?;
        let mut fingerprint: Vec<(String, u64)> =
            set.keys.iter().map(|(key, _, version)| (keys::signing_key(&key.kid), *version)).collect();
        if let Some((_, version)) = &set.active {
            fingerprint.push((keys::ACTIVE_SIGNING_KEY.to_string(), *version));
        }
        if let Some((_, version)) = &set.next {
            fingerprint.push((keys::NEXT_SIGNING_KEY.to_string(), *version));
        }
        if let Some((_, version)) = &set.issuer {
            fingerprint.push((keys::ISSUER.to_string(), *version));
        }
        if fingerprint == self.keys.read().fingerprint {
            return Ok(());
        }
        let generation = self.keys.read().generation + 1;
        let active_kid = set.active.map(|(kid, _)| kid);
        let issuer = set.issuer.map(|(issuer, _)| issuer);
        let mut verifying = HashMap::new();
        let mut published = Vec::new();
        let mut signing = None;
        for (key, _, _) in set.keys {
            if active_kid.as_deref() == Some(key.kid.as_str()) {
                let seed = unseal(&self.kek, &key)?;
                signing = Some(Arc::new(ActiveKey { kid: key.kid.clone(), encoding: EncodingKey::from_ed_der(&seed) }));
            }
            verifying.insert(key.kid.clone(), DecodingKey::from_ed_der(&key.public));
            published.push(json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": key.kid,
                "use": "sig",
                "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(key.public),
            }));
        }
        tracing::info!(keys = published.len(), active = ?active_kid, issuer = ?issuer, "signing keys loaded");
        let jwks = json!({ "keys": published }).to_string();
        *self.keys.write() = Arc::new(Keys {
            active: signing,
            verifying,
            jwks_etag: etag(&jwks),
            jwks,
            issuer,
            generation,
            fingerprint,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Entropy for Fixed {
        fn fill(&self, dest: &mut [u8]) {
            dest.fill(7);
        }
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_and_kid() {
        let kek = [1u8; 32];
        let key = generate(&Fixed, &kek, Millis(0));
        assert_eq!(key.kid, thumbprint(&key.public));
        assert!(unseal(&kek, &key).is_ok());
        assert!(unseal(&[2u8; 32], &key).is_err(), "another KEK");
        let relabelled = SigningKey { kid: "other".into(), ..key.clone() };
        assert!(unseal(&kek, &relabelled).is_err(), "another kid");
        assert!(!key.sealed_private.windows(32).any(|w| w == [7u8; 32]), "the seed is not stored in the clear");
    }

    #[test]
    fn the_thumbprint_follows_rfc_8037_and_7638() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 public key.
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let public: [u8; 32] = x.try_into().unwrap();
        assert_eq!(thumbprint(&public), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }
}
