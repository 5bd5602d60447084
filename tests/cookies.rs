//! Cookie sessions as a black box: cookie attributes in every mode, cookie authentication,
//! CSRF, CORS, security headers, device binding, session management, password change.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use tessera::Settings;
use tessera::http::csrf::Csrf;
use tessera_actors::domain::{FamilyId, Millis};

const APP: &str = "https://app.example.com";
const HOST: &str = "auth.example.com";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";

async fn spawn_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.cors_origins = vec![APP.to_string()];
    tune(&mut settings);
    TestApp::spawn_with(dir, settings).await
}

/// One `Set-Cookie`, parsed: name, value and lowercased attributes.
#[derive(Debug, Clone)]
struct SetCookie {
    value: String,
    attributes: BTreeMap<String, String>,
}

fn set_cookies(headers: &HeaderMap) -> BTreeMap<String, SetCookie> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            let text = v.to_str().unwrap();
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let attributes = parts
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_lowercase(), v.to_string()),
                    None => (p.to_lowercase(), String::new()),
                })
                .collect();
            (name.to_string(), SetCookie { value: value.to_string(), attributes })
        })
        .collect()
}

/// A browser-like client: sends `Host`, `Origin` and a User-Agent, keeps cookies by hand.
struct Browser<'a> {
    app: &'a TestApp,
    host: String,
    origin: Option<String>,
    agent: String,
    jar: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser { app, host: HOST.into(), origin: Some(APP.into()), agent: BROWSER.into(), jar: BTreeMap::new() }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("host", &self.host)
            .header("user-agent", &self.agent);
        if let Some(origin) = &self.origin {
            request = request.header("origin", origin);
        }
        if !self.jar.is_empty() {
            let cookie = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            request = request.header("cookie", cookie);
        }
        request
    }

    /// Sends and stores any cookies set (an empty value or `Max-Age=0` deletes).
    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.unwrap();
        for (name, cookie) in set_cookies(response.headers()) {
            if cookie.value.is_empty() || cookie.attributes.get("max-age").map(String::as_str) == Some("0") {
                self.jar.remove(&name);
            } else {
                self.jar.insert(name, cookie.value);
            }
        }
        response
    }

    async fn login(&mut self, email: &str) -> (reqwest::StatusCode, HeaderMap, Value) {
        let request = self.request(reqwest::Method::POST, "/v1/login").json(&json!({
            "email": email, "password": PASSWORD, "transport": "cookie"
        }));
        let response = self.send(request).await;
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.json().await.unwrap_or(Value::Null))
    }

    fn csrf(&self) -> String {
        self.jar.iter().find(|(k, _)| k.ends_with("-csrf")).map(|(_, v)| v.clone()).expect("csrf cookie")
    }
}

#[tokio::test]
async fn cookie_login_sets_safe_cookies_and_no_tokens_in_the_body() {
    let app = spawn_with(|_| {}).await;
    assert_eq!(app.register("cookie@example.com", PASSWORD).await.status(), 201);
    let mut browser = Browser::new(&app);
    let (status, headers, body) = browser.login("cookie@example.com").await;
    assert_eq!(status, 200);
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["token_type"], "cookie");
    assert!(body["csrf_token"].as_str().unwrap().len() >= 40);

    let cookies = set_cookies(&headers);
    let access = &cookies["__Host-tessera-at"];
    let refresh = &cookies["__Secure-tessera-rt"];
    let csrf = &cookies["__Host-tessera-csrf"];
    for cookie in [access, refresh, csrf] {
        assert!(cookie.attributes.contains_key("secure"), "{cookie:?}");
        assert_eq!(cookie.attributes["samesite"], "Strict", "{cookie:?}");
        assert!(!cookie.attributes.contains_key("domain"), "host-only: {cookie:?}");
        assert!(cookie.attributes.contains_key("max-age"), "{cookie:?}");
    }
    assert!(access.attributes.contains_key("httponly") && refresh.attributes.contains_key("httponly"));
    assert!(!csrf.attributes.contains_key("httponly"), "the page must read the CSRF token");
    assert_eq!(access.attributes["path"], "/");
    assert_eq!(refresh.attributes["path"], "/v1/token/refresh");
    assert_eq!(csrf.attributes["path"], "/");
    assert_eq!(csrf.value, body["csrf_token"].as_str().unwrap());
    app.stop().await;
}

#[tokio::test]
async fn cookie_attributes_follow_the_configuration() {
    for (tune, expect) in [
        (
            Box::new(|s: &mut Settings| s.cookies.same_site = tessera::config::SameSite::Lax)
                as Box<dyn FnOnce(&mut Settings)>,
            ("__Host-tessera-at", "Lax", None),
        ),
        (
            Box::new(|s: &mut Settings| s.cookies.same_site = tessera::config::SameSite::None),
            ("__Host-tessera-at", "None", None),
        ),
        (
            Box::new(|s: &mut Settings| s.cookies.domain = Some("example.com".into())),
            ("__Secure-tessera-at", "Strict", Some("example.com")),
        ),
        (Box::new(|s: &mut Settings| s.cookies.name = "tessera2".into()), ("__Host-tessera2-at", "Strict", None)),
    ] {
        let app = spawn_with(tune).await;
        app.register("mode@example.com", PASSWORD).await;
        let (status, headers, _) = Browser::new(&app).login("mode@example.com").await;
        assert_eq!(status, 200);
        let cookies = set_cookies(&headers);
        let (name, same_site, domain) = expect;
        let access = cookies.get(name).unwrap_or_else(|| panic!("{name} missing from {cookies:?}"));
        assert_eq!(access.attributes["samesite"], same_site);
        assert_eq!(access.attributes.get("domain").map(String::as_str), domain);
        assert!(access.attributes.contains_key("secure"));
        assert!(cookies.values().all(|c| c.attributes.contains_key("secure")));
        app.stop().await;
    }
}

#[tokio::test]
async fn only_the_dev_profile_drops_secure_and_only_for_localhost() {
    let app = spawn_with(|_| {}).await;
    app.register("local@example.com", PASSWORD).await;
    let mut local = Browser::new(&app);
    local.host = app.address.trim_start_matches("http://").to_string();
    local.origin = None;
    let (_, headers, _) = local.login("local@example.com").await;
    let cookies = set_cookies(&headers);
    let access = &cookies["tessera-at"];
    assert!(!access.attributes.contains_key("secure"), "dev on 127.0.0.1 over http: no Secure, no prefix");
    assert!(access.attributes.contains_key("httponly"));
    app.stop().await;

    let app = spawn_with(|s| {
        s.profile = tessera::config::Profile::Prod;
        s.tokens.issuer = Some(ISSUER.into());
        shared_secrets(s);
        s.admin_token = Some(tessera::config::Secret::new("admin-token-for-the-prod-cookie-test-0123".into()));
    })
    .await;
    app.register("local@example.com", PASSWORD).await;
    let mut local = Browser::new(&app);
    local.host = app.address.trim_start_matches("http://").to_string();
    local.origin = None;
    let (_, headers, _) = local.login("local@example.com").await;
    assert!(set_cookies(&headers)["__Host-tessera-at"].attributes.contains_key("secure"), "prod keeps Secure");
    app.stop().await;
}

#[tokio::test]
async fn a_cookie_session_authenticates_refreshes_and_logs_out() {
    let app = spawn_with(|_| {}).await;
    app.register("flow@example.com", PASSWORD).await;
    let mut browser = Browser::new(&app);
    browser.login("flow@example.com").await;

    let me = browser.send(browser.request(reqwest::Method::GET, "/v1/me")).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["email"], "flow@example.com");

    // Refresh with the cookie (no body) rotates both token cookies.
    let before = browser.jar.clone();
    let csrf = browser.csrf();
    let refreshed =
        browser.send(browser.request(reqwest::Method::POST, "/v1/token/refresh").header("x-csrf-token", &csrf)).await;
    assert_eq!(refreshed.status(), 200);
    assert_ne!(browser.jar["__Host-tessera-at"], before["__Host-tessera-at"]);
    assert_ne!(browser.jar["__Secure-tessera-rt"], before["__Secure-tessera-rt"]);
    assert_eq!(generation_of(&browser.jar["__Secure-tessera-rt"]), 2);

    // Logout clears every cookie and tells the browser to.
    let csrf = browser.csrf();
    let logout = browser.send(browser.request(reqwest::Method::POST, "/v1/logout").header("x-csrf-token", &csrf)).await;
    assert_eq!(logout.status(), 204);
    assert_eq!(logout.headers()["clear-site-data"], "\"cookies\"");
    assert!(browser.jar.is_empty(), "all cookies cleared: {:?}", browser.jar);
    let old = format!("__Host-tessera-at={}", before["__Host-tessera-at"]);
    let after = app
        .client
        .get(app.url("/v1/me"))
        .header("host", HOST)
        .header("user-agent", BROWSER)
        .header("cookie", old)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn csrf_failures_are_403_and_change_nothing() {
    let app = spawn_with(|_| {}).await;
    app.register("csrf@example.com", PASSWORD).await;
    app.register("other@example.com", PASSWORD).await;
    let mut browser = Browser::new(&app);
    let (_, _, body) = browser.login("csrf@example.com").await;
    let family = FamilyId::parse(body["session_id"].as_str().unwrap()).unwrap();
    let mut other = Browser::new(&app);
    other.login("other@example.com").await;

    let now = Millis(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64);
    let stale = Csrf::new(CLUSTER_SECRET.as_bytes()).token(family, Millis(now.0 - 2 * 86_400_000));
    /// (case, X-CSRF-Token, Origin, Sec-Fetch-Site)
    type Case<'a> = (&'a str, Option<String>, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("missing token", None, Some(APP), None),
        ("another session's token", Some(other.csrf()), Some(APP), None),
        ("two-day-old token", Some(stale), Some(APP), None),
        ("garbage token", Some("not-a-token".into()), Some(APP), None),
        ("foreign origin", Some(browser.csrf()), Some("https://evil.example"), None),
        ("cross-site fetch without origin", Some(browser.csrf()), None, Some("cross-site")),
    ];
    for (name, token, origin, site) in cases {
        browser.origin = origin.map(String::from);
        let mut request = browser.request(reqwest::Method::POST, "/v1/logout");
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{name}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "access_denied", "{name}");
    }
    browser.origin = Some(APP.into());
    let still = browser.request(reqwest::Method::GET, "/v1/me").send().await.unwrap();
    assert_eq!(still.status(), 200, "nothing changed");
    // A cookie refresh without the CSRF header is refused too.
    let refresh = browser.request(reqwest::Method::POST, "/v1/token/refresh").send().await.unwrap();
    assert_eq!(refresh.status(), 403);

    // Bearer requests are exempt.
    let tokens: Value = app.login("other@example.com", PASSWORD).await.json().await.unwrap();
    let bearer = app
        .client
        .post(app.url("/v1/logout"))
        .header("origin", "https://evil.example")
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 204);

    // A cookie login from a foreign origin is refused before anything happens.
    let mut foreign = Browser::new(&app);
    foreign.origin = Some("https://evil.example".into());
    assert_eq!(foreign.login("csrf@example.com").await.0, 403);
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_listed_origins_with_credentials_and_never_reflects_others() {
    let app = spawn_with(|_| {}).await;
    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
            .header("origin", origin.to_string())
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-csrf-token")
            .send()
    };
    let allowed = preflight(APP).await.unwrap();
    assert!(allowed.status().is_success());
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let methods = h["access-control-allow-methods"].to_str().unwrap().to_string();
    for method in ["GET", "HEAD", "POST", "DELETE"] {
        assert!(methods.contains(method), "{method} in {methods}");
    }
    assert!(h["access-control-allow-headers"].to_str().unwrap().to_lowercase().contains("x-csrf-token"));
    assert!(h.get_all("vary").iter().any(|v| v.to_str().unwrap().to_lowercase().contains("origin")));

    let unlisted = preflight("https://evil.example").await.unwrap();
    assert!(unlisted.headers().get("access-control-allow-origin").is_none());
    let simple = app.client.get(app.url("/healthz")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(simple.headers().get("access-control-allow-origin").is_none());
    let listed = app.client.get(app.url("/healthz")).header("origin", APP).send().await.unwrap();
    assert_eq!(listed.headers()["access-control-allow-origin"], APP);
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_with(|s| s.hsts_max_age_secs = Some(31_536_000)).await;
    let responses = vec![
        ("success", app.client.get(app.url("/healthz")).send().await.unwrap()),
        ("auth error", app.client.get(app.url("/v1/me")).send().await.unwrap()),
        ("not found", app.client.get(app.url("/nope")).send().await.unwrap()),
        ("bad request", app.post("/v1/login", json!({"email": 1})).await),
    ];
    for (name, response) in responses {
        let h = response.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{name}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{name}");
        assert_eq!(h["permissions-policy"], "geolocation=(), microphone=(), camera=()", "{name}");
        assert!(h.contains_key("x-request-id"), "{name}");
        assert_eq!(h["cache-control"], "no-store", "{name}");
        assert_eq!(h["strict-transport-security"], "max-age=31536000; includeSubDomains", "{name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_session_bound_to_one_device_refuses_another() {
    let app = spawn_with(|_| {}).await;
    app.register("bound@example.com", PASSWORD).await;
    let mut browser = Browser::new(&app);
    browser.login("bound@example.com").await;
    let mut thief = Browser::new(&app);
    thief.jar = browser.jar.clone();
    thief.agent = "curl/8.0 (stolen cookies)".into();
    assert_eq!(thief.request(reqwest::Method::GET, "/v1/me").send().await.unwrap().status(), 401);
    let csrf = browser.csrf();
    let stolen_refresh =
        thief.request(reqwest::Method::POST, "/v1/token/refresh").header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(stolen_refresh.status(), 401);
    // The family was left untouched: the owner still refreshes.
    let owner =
        browser.send(browser.request(reqwest::Method::POST, "/v1/token/refresh").header("x-csrf-token", &csrf)).await;
    assert_eq!(owner.status(), 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tessera_device_mismatch_total{action=\"rejected\"}"), "{metrics}");
    app.stop().await;

    // Under `log`, the same request is allowed (and counted).
    let app = spawn_with(|s| s.device.binding = tessera::config::DeviceBinding::Log).await;
    app.register("bound@example.com", PASSWORD).await;
    let mut browser = Browser::new(&app);
    browser.login("bound@example.com").await;
    let mut elsewhere = Browser::new(&app);
    elsewhere.jar = browser.jar.clone();
    elsewhere.agent = "another browser".into();
    assert_eq!(elsewhere.request(reqwest::Method::GET, "/v1/me").send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn users_list_and_revoke_only_their_own_sessions() {
    let app = spawn_with(|_| {}).await;
    let mine = app.session("mine@example.com").await;
    let second: Value = app.login("mine@example.com", PASSWORD).await.json().await.unwrap();
    let theirs = app.session("theirs@example.com").await;
    let bearer = |t: &Value| t["access_token"].as_str().unwrap().to_string();

    let list: Vec<Value> =
        app.client.get(app.url("/v1/sessions")).bearer_auth(bearer(&mine)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.len(), 2);
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], mine["session_id"]);
    for session in &list {
        assert!(session["created_at"].as_u64().unwrap() > 0);
        assert_eq!(session["ip_prefix"], "127.0.0.0/24");
        assert!(session["device"].is_string());
    }

    let delete =
        |token: String, id: &str| app.client.delete(app.url(&format!("/v1/sessions/{id}"))).bearer_auth(token).send();
    assert_eq!(
        delete(bearer(&mine), theirs["session_id"].as_str().unwrap()).await.unwrap().status(),
        404,
        "another user's session"
    );
    assert_eq!(delete(bearer(&mine), "not-a-session").await.unwrap().status(), 404);
    assert_eq!(delete(bearer(&mine), second["session_id"].as_str().unwrap()).await.unwrap().status(), 204);
    assert_eq!(app.verify(&bearer(&second)).await.status(), 401);
    assert_eq!(app.verify(&bearer(&theirs)).await.status(), 200, "the other user is untouched");

    // scope=others keeps only the caller's session.
    let third: Value = app.login("mine@example.com", PASSWORD).await.json().await.unwrap();
    let others = app.client.post(app.url("/v1/logout?scope=others")).bearer_auth(bearer(&mine)).send().await.unwrap();
    assert_eq!(others.status(), 204);
    assert_eq!(app.verify(&bearer(&third)).await.status(), 401);
    assert_eq!(app.verify(&bearer(&mine)).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn changing_the_password_rotates_this_session_and_ends_the_others() {
    let app = spawn_with(|s| s.lockout.base_delay_ms = 1_000).await;
    let mine = app.session("changer@example.com").await;
    let other: Value = app.login("changer@example.com", PASSWORD).await.json().await.unwrap();
    let token = mine["access_token"].as_str().unwrap().to_string();
    let change = |current: &str, new: &str, keep: Option<bool>| {
        let mut body = json!({ "current_password": current, "new_password": new });
        if let Some(keep) = keep {
            body["revoke_other_sessions"] = json!(!keep);
        }
        app.client.post(app.url("/v1/password")).bearer_auth(token.clone()).json(&body).send()
    };
    const NEW: &str = "a completely new passphrase for tests";

    let wrong = change("not my password at all", NEW, None).await.unwrap();
    assert_eq!(wrong.status(), 401);
    let too_soon = change(PASSWORD, NEW, None).await.unwrap();
    assert_eq!(too_soon.status(), 429, "a wrong current password counts as a failed attempt");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let weak = change(PASSWORD, "password123", None).await.unwrap();
    assert_eq!(weak.status(), 400);

    let changed = change(PASSWORD, NEW, None).await.unwrap();
    assert_eq!(changed.status(), 200);
    let rotated: Value = changed.json().await.unwrap();
    assert_eq!(rotated["session_id"], mine["session_id"]);
    assert_eq!(generation_of(rotated["refresh_token"].as_str().unwrap()), 2, "this session moved on");
    assert_eq!(app.verify(other["access_token"].as_str().unwrap()).await.status(), 401, "others ended");
    assert_eq!(app.refresh(other["refresh_token"].as_str().unwrap()).await.status(), 401);
    assert_eq!(app.verify(rotated["access_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(app.login("changer@example.com", PASSWORD).await.status(), 401, "old password");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let kept = app.login("changer@example.com", NEW).await;
    assert_eq!(kept.status(), 200, "new password");
    let kept: Value = kept.json().await.unwrap();

    // With revoke_other_sessions: false the other sessions survive.
    let token = rotated["access_token"].as_str().unwrap().to_string();
    let keep = app
        .client
        .post(app.url("/v1/password"))
        .bearer_auth(token)
        .json(&json!({ "current_password": NEW, "new_password": "yet another fresh passphrase here", "revoke_other_sessions": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(keep.status(), 200);
    assert_eq!(app.verify(kept["access_token"].as_str().unwrap()).await.status(), 200);
    let _ = change;
    app.stop().await;
}

/// Step-up applies to cookie sessions as to bearer ones (RFC 9470's challenge and body), and
/// re-authentication answers with new cookies for the same session.
#[tokio::test]
async fn a_stale_cookie_session_gets_the_step_up_challenge_and_re_authenticates() {
    let app = spawn_with(|s| s.mfa.step_up_max_age_secs = 1).await;
    assert_eq!(app.register("stepper@example.com", PASSWORD).await.status(), 201);
    let mut browser = Browser::new(&app);
    let (status, _, session) = browser.login("stepper@example.com").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let change = json!({ "current_password": PASSWORD, "new_password": "a cookie user's new passphrase" });
    let request = browser.request(reqwest::Method::POST, "/v1/password").header("x-csrf-token", browser.csrf());
    let refused = browser.send(request.json(&change)).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_user_authentication"));
    assert_eq!(refused.json::<Value>().await.unwrap()["max_age"], 1);

    let request = browser.request(reqwest::Method::POST, "/v1/reauthenticate").header("x-csrf-token", browser.csrf());
    let renewed = browser.send(request.json(&json!({ "password": PASSWORD }))).await;
    assert_eq!(renewed.status(), 200);
    assert!(!set_cookies(renewed.headers()).is_empty(), "new cookies");
    let renewed: Value = renewed.json().await.unwrap();
    assert_eq!(renewed["session_id"], session["session_id"]);
    assert!(renewed.get("access_token").is_none(), "cookie sessions get no token in the body");
    let request = browser.request(reqwest::Method::POST, "/v1/password").header("x-csrf-token", browser.csrf());
    assert_eq!(browser.send(request.json(&change)).await.status(), 200);
    app.stop().await;
}
