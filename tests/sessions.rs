//! Sessions as a black box: register, login, rotation, replay, logout, verify, JWKS.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tessera_actors::Record;

#[tokio::test]
async fn register_login_verify_refresh_logout() {
    let app = TestApp::spawn().await;

    let registered = app.register("Alice@Example.com", PASSWORD).await;
    assert_eq!(registered.status(), 201);
    let user_id = registered.json::<Value>().await.unwrap()["user_id"].as_str().unwrap().to_string();

    let login = app.login("alice@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers()["cache-control"], "no-store");
    let tokens: Value = login.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    let access = tokens["access_token"].as_str().unwrap();

    let verified = app.verify(access).await;
    assert_eq!(verified.status(), 200);
    let claims: Value = verified.json().await.unwrap();
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["sid"], tokens["session_id"]);
    assert_eq!(claims["aud"], "tessera");
    assert_eq!(claims["amr"], json!(["pwd"]));
    for claim in ["iss", "iat", "nbf", "exp", "jti", "auth_time"] {
        assert!(claims.get(claim).is_some(), "missing {claim}");
    }

    let head = app.client.head(app.url("/v1/verify")).bearer_auth(access).send().await.unwrap();
    assert_eq!(head.status(), 204);
    assert_eq!(head.headers()["x-tessera-user"], user_id.as_str());
    assert_eq!(head.headers()["x-tessera-session"], tokens["session_id"].as_str().unwrap());

    let me: Value = app.client.get(app.url("/v1/me")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["user_id"], user_id.as_str());

    let refreshed = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);
    let next: Value = refreshed.json().await.unwrap();
    assert_eq!(next["session_id"], tokens["session_id"]);
    assert_eq!(generation_of(next["refresh_token"].as_str().unwrap()), 2);

    let logout = app
        .client
        .post(app.url("/v1/logout"))
        .bearer_auth(next["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(app.verify(access).await.status(), 401, "every access token of the session dies");
    assert_eq!(app.refresh(next["refresh_token"].as_str().unwrap()).await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_chain_of_rotations_moves_one_generation_at_a_time() {
    let app = TestApp::spawn().await;
    let mut tokens = app.session("chain@example.com").await;
    for expected in 2..=25 {
        let response = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
        assert_eq!(response.status(), 200, "rotation to {expected}");
        tokens = response.json().await.unwrap();
        assert_eq!(generation_of(tokens["refresh_token"].as_str().unwrap()), expected);
        assert_eq!(app.verify(tokens["access_token"].as_str().unwrap()).await.status(), 200);
    }
    app.stop().await;
}

#[tokio::test]
async fn replaying_an_older_generation_revokes_the_family_and_its_live_child() {
    let app = TestApp::spawn().await;
    let g1 = app.session("replay@example.com").await;
    let g2: Value = app.refresh(g1["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let g3: Value = app.refresh(g2["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(app.verify(g3["access_token"].as_str().unwrap()).await.status(), 200);

    let replay = app.refresh(g1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(replay.status(), 401);
    assert_eq!(replay.json::<Value>().await.unwrap()["error"], "invalid_grant");

    assert_eq!(app.refresh(g3["refresh_token"].as_str().unwrap()).await.status(), 401, "live child refused by refresh");
    assert_eq!(app.verify(g3["access_token"].as_str().unwrap()).await.status(), 401, "live child refused by verify");
    app.stop().await;
}

async fn concurrent_refreshes(app: &TestApp, email: &str, k: usize) {
    let tokens = app.session(email).await;
    let token = tokens["refresh_token"].as_str().unwrap().to_string();
    let responses = futures::future::join_all((0..k).map(|_| app.refresh(&token))).await;
    let mut successors = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200, "every concurrent refresh succeeds");
        let body: Value = response.json().await.unwrap();
        successors.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    assert!(successors.iter().all(|s| *s == successors[0]), "{k} refreshes, one successor: {successors:?}");
    assert_eq!(generation_of(&successors[0]), 2);
    // Exactly one rotation happened: the shared successor is the current generation.
    let next = app.refresh(&successors[0]).await;
    assert_eq!(next.status(), 200);
    assert_eq!(generation_of(next.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap()), 3);
}

#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_get_the_same_successor() {
    let app = TestApp::spawn().await;
    concurrent_refreshes(&app, "two@example.com", 2).await;
    app.stop().await;
}

#[tokio::test]
async fn ten_concurrent_refreshes_of_one_token_get_the_same_successor() {
    let app = TestApp::spawn().await;
    concurrent_refreshes(&app, "ten@example.com", 10).await;
    app.stop().await;
}

#[tokio::test]
async fn the_grandparent_after_a_grace_retry_is_a_replay() {
    let app = TestApp::spawn().await;
    let g1 = app.session("grace@example.com").await;
    let g1_token = g1["refresh_token"].as_str().unwrap();
    let g2: Value = app.refresh(g1_token).await.json().await.unwrap();

    // The response was lost; the client retries g1 within the grace window.
    let retry: Value = app.refresh(g1_token).await.json().await.unwrap();
    assert_eq!(retry["refresh_token"], g2["refresh_token"], "same successor");

    let g3: Value = app.refresh(g2["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(app.refresh(g1_token).await.status(), 401, "g1 is now a grandparent: replay");
    assert_eq!(app.refresh(g3["refresh_token"].as_str().unwrap()).await.status(), 401, "family revoked");
    app.stop().await;
}

#[tokio::test]
async fn a_grace_retry_from_another_device_is_a_replay() {
    let app = TestApp::spawn().await;
    let g1 = app.session("device@example.com").await;
    let g1_token = g1["refresh_token"].as_str().unwrap();
    let g2: Value = app.refresh(g1_token).await.json().await.unwrap();
    let elsewhere = app
        .client
        .post(app.url("/v1/token/refresh"))
        .header("user-agent", "some other browser")
        .json(&json!({ "refresh_token": g1_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 401);
    assert_eq!(app.refresh(g2["refresh_token"].as_str().unwrap()).await.status(), 401, "family revoked");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_access_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.tokens.access_ttl_secs = 1;
    settings.tokens.leeway_secs = 0;
    let app = TestApp::spawn_with(dir, settings).await;
    let tokens = app.session("expiry@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.verify(access).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let expired = app.verify(access).await;
    assert_eq!(expired.status(), 401);
    assert_eq!(expired.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
    app.stop().await;
}

#[tokio::test]
async fn ended_sessions_are_deleted_from_the_replica_and_the_store_a_retention_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.tokens.access_ttl_secs = 1;
    settings.tokens.leeway_secs = 0;
    settings.sessions.idle_secs = 2;
    settings.sessions.retention_secs = 1;
    let database = settings.database_url().expose().to_string();
    let app = TestApp::spawn_with(dir, settings).await;
    let logged_out = app.session("sweep@example.com").await;
    let idle: Value = app.login("sweep@example.com", PASSWORD).await.json().await.unwrap();
    let mut active: Value = app.login("sweep@example.com", PASSWORD).await.json().await.unwrap();
    let bearer = |tokens: &Value| tokens["access_token"].as_str().unwrap().to_string();
    let logout = app.client.post(app.url("/v1/logout")).bearer_auth(bearer(&logged_out)).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    let stored = |tokens: &Value| {
        let key = format!("fam/{}", tokens["session_id"].as_str().unwrap());
        app.node().cluster().get(&key).unwrap().is_some()
    };
    assert!(stored(&logged_out) && stored(&idle) && stored(&active));

    // The logged-out session goes a retention after its logout, the idle one a retention after
    // it expired; the active one, refreshed every half second, stays.
    let started = std::time::Instant::now();
    while stored(&logged_out) || stored(&idle) {
        assert!(started.elapsed() < Duration::from_secs(15), "ended sessions were never collected");
        let refreshed = app.refresh(active["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.status(), 200);
        active = refreshed.json().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(stored(&active));
    assert!(started.elapsed() >= Duration::from_secs(1), "collected before its retention");
    for ended in [&logged_out, &idle] {
        assert_eq!(app.refresh(ended["refresh_token"].as_str().unwrap()).await.status(), 401);
    }
    assert_eq!(app.verify(&bearer(&active)).await.status(), 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tessera_sessions_collected_total"), "{metrics}");

    // The deletions reach the snapshot store.
    app.node().cluster().flush().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&database).await.unwrap();
    let families: Vec<(String,)> =
        sqlx::query_as("SELECT family_id FROM session_families").fetch_all(&pool).await.unwrap();
    pool.close().await;
    assert_eq!(families, vec![(active["session_id"].as_str().unwrap().to_string(),)]);
    app.stop().await;
}

#[tokio::test]
async fn wrong_email_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.session("known@example.com").await;
    let unknown = app.login("unknown@example.com", PASSWORD).await;
    let wrong = app.login("known@example.com", "not the password").await;
    assert_eq!((unknown.status().as_u16(), wrong.status().as_u16()), (401, 401));
    assert_eq!(unknown.json::<Value>().await.unwrap(), wrong.json::<Value>().await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn registration_checks_email_and_password_length() {
    let app = TestApp::spawn().await;
    let cases = [
        ("not-an-email", PASSWORD, 400),
        ("short@example.com", "1234567", 400),
        ("long@example.com", &"x".repeat(257), 400),
        ("weak8@example.com", "12345678", 400),
        ("ok10@example.com", "tR7#kq2!x9", 201),
        ("emoji@example.com", "🦀🐙🦑🐳🦈🐬🐟🐠🦐🦞🦂", 201),
        ("max@example.com", &"an unguessable passphrase ".repeat(10)[..256], 201),
        ("OK10@example.com", PASSWORD, 409),
    ];
    for (email, password, status) in cases {
        let response = app.register(email, password).await;
        assert_eq!(response.status(), status, "{email} / {} chars", password.chars().count());
        if status != 201 {
            assert_eq!(response.headers()["content-type"], "application/problem+json");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_exactly_one_account() {
    let app = TestApp::spawn().await;
    let attempts = (0..10).map(|i| {
        let email = if i % 2 == 0 { "Race@Example.com" } else { "race@example.com " };
        app.register(email, PASSWORD)
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 9, "{statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_problems_never_500() {
    let app = TestApp::spawn().await;
    let post = |path: &'static str, body: Vec<u8>| {
        app.client.post(app.url(path)).header("content-type", "application/json").body(body).send()
    };
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("/v1/login", b"{\"email\":".to_vec()),
        ("/v1/login", b"[1,2,3]".to_vec()),
        ("/v1/login", b"{\"email\": 42, \"password\": true}".to_vec()),
        ("/v1/users", b"{}".to_vec()),
        ("/v1/login", format!("{{\"email\":\"a@b.c\",\"password\":\"{}\"}}", "x".repeat(2_000)).into_bytes()),
        ("/v1/users", format!("{{\"email\":\"a@b.c\",\"password\":\"{}\"}}", "x".repeat(100_000)).into_bytes()),
        ("/v1/token/refresh", b"{\"refresh_token\": 42}".to_vec()),
        ("/v1/token/refresh", b"\xff\xfe\xfd".to_vec()),
    ];
    for (path, body) in bodies {
        let response = post(path, body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{path} {:?}", String::from_utf8_lossy(&body[..body.len().min(40)]));
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
    let garbage_refresh = app.refresh("garbage").await;
    assert_eq!(garbage_refresh.status(), 401);
    app.stop().await;
}

/// The private signing key, recovered the way only a test with the data directory can.
fn signing_key(app: &TestApp) -> (String, SigningKey) {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let text = std::fs::read_to_string(app.dir.path().join("data/secrets.toml")).unwrap();
    let secrets: BTreeMap<String, String> = toml::from_str(&text).unwrap();
    let kek: [u8; 32] = B64.decode(&secrets["key_encryption_key"]).unwrap().try_into().unwrap();
    let (_, stored) = app.node().cluster().scan_prefix("sigkey/").unwrap().remove(0);
    let Record::LifecycleKey(key, _) = stored.value else { panic!("not a signing key") };
    let seed = chacha20poly1305::XChaCha20Poly1305::new(&kek.into())
        .decrypt(
            chacha20poly1305::XNonce::from_slice(&key.nonce),
            Payload { msg: &key.sealed_private, aad: key.kid.as_bytes() },
        )
        .unwrap();
    (key.kid, SigningKey::from_bytes(&seed.try_into().unwrap()))
}

fn jwt(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let message = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let signature = sign(message.as_bytes());
    format!("{message}.{}", B64.encode(signature))
}

fn decode_part(token: &str, index: usize) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(index).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_and_mistyped_tokens_are_401_never_500() {
    let app = TestApp::spawn().await;
    let tokens = app.session("forge@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let header = decode_part(access, 0);
    let claims = decode_part(access, 1);
    let (kid, key) = signing_key(&app);
    let sign = |message: &[u8]| key.sign(message).to_bytes().to_vec();
    assert_eq!(header["kid"], kid.as_str());

    // Re-signing the genuine header and claims verifies: the forging machinery is sound.
    assert_eq!(app.verify(&jwt(&header, &claims, sign)).await.status(), 200);

    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut tampered = access.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    cases.push(("tampered signature", tampered));
    let mut other_sub = claims.clone();
    other_sub["sub"] = json!("00000000-0000-4000-8000-000000000000");
    let (h, _, s) = (access.split('.').next().unwrap(), (), access.split('.').nth(2).unwrap());
    cases.push(("tampered payload", format!("{h}.{}.{s}", B64.encode(other_sub.to_string()))));
    let none = json!({ "alg": "none", "typ": "at+jwt", "kid": kid });
    cases.push(("alg none", format!("{}.{}.", B64.encode(none.to_string()), B64.encode(claims.to_string()))));
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_string();
    let hs256 = json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid });
    for hmac_key in [x.as_bytes().to_vec(), B64.decode(&x).unwrap()] {
        let token = jwt(&hs256, &claims, |m| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&hmac_key).unwrap();
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        });
        cases.push(("HS256 keyed with the public key", token));
    }
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("someone-else");
    cases.push(("wrong aud", jwt(&header, &wrong_aud, sign)));
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    cases.push(("wrong iss", jwt(&header, &wrong_iss, sign)));
    let mut missing = claims.clone();
    missing.as_object_mut().unwrap().remove("sid");
    cases.push(("missing sid", jwt(&header, &missing, sign)));
    let mut future = claims.clone();
    future["nbf"] = json!(claims["nbf"].as_u64().unwrap() + 3600);
    cases.push(("not yet valid", jwt(&header, &future, sign)));
    for typ in ["JWT", "id_token+jwt", "refresh+jwt"] {
        let mut other = header.clone();
        other["typ"] = json!(typ);
        cases.push(("wrong typ", jwt(&other, &claims, sign)));
    }
    let mut no_typ = header.clone();
    no_typ.as_object_mut().unwrap().remove("typ");
    cases.push(("no typ", jwt(&no_typ, &claims, sign)));
    for hostile_kid in ["../x".to_string(), "' OR 1=1".to_string(), "k".repeat(10_000)] {
        let mut other = header.clone();
        other["kid"] = json!(hostile_kid);
        cases.push(("hostile kid", jwt(&other, &claims, sign)));
    }
    let mut jku = header.clone();
    jku["jku"] = json!("http://127.0.0.1:9/keys");
    jku["kid"] = json!("attacker-key");
    let attacker = SigningKey::from_bytes(&[42; 32]);
    cases.push(("jku pointing elsewhere", jwt(&jku, &claims, |m| attacker.sign(m).to_bytes().to_vec())));
    cases.push(("signed by another key", jwt(&header, &claims, |m| attacker.sign(m).to_bytes().to_vec())));
    cases.push(("empty", String::new()));
    cases.push(("garbage", "a.b.c".to_string()));

    for (name, token) in cases {
        let response = app.verify(&token).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_token", "{name}");
    }

    // A bit flipped in the refresh token's family id is an invalid grant, never a 500.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let mut family = B64.decode(refresh.split('.').next().unwrap()).unwrap();
    family[0] ^= 1;
    let rest = refresh.split_once('.').unwrap().1;
    let flipped = app.refresh(&format!("{}.{rest}", B64.encode(family))).await;
    assert_eq!(flipped.status(), 401);
    assert_eq!(flipped.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(app.refresh(refresh).await.status(), 200, "the genuine token still rotates");
    app.stop().await;
}

#[tokio::test]
async fn the_jwks_alone_verifies_an_access_token_with_an_independent_decoder() {
    let app = TestApp::spawn().await;
    let tokens = app.session("jwks@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();

    // No jsonwebtoken here: split, look the key up by kid, verify Ed25519 with ed25519-dalek.
    let header = decode_part(access, 0);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("EdDSA"), Some("at+jwt")));
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid in JWKS");
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert_eq!((jwk["use"].as_str(), jwk["alg"].as_str()), (Some("sig"), Some("EdDSA")));
    let public: [u8; 32] = B64.decode(jwk["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let (message, signature) = access.rsplit_once('.').unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
    VerifyingKey::from_bytes(&public).unwrap().verify(message.as_bytes(), &signature).expect("signature verifies");

    let discovery: Value =
        app.client.get(app.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], decode_part(access, 1)["iss"]);
    assert!(discovery["jwks_uri"].as_str().unwrap().ends_with("/.well-known/jwks.json"));
    app.stop().await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = TestApp::spawn().await;
    let first = app.session("everywhere@example.com").await;
    let second: Value = app.login("everywhere@example.com", PASSWORD).await.json().await.unwrap();
    let other = app.session("bystander@example.com").await;
    let response = app
        .client
        .post(app.url("/v1/logout?scope=all"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for tokens in [&first, &second] {
        assert_eq!(app.verify(tokens["access_token"].as_str().unwrap()).await.status(), 401);
        assert_eq!(app.refresh(tokens["refresh_token"].as_str().unwrap()).await.status(), 401);
    }
    assert_eq!(app.verify(other["access_token"].as_str().unwrap()).await.status(), 200);
    let bad_scope = app
        .client
        .post(app.url("/v1/logout?scope=everything"))
        .bearer_auth(other["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_scope.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn verdicts_are_counted_in_metrics() {
    let app = TestApp::spawn().await;
    let tokens = app.session("metrics@example.com").await;
    app.login("metrics@example.com", "wrong password!").await;
    let next: Value = app.refresh(tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    app.refresh(tokens["refresh_token"].as_str().unwrap()).await; // grace
    app.refresh("nonsense").await; // invalid
    app.refresh(tokens["refresh_token"].as_str().unwrap()).await; // grace again
    let _ = next;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "tessera_login_total{outcome=\"success\"}",
        "tessera_login_total{outcome=\"failure\"}",
        "tessera_refresh_total{outcome=\"rotated\"}",
        "tessera_refresh_total{outcome=\"grace\"}",
        "tessera_refresh_total{outcome=\"invalid\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let routes = [
        ("/v1/users", "post"),
        ("/v1/login", "post"),
        ("/v1/token/refresh", "post"),
        ("/v1/logout", "post"),
        ("/v1/verify", "get"),
        ("/v1/verify", "head"),
        ("/v1/me", "get"),
        ("/v1/admin/users/{user_id}/unlock", "post"),
        ("/v1/admin/audit", "get"),
        ("/v1/admin/webhooks", "get"),
        ("/v1/admin/webhooks/{name}/deliveries", "get"),
        ("/v1/admin/webhooks/{name}/enable", "post"),
        ("/v1/admin/keys", "get"),
        ("/v1/admin/keys/rotate", "post"),
        ("/v1/admin/clients", "get"),
        ("/v1/admin/clients", "post"),
        ("/v1/admin/clients/{client_id}", "delete"),
        ("/v1/introspect", "post"),
        ("/v1/revoke", "post"),
        ("/v1/revocations/stream", "get"),
        ("/v1/csrf", "get"),
        ("/v1/sessions", "get"),
        ("/v1/sessions/{session_id}", "delete"),
        ("/v1/password", "post"),
        ("/v1/login/mfa", "post"),
        ("/v1/reauthenticate", "post"),
        ("/v1/mfa", "get"),
        ("/v1/mfa/totp", "post"),
        ("/v1/mfa/totp", "delete"),
        ("/v1/mfa/totp/confirm", "post"),
        ("/v1/mfa/recovery-codes", "post"),
        ("/v1/cluster", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/.well-known/openid-configuration", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in routes {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} undocumented");
    }
    assert_eq!(
        paths.len(),
        routes.iter().map(|(p, _)| *p).collect::<std::collections::BTreeSet<_>>().len(),
        "no stale paths"
    );
    app.stop().await;
}
