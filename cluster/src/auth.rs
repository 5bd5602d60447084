//! Proof of the cluster secret on every peer request, and when the sender signed it.
//!
//! The sender puts `<sent>.<mac>` in a header: `sent` is its wall clock in Unix milliseconds
//! and `mac` is `HMAC-SHA256(k, path ‖ 0x00 ‖ sent ‖ 0x00 ‖ body)`, where `k` is derived from
//! the cluster secret. The receiver recomputes the MAC and compares in constant time, then
//! refuses a request signed more than [`MAX_AGE`] ago (or that far in the future): a captured
//! request cannot be replayed later, and a request that sat in a socket buffer while this
//! process was paused is recognised as old. The MAC binds the body, so a request cannot be
//! altered in transit; it does not encrypt, so peer listeners belong on a private network
//! (see docs/operations.md). Node clocks must agree to well within `MAX_AGE` (NTP does).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const AUTH_HEADER: &str = "x-tessera-peer-mac";

/// The oldest (or furthest in the future) a signed peer request may be.
pub const MAX_AGE: Duration = Duration::from_secs(30);

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

/// Why a peer request's proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    #[error("missing or invalid peer MAC")]
    Invalid,
    #[error("peer request signed {0} ms away from this node's clock (replayed, or node clocks disagree)")]
    OutOfWindow(i64),
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl PeerAuth {
    /// Derives the peer key from the cluster secret, so the secret itself never travels or
    /// keys anything else directly.
    pub fn new(cluster_secret: &[u8]) -> PeerAuth {
        let mut mac = HmacSha256::new_from_slice(cluster_secret).expect("HMAC accepts keys of any length");
        mac.update(b"tessera/peer-auth/v1");
        PeerAuth { key: Arc::new(mac.finalize().into_bytes().into()) }
    }

    fn mac(&self, path: &str, sent_ms: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.as_slice()).expect("HMAC accepts keys of any length");
        mac.update(path.as_bytes());
        mac.update(&[0]);
        mac.update(sent_ms.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(body);
        mac
    }

    /// The header value for a request sent now.
    pub fn sign(&self, path: &str, body: &[u8]) -> String {
        self.sign_at(path, body, unix_ms())
    }

    /// The header value for a request signed at `sent_ms` (Unix milliseconds).
    pub fn sign_at(&self, path: &str, body: &[u8], sent_ms: u64) -> String {
        format!("{sent_ms}.{}", hex::encode(self.mac(path, sent_ms, body).finalize().into_bytes()))
    }

    /// Checks a request's header value in constant time; `Ok` is how long ago (by this node's
    /// clock) the sender signed it, zero if the sender's clock is ahead.
    pub fn verify(&self, path: &str, body: &[u8], header: Option<&[u8]>) -> Result<Duration, PeerAuthError> {
        let parsed =
            header.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| h.split_once('.')).and_then(|(sent, tag)| {
                Some((sent.parse::<u64>().ok().filter(|s| s.to_string() == sent)?, hex::decode(tag).ok()?))
            });
        let Some((sent_ms, tag)) = parsed else {
            return Err(PeerAuthError::Invalid);
        };
        self.mac(path, sent_ms, body).verify_slice(&tag).map_err(|_| PeerAuthError::Invalid)?;
        let skew = unix_ms() as i64 - sent_ms as i64;
        if skew.unsigned_abs() > MAX_AGE.as_millis() as u64 {
            return Err(PeerAuthError::OutOfWindow(skew));
        }
        Ok(Duration::from_millis(skew.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_the_same_secret_path_and_body() {
        let auth = PeerAuth::new(b"secret");
        let tag = auth.sign("/raft/vote", b"body");
        assert!(auth.verify("/raft/vote", b"body", Some(tag.as_bytes())).is_ok());
        assert!(auth.verify("/raft/vote", b"bodY", Some(tag.as_bytes())).is_err());
        assert!(auth.verify("/raft/append", b"body", Some(tag.as_bytes())).is_err());
        assert!(PeerAuth::new(b"other").verify("/raft/vote", b"body", Some(tag.as_bytes())).is_err());
        assert!(auth.verify("/raft/vote", b"body", None).is_err());
        assert!(auth.verify("/raft/vote", b"body", Some(b"zz-not-hex")).is_err());
        assert!(auth.verify("/raft/vote", b"body", Some(b"123.zz")).is_err());
        // The send time is under the MAC: moving it invalidates the tag.
        let (sent, mac) = tag.split_once('.').unwrap();
        let moved = format!("{}.{mac}", sent.parse::<u64>().unwrap() + 1);
        assert_eq!(auth.verify("/raft/vote", b"body", Some(moved.as_bytes())), Err(PeerAuthError::Invalid));
        let padded = format!("0{tag}");
        assert_eq!(auth.verify("/raft/vote", b"body", Some(padded.as_bytes())), Err(PeerAuthError::Invalid));
    }

    #[test]
    fn a_request_signed_too_long_ago_or_ahead_is_refused_and_its_age_is_reported() {
        let auth = PeerAuth::new(b"secret");
        let now = unix_ms();
        let old = auth.sign_at("/raft/append", b"x", now - 5_000);
        let age = auth.verify("/raft/append", b"x", Some(old.as_bytes())).unwrap();
        assert!(age >= Duration::from_millis(5_000) && age < Duration::from_millis(6_000), "{age:?}");
        let ahead = auth.sign_at("/raft/append", b"x", now + 5_000);
        assert_eq!(auth.verify("/raft/append", b"x", Some(ahead.as_bytes())), Ok(Duration::ZERO));
        let replayed = auth.sign_at("/raft/append", b"x", now - 31_000);
        assert!(matches!(
            auth.verify("/raft/append", b"x", Some(replayed.as_bytes())),
            Err(PeerAuthError::OutOfWindow(_))
        ));
        let future = auth.sign_at("/raft/append", b"x", now + 31_000);
        assert!(matches!(
            auth.verify("/raft/append", b"x", Some(future.as_bytes())),
            Err(PeerAuthError::OutOfWindow(_))
        ));
    }
}
