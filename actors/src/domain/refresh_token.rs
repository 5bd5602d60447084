//! Refresh tokens: `family_id.generation.MAC`.
//!
//! `MAC = HMAC-SHA256(pepper, "tessera/refresh/v1" ‖ family_id ‖ generation ‖ family_salt)`.
//! The pepper is a cluster secret from configuration (never stored with the data); the salt
//! lives in the family's state. So the token of any generation can be recomputed — it is never
//! stored — and a token for a family whose salt an attacker does not know cannot be forged.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ids::{FamilyId, Generation};

type HmacSha256 = Hmac<Sha256>;

/// Longest text that can be a refresh token (22 + 1 + 20 + 1 + 43).
pub const MAX_LEN: usize = 87;

/// The refresh-token pepper. Never printed.
#[derive(Clone)]
pub struct Pepper(Vec<u8>);

impl Pepper {
    pub fn new(bytes: &[u8]) -> Pepper {
        Pepper(bytes.to_vec())
    }

    fn mac(&self, family: FamilyId, generation: Generation, salt: &[u8; 16]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"tessera/refresh/v1");
        mac.update(&family.0);
        mac.update(&generation.0.to_be_bytes());
        mac.update(salt);
        mac
    }

    /// The token for `generation` of a family.
    pub fn issue(&self, family: FamilyId, generation: Generation, salt: &[u8; 16]) -> RefreshToken {
        let tag = self.mac(family, generation, salt).finalize().into_bytes();
        RefreshToken { family, generation, mac: tag.into() }
    }

    /// Constant-time check that `token` was issued for this family's salt.
    pub fn verifies(&self, token: &RefreshToken, salt: &[u8; 16]) -> bool {
        self.mac(token.family, token.generation, salt).verify_slice(&token.mac).is_ok()
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

/// A syntactically valid refresh token. Whether it is genuine takes the family's salt.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefreshToken {
    pub family: FamilyId,
    pub generation: Generation,
    pub mac: [u8; 32],
}

impl RefreshToken {
    /// Parses the canonical text form; anything else (padding, leading zeros, other
    /// separators) is not a token, so one token has exactly one spelling.
    pub fn parse(text: &str) -> Option<RefreshToken> {
        if text.len() > MAX_LEN {
            return None;
        }
        let mut parts = text.split('.');
        let (family, generation, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let family = FamilyId::parse(family)?;
        // Digits only, no sign and no leading zero: exactly the form tokens are issued in.
        if !generation.bytes().all(|b| b.is_ascii_digit()) || generation.starts_with('0') {
            return None;
        }
        let number: u64 = generation.parse().ok()?;
        if mac.len() != 43 {
            return None;
        }
        let mut decoded = [0u8; 33];
        let mac: [u8; 32] = match URL_SAFE_NO_PAD.decode_slice(mac, &mut decoded).ok()? {
            32 => decoded[..32].try_into().ok()?,
            _ => return None,
        };
        Some(RefreshToken { family, generation: Generation(number), mac })
    }
}

impl fmt::Display for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut mac = [0u8; 43];
        let written = URL_SAFE_NO_PAD.encode_slice(self.mac, &mut mac).map_err(|_| fmt::Error)?;
        let mac = std::str::from_utf8(&mac[..written]).map_err(|_| fmt::Error)?;
        write!(f, "{}.{}.{mac}", self.family, self.generation)
    }
}

/// Debug never shows the MAC: a logged token must not be a usable one.
impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefreshToken({}.{}.<redacted>)", self.family, self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 16] = [3; 16];

    fn pepper() -> Pepper {
        Pepper::new(b"pepper for tests, long enough to be real")
    }

    #[test]
    fn an_issued_token_round_trips_and_verifies() {
        let token = pepper().issue(FamilyId([9; 16]), Generation(42), &SALT);
        let parsed = RefreshToken::parse(&token.to_string()).unwrap();
        assert_eq!(parsed, token);
        assert!(pepper().verifies(&parsed, &SALT));
        assert!(token.to_string().len() <= MAX_LEN);
    }

    #[test]
    fn a_token_is_bound_to_its_family_generation_salt_and_pepper() {
        let token = pepper().issue(FamilyId([9; 16]), Generation(42), &SALT);
        assert!(!pepper().verifies(&token, &[4; 16]), "another salt");
        assert!(!Pepper::new(b"another pepper").verifies(&token, &SALT));
        let other_generation = RefreshToken { generation: Generation(43), ..token.clone() };
        assert!(!pepper().verifies(&other_generation, &SALT));
        let mut flipped_family = token.clone();
        flipped_family.family.0[0] ^= 1;
        assert!(!pepper().verifies(&flipped_family, &SALT));
    }

    #[test]
    fn only_the_canonical_spelling_parses() {
        let token = pepper().issue(FamilyId([9; 16]), Generation(7), &SALT).to_string();
        let (family, rest) = token.split_once('.').unwrap();
        let mac = rest.split_once('.').unwrap().1;
        for bad in [
            String::new(),
            format!("{family}.07.{mac}"),
            format!("{family}.0.{mac}"),
            format!("{family}.-7.{mac}"),
            format!("{family}.7.{mac}="),
            format!("{family}.7.{mac}.x"),
            format!("{family}.7"),
            format!("{family}:7:{mac}"),
            format!("{family}.99999999999999999999999.{mac}"),
            "a".repeat(5000),
        ] {
            assert!(RefreshToken::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_the_mac() {
        let token = pepper().issue(FamilyId([9; 16]), Generation(7), &SALT);
        let mac = token.to_string().rsplit_once('.').unwrap().1.to_string();
        assert!(!format!("{token:?}").contains(&mac));
    }
}
