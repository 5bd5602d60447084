//! Signed checkpoints of the audit chain.
//!
//! Every `checkpoint_every` events, or `checkpoint_interval_secs` after the last checkpoint if
//! events came since, the leader appends `(seq, hash)` of the audit stream's head, signed with
//! the cluster's checkpoint key (Ed25519, seeded from the key-encryption key), to the
//! `audit-checkpoints` stream. Someone who can write the database can rewrite a row and
//! recompute every hash after it, but cannot sign: the next checkpoint no longer matches.
//!
//! The signed message is the ASCII text `tessera-audit-checkpoint:v1:<seq>:<hash as lowercase
//! hex>`; the record is the JSON object `{"at","hash","seq","signature"}` (keys sorted,
//! `signature` in unpadded base64url), so `docs/audit.md` can tell anyone how to check one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The stream checkpoints are appended to.
pub const STREAM: &str = "audit-checkpoints";

/// One checkpoint, as recorded (fields in sorted order: the text is canonical).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// When the leader signed it (Unix milliseconds).
    pub at: u64,
    /// The audit stream's hash at `seq`, lowercase hex.
    pub hash: String,
    /// The last audit entry it covers.
    pub seq: u64,
    /// Ed25519 over [`message`], unpadded base64url.
    pub signature: String,
}

/// What a checkpoint's key signs.
pub fn message(seq: u64, hash: &[u8; 32]) -> String {
    format!("tessera-audit-checkpoint:v1:{seq}:{}", hex::encode(hash))
}

impl Checkpoint {
    pub fn sign(key: &SigningKey, seq: u64, hash: &[u8; 32], at: u64) -> Checkpoint {
        let signature = key.sign(message(seq, hash).as_bytes());
        Checkpoint { at, hash: hex::encode(hash), seq, signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()) }
    }

    /// The record's text, as appended to the stream.
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serializes")
    }

    pub fn parse(text: &str) -> Result<Checkpoint, String> {
        serde_json::from_str(text).map_err(|e| format!("not a checkpoint record: {e}"))
    }

    /// The hash it vouches for, if `key` signed it.
    pub fn verify(&self, key: &VerifyingKey) -> Result<[u8; 32], String> {
        let hash: [u8; 32] = hex::decode(&self.hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| "its hash is not 32 bytes of hex".to_string())?;
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .ok()
            .and_then(|s| Signature::from_slice(&s).ok())
            .ok_or_else(|| "its signature is not 64 bytes of base64url".to_string())?;
        key.verify(message(self.seq, &hash).as_bytes(), &signature)
            .map_err(|_| "its signature does not verify with the checkpoint key".to_string())?;
        Ok(hash)
    }
}

/// The checkpoint key from its 32-byte seed.
pub fn signing_key(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// A public key as given on the command line: unpadded base64url (or standard base64) of 32 bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text.trim()))
        .map_err(|_| "the public key is not base64".to_string())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "the public key is not 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "the public key is not an Ed25519 point".to_string())
}

/// A public key as printed: unpadded base64url.
pub fn format_public_key(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_only_unchanged() {
        let key = signing_key(&[5; 32]);
        let checkpoint = Checkpoint::sign(&key, 42, &[9; 32], 1_000);
        let parsed = Checkpoint::parse(&checkpoint.text()).unwrap();
        assert_eq!(parsed.verify(&key.verifying_key()), Ok([9; 32]));
        assert!(parsed.verify(&signing_key(&[6; 32]).verifying_key()).is_err(), "another key");
        let moved = Checkpoint { seq: 43, ..parsed.clone() };
        assert!(moved.verify(&key.verifying_key()).is_err(), "another seq");
        assert!(checkpoint.text().starts_with(r#"{"at":1000,"hash":"0909"#), "{}", checkpoint.text());
        let public = format_public_key(&key.verifying_key());
        assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
    }
}
