//! jsonwebtoken's crypto, restricted to EdDSA over ed25519-dalek.
//!
//! jsonwebtoken 11 delegates signing and verification to a process-wide `CryptoProvider`.
//! Ours knows one algorithm: any other `alg` — `none`, HS256 keyed with a public key, RS256 —
//! is refused before any key material is looked at. Keys are raw: a 32-byte seed to sign, a
//! 32-byte public key to verify.

use std::sync::RwLock;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use subtle::ConstantTimeEq;

struct EdSigner(SigningKey);

impl Signer<Vec<u8>> for EdSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for EdSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdVerifier(VerifyingKey);

impl Verifier<Vec<u8>> for EdVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let signature = Signature::from_slice(signature)?;
        self.0.verify_strict(msg, &signature)
    }
}

impl JwtVerifier for EdVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// Expanded keys by their raw bytes. jsonwebtoken hands the factories raw bytes on every call,
/// and expanding them costs as much as a signature (deriving the public key is a scalar
/// multiplication; decompressing one is a field exponentiation): profiling refresh showed
/// signing at twice its cost without this. A cluster has a handful of keys; the caches keep
/// the most recent few.
struct Expanded<K> {
    keys: RwLock<Vec<([u8; 32], K)>>,
}

const CACHED_KEYS: usize = 8;

impl<K: Clone> Expanded<K> {
    const fn new() -> Self {
        Expanded { keys: RwLock::new(Vec::new()) }
    }

    fn get_or(&self, raw: &[u8; 32], expand: impl FnOnce() -> Result<K>) -> Result<K> {
        let found = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(k, _)| same(k, raw))
            .map(|(_, v)| v.clone());
        if let Some(key) = found {
            return Ok(key);
        }
        let key = expand()?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= CACHED_KEYS {
            keys.remove(0);
        }
        keys.push((*raw, key.clone()));
        Ok(key)
    }
}

/// Constant-time equality (the signing cache compares secret seeds).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

static SIGNING: Expanded<SigningKey> = Expanded::new();
static VERIFYING: Expanded<VerifyingKey> = Expanded::new();

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let seed: [u8; 32] = key.as_bytes().try_into().map_err(|_| ErrorKind::InvalidEddsaKey)?;
    let signing = SIGNING.get_or(&seed, || Ok(SigningKey::from_bytes(&seed)))?;
    Ok(Box::new(EdSigner(signing)))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let public: [u8; 32] = key.try_get_as_bytes()?.try_into().map_err(|_| ErrorKind::InvalidEddsaKey)?;
    let verifying = VERIFYING
        .get_or(&public, || VerifyingKey::from_bytes(&public).map_err(|_| ErrorKind::InvalidEddsaKey.into()))?;
    Ok(Box::new(EdVerifier(verifying)))
}

static PROVIDER: CryptoProvider =
    CryptoProvider { signer_factory: signer, verifier_factory: verifier, key_utils: KeyUtils::new_unimplemented() };

/// Installs the EdDSA-only provider for this process (idempotent).
pub fn install() {
    let _ = PROVIDER.install_default();
}
