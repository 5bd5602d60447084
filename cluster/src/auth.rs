//! Proof of the cluster secret on every peer request.
//!
//! The sender puts `HMAC-SHA256(k, path ‖ 0x00 ‖ body)` in a header, where `k` is derived from
//! the cluster secret. The receiver recomputes it and compares in constant time. The MAC binds
//! the body, so a request cannot be altered in transit; it does not encrypt, so peer listeners
//! belong on a private network (see docs/operations.md).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const AUTH_HEADER: &str = "x-tessera-peer-mac";

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct PeerAuth {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerAuth(<redacted>)")
    }
}

impl PeerAuth {
    /// Derives the peer key from the cluster secret, so the secret itself never travels or
    /// keys anything else directly.
    pub fn new(cluster_secret: &[u8]) -> PeerAuth {
        let mut mac = HmacSha256::new_from_slice(cluster_secret).expect("HMAC accepts keys of any length");
        mac.update(b"tessera/peer-auth/v1");
        PeerAuth { key: Arc::new(mac.finalize().into_bytes().into()) }
    }

    fn mac(&self, path: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.as_slice()).expect("HMAC accepts keys of any length");
        mac.update(path.as_bytes());
        mac.update(&[0]);
        mac.update(body);
        mac
    }

    pub fn sign(&self, path: &str, body: &[u8]) -> String {
        hex::encode(self.mac(path, body).finalize().into_bytes())
    }

    /// Constant-time check of a request's header value.
    pub fn verify(&self, path: &str, body: &[u8], header: Option<&[u8]>) -> bool {
        let Some(tag) = header.and_then(|h| hex::decode(h).ok()) else {
            return false;
        };
        self.mac(path, body).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_the_same_secret_path_and_body() {
        let auth = PeerAuth::new(b"secret");
        let tag = auth.sign("/raft/vote", b"body");
        assert!(auth.verify("/raft/vote", b"body", Some(tag.as_bytes())));
        assert!(!auth.verify("/raft/vote", b"bodY", Some(tag.as_bytes())));
        assert!(!auth.verify("/raft/append", b"body", Some(tag.as_bytes())));
        assert!(!PeerAuth::new(b"other").verify("/raft/vote", b"body", Some(tag.as_bytes())));
        assert!(!auth.verify("/raft/vote", b"body", None));
        assert!(!auth.verify("/raft/vote", b"body", Some(b"zz-not-hex")));
    }
}
