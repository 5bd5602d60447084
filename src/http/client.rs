//! What a request says about its client: the device fingerprint and the network prefix, and
//! the bearer token it authenticates with.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use tessera_actors::Record;
use tessera_actors::domain::{AccessVerdict, DeviceHash, FamilyId, IpPrefix, Millis, UserId};
use tessera_actors::record::keys;

use crate::error::ApiError;
use crate::http::AppState;
use crate::tokens::AccessClaims;

/// Device and network of the caller.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    pub device: DeviceHash,
    pub ip: Option<IpPrefix>,
}

/// Longest header value that goes into the device hash; longer values are cut (the hash only
/// needs to tell devices apart, not to store what they sent).
const MAX_DEVICE_HEADER: usize = 512;

/// An address range (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr.trim().parse::<IpAddr>().ok()?, Some(bits.trim().parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { network: addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn prefix(bytes: &[u8], bits: u8) -> Vec<u8> {
            let mut out = bytes.to_vec();
            for (i, byte) in out.iter_mut().enumerate() {
                let keep = (bits as usize).saturating_sub(i * 8).min(8);
                *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
            }
            out
        }
        let canonical = |ip: IpAddr| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (canonical(self.network), canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix(&n.octets(), self.bits) == prefix(&a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(&n.octets(), self.bits) == prefix(&a.octets(), self.bits),
            _ => false,
        }
    }
}

/// The client's address: the socket's, unless the socket is a trusted proxy — then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. An untrusted peer's
/// `X-Forwarded-For` changes nothing.
pub fn client_ip(req: &HttpRequest, proxies: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = |ip: IpAddr| proxies.iter().any(|c| c.contains(ip));
    if !trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Option<Vec<IpAddr>>>()
        .unwrap_or_default();
    Some(forwarded.into_iter().rev().find(|ip| !trusted(*ip)).unwrap_or(peer))
}

impl ClientInfo {
    pub fn of(req: &HttpRequest, proxies: &[Cidr]) -> ClientInfo {
        let agent = req.headers().get(header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default();
        let agent = &agent[..agent.len().min(MAX_DEVICE_HEADER)];
        ClientInfo { device: DeviceHash::of([agent]), ip: client_ip(req, proxies).map(IpPrefix::from) }
    }
}

/// A request whose bearer token verified and whose session is live.
pub struct Authenticated {
    pub claims: Arc<AccessClaims>,
    pub user: UserId,
    pub family: FamilyId,
}

/// The token in `Authorization: Bearer …`, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Verifies the bearer token, then checks the local replica: the family exists, belongs to
/// the token's subject, is not revoked and knows the token's generation, and the identity is
/// not disabled.
pub fn authenticate(req: &HttpRequest, state: &AppState, now: Millis) -> Result<Authenticated, ApiError> {
    let token = bearer(req).ok_or(ApiError::InvalidToken("a bearer access token is required"))?;
    let claims = state.tokens.verify(token, now)?;
    let (Some(user), Some(family)) = (claims.user(), claims.family()) else {
        return Err(ApiError::InvalidToken("the access token is invalid"));
    };
    let revoked = ApiError::InvalidToken("the session has ended");
    match state.node.get(&keys::family(family)).map_err(ApiError::internal)? {
        Some(stored) => match stored.value {
            Record::Family(f) if f.user == user => match f.access(claims.generation(), now) {
                AccessVerdict::Allowed => {}
                AccessVerdict::Revoked | AccessVerdict::UnknownGeneration | AccessVerdict::Expired => {
                    return Err(revoked);
                }
            },
            _ => return Err(revoked),
        },
        None => return Err(revoked),
    }
    match state.node.get(&keys::user(user)).map_err(ApiError::internal)? {
        Some(stored) => match stored.value {
            Record::Identity(identity) if identity.is_active() => {}
            _ => return Err(revoked),
        },
        None => return Err(revoked),
    }
    Ok(Authenticated { claims, user, family })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn cidrs_match_their_ranges() {
        let cases = [
            ("10.0.0.0/8", "10.200.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("10.0.0.0/8", "::ffff:10.1.1.1", true),
            ("0.0.0.0/0", "203.0.113.9", true),
        ];
        for (cidr, ip, inside) in cases {
            assert_eq!(Cidr::parse(cidr).unwrap().contains(ip.parse().unwrap()), inside, "{cidr} ∋ {ip}");
        }
        for bad in ["", "10.0.0.0/33", "nonsense", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = [Cidr::parse("10.0.0.0/8").unwrap()];
        let from = |peer: &str, xff: Option<&str>| {
            let mut req = TestRequest::default().peer_addr(format!("{peer}:5000").parse().unwrap());
            if let Some(xff) = xff {
                req = req.insert_header(("x-forwarded-for", xff));
            }
            client_ip(&req.to_http_request(), &proxies).unwrap().to_string()
        };
        assert_eq!(from("203.0.113.5", Some("1.2.3.4")), "203.0.113.5", "an untrusted peer cannot forge");
        assert_eq!(from("10.0.0.2", Some("1.2.3.4")), "1.2.3.4");
        assert_eq!(from("10.0.0.2", Some("6.6.6.6, 1.2.3.4, 10.0.0.9")), "1.2.3.4", "right-most untrusted hop");
        assert_eq!(from("10.0.0.2", None), "10.0.0.2");
        assert_eq!(from("10.0.0.2", Some("garbage")), "10.0.0.2");
    }
}
