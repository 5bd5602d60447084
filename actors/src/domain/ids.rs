//! Identifiers. Each parses from its text form or does not exist.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Serializes a 16-byte id as its text form for human-readable formats (JSON in the snapshot
/// store, where operators query it) and as raw bytes for bincode (the Raft log).
macro_rules! text_or_bytes {
    ($type:ident, $what:literal) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() { serializer.collect_str(self) } else { self.0.serialize(serializer) }
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$type, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    $type::parse(&text).ok_or_else(|| serde::de::Error::custom(concat!("not a ", $what)))
                } else {
                    <[u8; 16]>::deserialize(deserializer).map($type)
                }
            }
        }
    };
}

text_or_bytes!(UserId, "user id");
text_or_bytes!(FamilyId, "family id");

/// A user's id: a random UUID (v4), stable for the life of the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub [u8; 16]);

impl UserId {
    /// From 16 random bytes; sets the UUID version and variant bits.
    pub fn from_random(mut bytes: [u8; 16]) -> UserId {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        UserId(bytes)
    }

    pub fn parse(text: &str) -> Option<UserId> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        if text.len() != 36 || hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(UserId(bytes))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 36];
        let mut at = 0;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                text[at] = b'-';
                at += 1;
            }
            text[at] = HEX[(b >> 4) as usize];
            text[at + 1] = HEX[(b & 0xf) as usize];
            at += 2;
        }
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// A session family's id: 128 random bits, written as 22 base64url characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FamilyId(pub [u8; 16]);

impl FamilyId {
    pub fn parse(text: &str) -> Option<FamilyId> {
        if text.len() != 22 {
            return None;
        }
        let mut bytes = [0u8; 18];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()? {
            16 => Some(FamilyId(bytes[..16].try_into().ok()?)),
            _ => None,
        }
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 22];
        let written = URL_SAFE_NO_PAD.encode_slice(self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&text[..written]).map_err(|_| fmt::Error)?)
    }
}

/// How many times a family's refresh token has rotated. A counter, never a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Generation(pub u64);

impl Generation {
    pub const FIRST: Generation = Generation(1);

    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let user = UserId::from_random([0xab; 16]);
        assert_eq!(UserId::parse(&user.to_string()), Some(user));
        assert_eq!(user.to_string().chars().nth(14), Some('4'), "UUID version 4");
        let family = FamilyId([7; 16]);
        assert_eq!(FamilyId::parse(&family.to_string()), Some(family));
    }

    #[test]
    fn malformed_ids_do_not_parse() {
        for text in ["", "abc", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "0123456789abcdef0123456789abcdef0123"] {
            assert_eq!(UserId::parse(text), None, "{text}");
        }
        for text in ["", "short", "!!!!!!!!!!!!!!!!!!!!!!", "AAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(FamilyId::parse(text), None, "{text}");
        }
    }
}
