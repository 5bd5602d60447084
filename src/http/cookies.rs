//! Cookie sessions: which cookies, with which attributes, and reading them back.
//!
//! | cookie | default name | attributes |
//! |---|---|---|
//! | access token | `__Host-tessera-at` | `HttpOnly; Secure; SameSite=Strict; Path=/` |
//! | refresh token | `__Secure-tessera-rt` | `HttpOnly; Secure; SameSite=Strict; Path=/v1/token/refresh` |
//! | CSRF token | `__Host-tessera-csrf` | `Secure; SameSite=Strict; Path=/` (readable by the page) |
//!
//! All are host-only (no `Domain`). The refresh cookie cannot carry the `__Host-` prefix:
//! browsers require `Path=/` for it, and the refresh cookie is deliberately sent only to the
//! refresh endpoint; `__Secure-` still guarantees `Secure`. With `cookies.domain` set, every
//! cookie carries that `Domain` and the `__Secure-` prefix. In the `dev` profile, requests to
//! `localhost`/`127.0.0.1`/`[::1]` over plain HTTP get the same cookies without `Secure` and
//! without prefixes (which require it).

use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite as CookieSameSite};
use actix_web::http::header;

use crate::config::{CookieSettings, SameSite};

pub const REFRESH_PATH: &str = "/v1/token/refresh";

#[derive(Clone, Debug)]
pub struct CookiePolicy {
    settings: CookieSettings,
    /// The dev profile may drop `Secure` for loopback hosts.
    dev: bool,
    /// The names with `Secure` (and its prefixes), and without (dev on loopback only).
    secure_names: Names,
    plain_names: Names,
}

/// The three cookie names in effect for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
}

/// What a login or refresh answered with, to be set as cookies.
pub struct Issued<'a> {
    pub access: &'a str,
    pub access_ttl_secs: u64,
    pub refresh: &'a str,
    pub refresh_ttl_secs: u64,
    pub csrf: &'a str,
}

/// The cookie names, with `Secure` and its prefixes or without.
fn names(settings: &CookieSettings, secure: bool) -> Names {
    let base = &settings.name;
    if !secure {
        return Names { access: format!("{base}-at"), refresh: format!("{base}-rt"), csrf: format!("{base}-csrf") };
    }
    let host_only = if settings.domain.is_some() { "__Secure-" } else { "__Host-" };
    Names {
        access: format!("{host_only}{base}-at"),
        refresh: format!("__Secure-{base}-rt"),
        csrf: format!("{host_only}{base}-csrf"),
    }
}

fn loopback_host(req: &HttpRequest) -> bool {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default().to_string()
    };
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

impl CookiePolicy {
    pub fn new(settings: CookieSettings, dev: bool) -> CookiePolicy {
        let secure_names = names(&settings, true);
        let plain_names = names(&settings, false);
        CookiePolicy { settings, dev, secure_names, plain_names }
    }

    /// Whether cookies for this request carry `Secure` (always, except dev on loopback).
    pub fn secure(&self, req: &HttpRequest) -> bool {
        !(self.dev && loopback_host(req) && req.connection_info().scheme() == "http")
    }

    pub fn names(&self, secure: bool) -> Names {
        if secure { self.secure_names.clone() } else { self.plain_names.clone() }
    }

    fn same_site(&self) -> CookieSameSite {
        match self.settings.same_site {
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::None => CookieSameSite::None,
        }
    }

    fn cookie(
        &self,
        name: String,
        value: String,
        path: &'static str,
        http_only: bool,
        secure: bool,
        ttl: i64,
    ) -> Cookie<'static> {
        let mut cookie = Cookie::build(name, value)
            .path(path)
            .http_only(http_only)
            .secure(secure)
            .same_site(self.same_site())
            .max_age(CookieDuration::seconds(ttl))
            .finish();
        if let Some(domain) = &self.settings.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    /// The cookies that carry a session.
    pub fn issue(&self, req: &HttpRequest, issued: &Issued<'_>) -> Vec<Cookie<'static>> {
        let secure = self.secure(req);
        let names = self.names(secure);
        vec![
            self.cookie(names.access, issued.access.to_string(), "/", true, secure, issued.access_ttl_secs as i64),
            self.cookie(
                names.refresh,
                issued.refresh.to_string(),
                REFRESH_PATH,
                true,
                secure,
                issued.refresh_ttl_secs as i64,
            ),
            self.cookie(names.csrf, issued.csrf.to_string(), "/", false, secure, issued.refresh_ttl_secs as i64),
        ]
    }

    /// The CSRF cookie alone (for `GET /v1/csrf`).
    pub fn csrf_cookie(&self, req: &HttpRequest, csrf: &str, ttl_secs: u64) -> Cookie<'static> {
        let secure = self.secure(req);
        self.cookie(self.names(secure).csrf, csrf.to_string(), "/", false, secure, ttl_secs as i64)
    }

    /// Expired copies of every Tessera cookie, to clear them.
    pub fn cleared(&self, req: &HttpRequest) -> Vec<Cookie<'static>> {
        let secure = self.secure(req);
        let names = self.names(secure);
        vec![
            self.cookie(names.access, String::new(), "/", true, secure, 0),
            self.cookie(names.refresh, String::new(), REFRESH_PATH, true, secure, 0),
            self.cookie(names.csrf, String::new(), "/", false, secure, 0),
        ]
    }

    fn read(&self, req: &HttpRequest, pick: impl Fn(&Names) -> &String) -> Option<String> {
        // Most API requests carry no cookie at all: nothing to parse or decide.
        req.headers().get(header::COOKIE)?;
        let names = if self.secure(req) { &self.secure_names } else { &self.plain_names };
        req.cookie(pick(names)).map(|c| c.value().to_string()).filter(|v| !v.is_empty())
    }

    pub fn access_token(&self, req: &HttpRequest) -> Option<String> {
        self.read(req, |n| &n.access)
    }

    pub fn refresh_token(&self, req: &HttpRequest) -> Option<String> {
        self.read(req, |n| &n.refresh)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn policy(domain: Option<&str>, dev: bool) -> CookiePolicy {
        CookiePolicy::new(CookieSettings { domain: domain.map(String::from), ..CookieSettings::default() }, dev)
    }

    #[test]
    fn names_follow_the_prefix_rules() {
        let host = policy(None, false).names(true);
        assert_eq!(
            (host.access.as_str(), host.refresh.as_str(), host.csrf.as_str()),
            ("__Host-tessera-at", "__Secure-tessera-rt", "__Host-tessera-csrf")
        );
        let domain = policy(Some("example.com"), false).names(true);
        assert_eq!((domain.access.as_str(), domain.csrf.as_str()), ("__Secure-tessera-at", "__Secure-tessera-csrf"));
        assert_eq!(policy(None, true).names(false).access, "tessera-at");
    }

    #[test]
    fn only_dev_on_loopback_drops_secure() {
        let local = TestRequest::default().insert_header(("host", "127.0.0.1:8080")).to_http_request();
        let remote = TestRequest::default().insert_header(("host", "auth.example.com")).to_http_request();
        assert!(!policy(None, true).secure(&local));
        assert!(policy(None, false).secure(&local), "prod never drops Secure");
        assert!(policy(None, true).secure(&remote), "dev keeps Secure for other hosts");
    }
}
