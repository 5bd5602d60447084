//! A device fingerprint: what the session was created from, used to tell a client retrying its
//! own refresh from a stolen token presented elsewhere.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// SHA-256 (truncated to 128 bits) over the device-identifying request headers. Hex in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceHash(pub [u8; 16]);

impl Serialize for DeviceHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for DeviceHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<DeviceHash, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let mut bytes = [0u8; 16];
            if text.len() != 32 {
                return Err(serde::de::Error::custom("a device hash is 32 hex digits"));
            }
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(serde::de::Error::custom)?;
            }
            Ok(DeviceHash(bytes))
        } else {
            <[u8; 16]>::deserialize(deserializer).map(DeviceHash)
        }
    }
}

impl DeviceHash {
    /// Hashes the given header values in order, each length-prefixed so that boundaries
    /// cannot be shifted between headers.
    pub fn of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> DeviceHash {
        let mut hasher = Sha256::new();
        hasher.update(b"tessera/device/v1");
        for part in parts {
            hasher.update((part.len() as u32).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        DeviceHash(out)
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_boundaries_matter() {
        let a = DeviceHash::of([b"ab".as_slice(), b"c".as_slice()]);
        let b = DeviceHash::of([b"a".as_slice(), b"bc".as_slice()]);
        assert_ne!(a, b);
        assert_eq!(a, DeviceHash::of([b"ab".as_slice(), b"c".as_slice()]));
    }
}
