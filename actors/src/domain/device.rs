//! A device fingerprint: what the session was created from, used to tell a client retrying its
//! own refresh from a stolen token presented elsewhere.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// SHA-256 (truncated to 128 bits) over the device-identifying request headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceHash(pub [u8; 16]);

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
