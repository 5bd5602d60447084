//! CSRF protection for cookie-authenticated requests.
//!
//! A mutating request authenticated by cookie must carry `X-CSRF-Token`: an HMAC over the
//! session id and the current day (keyed from the cluster secret, so every node agrees),
//! compared in constant time. Yesterday's token is still accepted, so a token is good for 24
//! to 48 hours. The page reads it from the (non-HttpOnly) CSRF cookie or `GET /v1/csrf`.
//!
//! Independently, such a request must come from an allowed origin: an `Origin` header must be
//! one of `cors_origins` or this server's own; without `Origin`, `Sec-Fetch-Site: cross-site`
//! is refused. Bearer-authenticated requests are exempt: browsers never attach bearer tokens
//! on their own.

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tessera_actors::domain::{FamilyId, Millis};

pub const HEADER: &str = "x-csrf-token";
const DAY_MS: u64 = 86_400_000;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct Csrf {
    key: [u8; 32],
}

impl Csrf {
    /// Derives the CSRF key from the cluster secret.
    pub fn new(cluster_secret: &[u8]) -> Csrf {
        let mut mac = HmacSha256::new_from_slice(cluster_secret).expect("HMAC takes keys of any length");
        mac.update(b"tessera/csrf-key/v1");
        Csrf { key: mac.finalize().into_bytes().into() }
    }

    fn mac(&self, family: FamilyId, day: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"tessera/csrf/v1");
        mac.update(&family.0);
        mac.update(&day.to_be_bytes());
        mac
    }

    /// The token for `family` today.
    pub fn token(&self, family: FamilyId, now: Millis) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(family, now.0 / DAY_MS).finalize().into_bytes())
    }

    /// Whether `presented` is today's or yesterday's token for `family` (constant time).
    pub fn verify(&self, family: FamilyId, presented: &str, now: Millis) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented.trim()) else { return false };
        let today = now.0 / DAY_MS;
        [today, today.saturating_sub(1)].into_iter().any(|day| self.mac(family, day).verify_slice(&tag).is_ok())
    }
}

/// Whether a state-changing, cookie-authenticated request comes from an allowed origin.
pub fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    match req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => {
            let own_host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            allowed.iter().any(|a| a == origin) || (!own_host.is_empty() && origin_host == own_host)
        }
        None => req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) != Some("cross-site"),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const DAY: Millis = Millis(20_000 * DAY_MS + 5);

    #[test]
    fn tokens_are_bound_to_session_and_day() {
        let csrf = Csrf::new(b"cluster secret");
        let family = FamilyId([1; 16]);
        let token = csrf.token(family, DAY);
        assert!(csrf.verify(family, &token, DAY));
        assert!(csrf.verify(family, &token, Millis(DAY.0 + DAY_MS)), "yesterday's token still works");
        assert!(!csrf.verify(family, &token, Millis(DAY.0 + 2 * DAY_MS)), "two days later it does not");
        assert!(!csrf.verify(FamilyId([2; 16]), &token, DAY), "another session");
        assert!(!Csrf::new(b"other secret").verify(family, &token, DAY), "another cluster");
        assert!(!csrf.verify(family, "", DAY));
        assert!(!csrf.verify(family, "!!!", DAY));
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://app.example.com".to_string()];
        let check = |origin: Option<&str>, site: Option<&str>| {
            let mut req = TestRequest::default().insert_header(("host", "auth.example.com"));
            if let Some(origin) = origin {
                req = req.insert_header(("origin", origin));
            }
            if let Some(site) = site {
                req = req.insert_header(("sec-fetch-site", site));
            }
            origin_allowed(&req.to_http_request(), &allowed)
        };
        assert!(check(Some("https://app.example.com"), Some("cross-site")));
        assert!(check(Some("https://auth.example.com"), None), "own origin");
        assert!(!check(Some("https://evil.example"), None));
        assert!(!check(Some("null"), None));
        assert!(check(None, None), "no Origin: not a browser cross-site request");
        assert!(!check(None, Some("cross-site")));
        assert!(check(None, Some("same-origin")));
    }
}
