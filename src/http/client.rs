//! What a request says about its client: the device fingerprint, the network prefix and the
//! bearer token it authenticates with.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpMessage, HttpRequest};
use tessera_actors::audit::{Actor, Origin};
use tessera_actors::domain::{DeviceBinding, DeviceHash, IpPrefix};
use tessera_actors::protocol::ClientContext;

use crate::http::request_id::RequestId;
use crate::net::Cidr;

/// Longest header value that goes into the device hash; longer values are cut (the hash only
/// needs to tell devices apart, not to store what they sent).
const MAX_DEVICE_HEADER: usize = 512;
const MAX_LABEL_CHARS: usize = 80;
/// Longest user agent the audit trail records.
const MAX_AUDIT_AGENT_CHARS: usize = 256;

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
    /// The caller as the domain sees it.
    pub fn client(&self, req: &HttpRequest) -> ClientContext {
        let agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown device");
        ClientContext {
            device: self.device(req),
            ip: client_ip(req, &self.proxies).map(IpPrefix::from),
            label: agent.chars().filter(|c| !c.is_control()).take(MAX_LABEL_CHARS).collect(),
        }
    }

    /// Where the request came from, for the audit trail: its id, the client's address and user
    /// agent, and who acts.
    pub fn origin(&self, req: &HttpRequest, actor: Actor) -> Origin {
        let agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        Origin {
            request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default(),
            ip: client_ip(req, &self.proxies),
            user_agent: agent.chars().filter(|c| !c.is_control()).take(MAX_AUDIT_AGENT_CHARS).collect(),
            actor,
        }
    }

    /// The caller's device fingerprint alone.
    pub fn device(&self, req: &HttpRequest) -> DeviceHash {
        let values: Vec<&[u8]> = self
            .device_headers
            .iter()
            .map(|name| {
                let value = req.headers().get(name).map(|v| v.as_bytes()).unwrap_or_default();
                &value[..value.len().min(MAX_DEVICE_HEADER)]
            })
            .collect();
        DeviceHash::of(values)
    }
}

/// The client's address: the socket's, unless the socket is a trusted proxy. Then
/// `X-Forwarded-For` is read right to left (each proxy appends the address it received the
/// request from), skipping trusted hops: the first untrusted address is the client. Entries may
/// be `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`. An entry that is none of these, where the
/// client would be, is whatever sent it to the last trusted hop: the request is attributed to
/// that hop (never to nobody, and never past it to an address the client chose). An untrusted
/// peer's `X-Forwarded-For` changes nothing.
pub fn client_ip(req: &HttpRequest, proxies: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = |ip: IpAddr| proxies.iter().any(|c| c.contains(ip));
    if !trusted(peer) {
        return Some(peer);
    }
    let headers: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    let mut last_trusted = peer;
    for hop in headers.iter().rev().flat_map(|v| v.rsplit(',')).map(str::trim).filter(|h| !h.is_empty()) {
        match forwarded_hop(hop) {
            Some(ip) if trusted(ip) => last_trusted = ip,
            Some(ip) => return Some(ip),
            None => return Some(last_trusted),
        }
    }
    Some(last_trusted)
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`.
fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok.then(|| inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)).flatten();
    }
    let (ip, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The token in `Authorization: Bearer …`, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = std::str::from_utf8(token).ok()?.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

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

    /// What nginx sends with `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`:
    /// whatever the client sent, then `, $remote_addr`.
    #[test]
    fn a_forged_or_unparsable_entry_never_hides_the_client_behind_the_proxy() {
        let proxies = [Cidr::parse("127.0.0.1/32").unwrap(), Cidr::parse("10.0.0.0/8").unwrap()];
        let from = |xffs: &[&str]| {
            let mut req = TestRequest::default().peer_addr("127.0.0.1:5000".parse().unwrap());
            for xff in xffs {
                req = req.append_header(("x-forwarded-for", *xff));
            }
            client_ip(&req.to_http_request(), &proxies).unwrap().to_string()
        };
        assert_eq!(from(&["garbage, 203.0.113.7"]), "203.0.113.7", "a forged prefix changes nothing");
        assert_eq!(from(&["6.6.6.6, 203.0.113.7"]), "203.0.113.7", "a forged address changes nothing");
        assert_eq!(from(&["203.0.113.7:51234"]), "203.0.113.7");
        assert_eq!(from(&["[2001:db8::7]:443"]), "2001:db8::7");
        assert_eq!(from(&["[2001:db8::7]"]), "2001:db8::7");
        assert_eq!(from(&["2001:db8::7"]), "2001:db8::7");
        assert_eq!(from(&["203.0.113.7, 10.0.0.9"]), "203.0.113.7", "trusted hops are skipped");
        assert_eq!(from(&["203.0.113.7", "10.0.0.9"]), "203.0.113.7", "several headers are one list");
        assert_eq!(from(&["junk, 10.0.0.9"]), "10.0.0.9", "garbage where the client would be: the last trusted hop");
        assert_eq!(from(&["10.0.0.9, [2001:db8::1]:x"]), "127.0.0.1", "a bad port is garbage");
        assert_eq!(from(&[" , 203.0.113.7 ,"]), "203.0.113.7", "empty entries are skipped");
        assert_eq!(from(&["10.0.0.9"]), "10.0.0.9", "only trusted hops: the first of them");
    }
}
