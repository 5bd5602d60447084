//! What a request says about its client: the device fingerprint and the network prefix, and
//! the bearer token it authenticates with.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderName};
use tessera_actors::Record;
use tessera_actors::domain::{AccessVerdict, DeviceBinding, DeviceHash, FamilyId, IpPrefix, Millis, UserId};
use tessera_actors::record::keys;

use crate::error::ApiError;
use crate::http::AppState;
use crate::tokens::AccessClaims;

/// Device and network of the caller.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub device: DeviceHash,
    pub ip: Option<IpPrefix>,
    /// A short description of the device for session lists (the start of its User-Agent).
    pub label: String,
}

/// Longest header value that goes into the device hash; longer values are cut (the hash only
/// needs to tell devices apart, not to store what they sent).
const MAX_DEVICE_HEADER: usize = 512;
const MAX_LABEL_CHARS: usize = 80;

/// How requests are attributed to devices and networks.
#[derive(Clone, Debug)]
pub struct ClientPolicy {
    /// Peers whose `X-Forwarded-For` is believed.
    pub proxies: Vec<Cidr>,
    /// Headers whose values make up the device fingerprint.
    pub device_headers: Vec<HeaderName>,
    pub binding: DeviceBinding,
}

impl ClientPolicy {
    pub fn client(&self, req: &HttpRequest) -> ClientInfo {
        let values: Vec<&[u8]> = self
            .device_headers
            .iter()
            .map(|name| {
                let value = req.headers().get(name).map(|v| v.as_bytes()).unwrap_or_default();
                &value[..value.len().min(MAX_DEVICE_HEADER)]
            })
            .collect();
        let agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown device");
        ClientInfo {
            device: DeviceHash::of(values),
            ip: client_ip(req, &self.proxies).map(IpPrefix::from),
            label: agent.chars().filter(|c| !c.is_control()).take(MAX_LABEL_CHARS).collect(),
        }
    }
}

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

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// A request whose access token verified and whose session is live.
pub struct Authenticated {
    pub claims: Arc<AccessClaims>,
    pub user: UserId,
    pub family: FamilyId,
    pub via: Via,
}

/// The token in `Authorization: Bearer …`, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Authenticates from the access cookie first, then from `Authorization: Bearer`. Verifies the
/// token, then checks the local replica: the family exists, belongs to the token's subject, is
/// not revoked, knows the token's generation and (for cookies) is bound to this device; the
/// identity is not disabled.
///
/// A token that verifies but names a session or generation this replica has not applied yet
/// was issued by the leader after a commit this follower has not caught up with (a client that
/// logs in or refreshes through one node and calls another a millisecond later). Then the
/// replica catches up with a read-index round trip and the check runs once more, so a fresh
/// token is never refused for replication lag.
pub async fn authenticate(req: &HttpRequest, state: &AppState, now: Millis) -> Result<Authenticated, ApiError> {
    fresh_enough(state)?;
    let (token, via) = match state.cookies.access_token(req) {
        Some(token) => (token, Via::Cookie),
        None => match bearer(req) {
            Some(token) => (token.to_string(), Via::Bearer),
            None => return Err(ApiError::InvalidToken("an access token is required (cookie or bearer)")),
        },
    };
    let claims = state.tokens.verify(&token, now)?;
    let (Some(user), Some(family)) = (claims.user(), claims.family()) else {
        return Err(ApiError::InvalidToken("the access token is invalid"));
    };
    let device = match via {
        Via::Cookie => Some(state.clients.client(req).device),
        Via::Bearer => None,
    };
    let caller = Authenticated { claims, user, family, via };
    match check_replica(state, &caller, device, now)? {
        Replica::Live => return Ok(caller),
        Replica::Ended => return Err(ApiError::InvalidToken("the session has ended")),
        Replica::Behind => {}
    }
    metrics::counter!("tessera_verify_catch_up_total").increment(1);
    state.node.linearize(CATCH_UP_TIMEOUT).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    match check_replica(state, &caller, device, now)? {
        Replica::Live => Ok(caller),
        Replica::Ended | Replica::Behind => Err(ApiError::InvalidToken("the session has ended")),
    }
}

/// Longest wait for this replica to catch up with a token it has not seen yet.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What the local replica says about a verified token's session.
enum Replica {
    Live,
    Ended,
    /// The family or the token's generation is not in this replica (yet).
    Behind,
}

fn check_replica(
    state: &AppState,
    caller: &Authenticated,
    device: Option<DeviceHash>,
    now: Millis,
) -> Result<Replica, ApiError> {
    let (user, family) = (caller.user, caller.family);
    match state.node.get(&keys::family(family)).map_err(ApiError::internal)? {
        Some(stored) => match stored.value {
            Record::Family(f) if f.user == user => {
                match f.access(caller.claims.generation(), now, device, state.clients.binding) {
                    AccessVerdict::Allowed => {
                        if device.is_some_and(|d| d != f.login_device) {
                            metrics::counter!("tessera_device_mismatch_total", "action" => "logged").increment(1);
                            tracing::warn!(%user, session = %family, "cookie request from another device (binding: log)");
                        }
                    }
                    AccessVerdict::ForeignDevice => {
                        metrics::counter!("tessera_device_mismatch_total", "action" => "rejected").increment(1);
                        tracing::warn!(%user, session = %family, "cookie request from another device refused");
                        return Err(ApiError::InvalidToken("the session is bound to another device"));
                    }
                    AccessVerdict::UnknownGeneration => return Ok(Replica::Behind),
                    AccessVerdict::Revoked | AccessVerdict::Expired => return Ok(Replica::Ended),
                }
            }
            _ => return Ok(Replica::Ended),
        },
        None => return Ok(Replica::Behind),
    }
    match state.node.get(&keys::user(user)).map_err(ApiError::internal)? {
        Some(stored) => match stored.value {
            Record::Identity(identity) if identity.is_active() => Ok(Replica::Live),
            _ => Ok(Replica::Ended),
        },
        None => Ok(Replica::Behind),
    }
}

/// Fails closed on a node that has not heard from a leader (the leader: from a quorum) within
/// `max_staleness`: its replica may be frozen, and a revoked session must not read as live.
pub fn fresh_enough(state: &AppState) -> Result<(), ApiError> {
    match state.node.staleness() {
        Some(age) if age <= state.max_staleness => Ok(()),
        _ => {
            metrics::counter!("tessera_stale_reads_refused_total").increment(1);
            Err(ApiError::unavailable("this node has not heard from a leader recently"))
        }
    }
}

/// A state-changing request authenticated by cookie must come from an allowed origin and
/// carry the session's CSRF token. Bearer-authenticated requests pass.
pub fn require_csrf(
    req: &HttpRequest,
    state: &AppState,
    family: FamilyId,
    via: Via,
    now: Millis,
) -> Result<(), ApiError> {
    if via == Via::Bearer {
        return Ok(());
    }
    if !crate::http::csrf::origin_allowed(req, &state.cors_origins) {
        metrics::counter!("tessera_csrf_rejected_total", "reason" => "origin").increment(1);
        return Err(ApiError::Forbidden("the request comes from an origin that is not allowed"));
    }
    let presented = req.headers().get(crate::http::csrf::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if presented.is_empty() || !state.csrf.verify(family, presented, now) {
        metrics::counter!("tessera_csrf_rejected_total", "reason" => "token").increment(1);
        return Err(ApiError::Forbidden("a valid X-CSRF-Token header is required"));
    }
    Ok(())
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
