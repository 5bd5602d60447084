//! The keys of second factors, derived from the cluster's key-encryption key (by the edge's
//! `secrets`): one seals TOTP secrets, one makes the keyed digests of recovery codes. Every
//! node derives the same keys,
//! so the edge that enrols seals and digests, and the leader's identity actor opens and
//! compares; neither a secret nor a recovery code is stored or replicated in the clear.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::domain::{Sealed, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Alphabet of recovery codes: RFC 4648 base32 without padding, lowercase when shown.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

#[derive(Clone)]
pub struct FactorKeys {
    sealing: [u8; 32],
    recovery: [u8; 32],
}

fn associated(user: UserId, factor: [u8; 16]) -> Vec<u8> {
    let mut aad = b"tessera totp ".to_vec();
    aad.extend(user.0);
    aad.extend(factor);
    aad
}

impl FactorKeys {
    pub fn new(sealing: [u8; 32], recovery: [u8; 32]) -> FactorKeys {
        FactorKeys { sealing, recovery }
    }

    /// Seals `user`'s TOTP `secret` of `factor`.
    pub fn seal(&self, user: UserId, factor: [u8; 16], secret: &[u8], nonce: [u8; 24]) -> Sealed {
        let bytes = XChaCha20Poly1305::new((&self.sealing).into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret, aad: &associated(user, factor) })
            .expect("sealing a short secret cannot fail");
        Sealed { nonce, bytes }
    }

    /// Opens a secret sealed by [`FactorKeys::seal`] for the same user and factor.
    pub fn open(&self, user: UserId, factor: [u8; 16], sealed: &Sealed) -> Option<Vec<u8>> {
        XChaCha20Poly1305::new((&self.sealing).into())
            .decrypt(XNonce::from_slice(&sealed.nonce), Payload { msg: &sealed.bytes, aad: &associated(user, factor) })
            .ok()
    }

    /// The keyed digest of `user`'s recovery code as typed: case, spaces and dashes do not
    /// matter. `None` for text that cannot be a recovery code.
    pub fn recovery_digest(&self, user: UserId, typed: &str) -> Option<[u8; 32]> {
        let code: String = typed.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect();
        if code.len() != RECOVERY_CODE_CHARS || !code.bytes().all(|b| ALPHABET.contains(&b)) {
            return None;
        }
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.recovery).expect("HMAC takes any key length");
        mac.update(&user.0);
        mac.update(code.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }
}

/// Characters of a recovery code: 20 base32 characters, 100 bits.
pub const RECOVERY_CODE_CHARS: usize = 20;

/// A recovery code from 13 random bytes (the first 100 bits used), shown as
/// `xxxxx-xxxxx-xxxxx-xxxxx`.
pub fn recovery_code(random: [u8; 13]) -> String {
    let bits = random.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b)) >> 4;
    let chars: Vec<char> =
        (0..RECOVERY_CODE_CHARS).rev().map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize] as char).collect();
    chars.chunks(5).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// An MFA challenge token (`{user}.{secret}`) and the digest the record keeps of it.
pub fn challenge_token(user: UserId, secret: [u8; 32]) -> (String, [u8; 32]) {
    (format!("{user}.{}", URL_SAFE_NO_PAD.encode(secret)), Sha256::digest(secret).into())
}

/// The user and digest of a challenge token; `None` if it is malformed.
pub fn parse_challenge_token(token: &str) -> Option<(UserId, [u8; 32])> {
    let (user, secret) = token.split_once('.')?;
    let secret = URL_SAFE_NO_PAD.decode(secret).ok().filter(|s| s.len() == 32)?;
    Some((UserId::parse(user)?, Sha256::digest(secret).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_open_only_for_their_user_and_factor() {
        let keys = FactorKeys::new([1; 32], [2; 32]);
        let (user, other) = (UserId([2; 16]), UserId([3; 16]));
        let sealed = keys.seal(user, [4; 16], b"twenty bytes secret!", [5; 24]);
        assert_eq!(keys.open(user, [4; 16], &sealed).as_deref(), Some(&b"twenty bytes secret!"[..]));
        assert_eq!(keys.open(other, [4; 16], &sealed), None);
        assert_eq!(keys.open(user, [6; 16], &sealed), None);
        assert_eq!(FactorKeys::new([9; 32], [2; 32]).open(user, [4; 16], &sealed), None);
    }

    #[test]
    fn recovery_codes_carry_100_bits_and_their_digest_ignores_how_they_are_typed() {
        let code = recovery_code([0xff; 13]);
        assert_eq!(code, "77777-77777-77777-77777");
        let code = recovery_code([0x5a; 13]);
        assert_eq!(code.len(), 23);
        let keys = FactorKeys::new([1; 32], [2; 32]);
        let user = UserId([2; 16]);
        let digest = keys.recovery_digest(user, &code).unwrap();
        assert_eq!(keys.recovery_digest(user, &code.to_uppercase().replace('-', " ")), Some(digest));
        assert_ne!(keys.recovery_digest(UserId([3; 16]), &code), Some(digest));
        assert_eq!(keys.recovery_digest(user, "short"), None);
        assert_eq!(keys.recovery_digest(user, "11111-11111-11111-11111"), None, "not base32");
    }

    #[test]
    fn challenge_tokens_round_trip() {
        let user = UserId([2; 16]);
        let (token, digest) = challenge_token(user, [7; 32]);
        assert_eq!(parse_challenge_token(&token), Some((user, digest)));
        assert_eq!(parse_challenge_token("nonsense"), None);
        assert_eq!(parse_challenge_token(&format!("{user}.AAAA")), None);
    }
}
