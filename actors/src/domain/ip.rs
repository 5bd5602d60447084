//! Client network prefixes: what a session records about where it came from, and what
//! per-network throttling counts by.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// An IPv4 /24 or an IPv6 /64. IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IpPrefix {
    V4([u8; 3]),
    V6([u8; 8]),
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
            assert_eq!(
                IpPrefix::from(addr.parse::<IpAddr>().unwrap()).to_string(),
                prefix,
                "{addr}"
            );
        }
    }
}
