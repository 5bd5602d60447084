//! Client network prefixes: what a session records about where it came from, and what
//! per-network throttling counts by.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// An IPv4 /24 or an IPv6 /64. IPv4-mapped IPv6 addresses count as IPv4. CIDR text in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpPrefix {
    V4([u8; 3]),
    V6([u8; 8]),
}

/// The binary form, for bincode.
#[derive(Serialize, Deserialize)]
enum Wire {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl IpPrefix {
    /// 127.0.0.0/8 or the IPv6 loopback's /64.
    pub fn is_loopback(&self) -> bool {
        match self {
            IpPrefix::V4([a, _, _]) => *a == 127,
            IpPrefix::V6(bytes) => bytes.iter().all(|b| *b == 0),
        }
    }

    /// Parses the CIDR text this type displays as.
    pub fn parse(text: &str) -> Option<IpPrefix> {
        let (addr, bits) = text.split_once('/')?;
        let prefix = IpPrefix::from(addr.parse::<IpAddr>().ok()?);
        let expected = match prefix {
            IpPrefix::V4(_) => "24",
            IpPrefix::V6(_) => "64",
        };
        (bits == expected && prefix.to_string() == text).then_some(prefix)
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            match *self {
                IpPrefix::V4(b) => Wire::V4(b),
                IpPrefix::V6(b) => Wire::V6(b),
            }
            .serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpPrefix, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            IpPrefix::parse(&text).ok_or_else(|| serde::de::Error::custom("not an IPv4 /24 or IPv6 /64 prefix"))
        } else {
            Ok(match Wire::deserialize(deserializer)? {
                Wire::V4(b) => IpPrefix::V4(b),
                Wire::V6(b) => IpPrefix::V6(b),
            })
        }
    }
}

impl From<IpAddr> for IpPrefix {
    fn from(addr: IpAddr) -> IpPrefix {
        match addr {
            IpAddr::V4(v4) => IpPrefix::V4(v4.octets()[..3].try_into().expect("3 of 4 octets")),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpPrefix::from(IpAddr::V4(v4)),
                None => IpPrefix::V6(v6.octets()[..8].try_into().expect("8 of 16 octets")),
            },
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpPrefix::V4([a, b, c]) => write!(f, "{}/24", Ipv4Addr::new(*a, *b, *c, 0)),
            IpPrefix::V6(bytes) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(bytes);
                write!(f, "{}/64", Ipv6Addr::from(full))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_slash_24_and_slash_64() {
        let cases = [
            ("203.0.113.77", "203.0.113.0/24"),
            ("::ffff:203.0.113.77", "203.0.113.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("::1", "::/64"),
        ];
        for (addr, prefix) in cases {
            let parsed = IpPrefix::from(addr.parse::<IpAddr>().unwrap());
            assert_eq!(parsed.to_string(), prefix, "{addr}");
            assert_eq!(IpPrefix::parse(prefix), Some(parsed));
        }
        assert_eq!(IpPrefix::parse("203.0.113.7/24"), None, "host bits set");
        assert_eq!(IpPrefix::parse("203.0.113.0/16"), None);
    }
}
