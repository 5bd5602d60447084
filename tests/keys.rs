//! The signing-key lifecycle seen from outside: the JWK Set's caching headers, immediate and
//! emergency rotation on a three-node cluster, and an independent verifier (PyJWT with a
//! cached key set) through scheduled rotations.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tessera::Settings;
use tessera::config::Secret;

const ADMIN: &str = "keys-test-admin-token-0123456789abcdef";

fn with_admin(settings: &mut Settings) {
    settings.admin_token = Some(Secret::new(ADMIN.into()));
}

async fn keys(app: &TestApp) -> Value {
    let listed = app.client.get(app.url("/v1/admin/keys")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    listed.json().await.unwrap()
}

fn kids_in(state: &str, listed: &Value) -> Vec<String> {
    listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == state)
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

async fn rotate(app: &TestApp, body: Value) -> reqwest::Response {
    app.client.post(app.url("/v1/admin/keys/rotate")).bearer_auth(ADMIN).json(&body).send().await.unwrap()
}

async fn jwks(app: &TestApp) -> Value {
    app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap()
}

/// Every node's JWKS, once they agree (within `limit`).
async fn agreed_jwks(apps: &[TestApp], limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let mut sets = Vec::new();
        for app in apps {
            sets.push(jwks(app).await);
        }
        if sets.windows(2).all(|w| w[0] == w[1]) {
            return sets.remove(0);
        }
        assert!(started.elapsed() < limit, "the nodes' key sets never agreed: {sets:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_key_set_is_cacheable_and_validated_by_its_etag() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    with_admin(&mut settings);
    let app = TestApp::spawn_with(dir, settings).await;

    let first = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=300");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong validator: {etag}");
    let set: Value = first.json().await.unwrap();
    assert_eq!(set["keys"].as_array().unwrap().len(), 1);

    let unchanged =
        app.client.get(app.url("/.well-known/jwks.json")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"].to_str().unwrap(), etag);
    assert!(unchanged.bytes().await.unwrap().is_empty());

    let rotated = rotate(&app, json!({})).await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(rotated["rotated"], true);
    let changed =
        app.client.get(app.url("/.well-known/jwks.json")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(changed.status(), 200, "the key set changed, so the old validator no longer matches");
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let set: Value = changed.json().await.unwrap();
    let published: BTreeSet<&str> =
        set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(published.contains(rotated["active"].as_str().unwrap()));
    assert!(published.contains(rotated["replaced"].as_str().unwrap()), "the retired key stays published");

    let listed = keys(&app).await;
    assert_eq!(kids_in("active", &listed), vec![rotated["active"].as_str().unwrap().to_string()]);
    assert_eq!(kids_in("retired", &listed), vec![rotated["replaced"].as_str().unwrap().to_string()]);

    // Without the admin token: 401; a malformed request: 400, both as problems.
    let anonymous = app.client.get(app.url("/v1/admin/keys")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let unknown_field = rotate(&app, json!({ "revoke": true })).await;
    assert_eq!(unknown_field.status(), 400);
    assert_eq!(unknown_field.headers()["content-type"], "application/problem+json");
    let long_kid = rotate(&app, json!({ "kid": "x".repeat(65) })).await;
    assert_eq!(long_kid.status(), 400);
}

#[tokio::test]
async fn ten_concurrent_rotations_over_three_nodes_replace_the_active_key_exactly_once() {
    let apps = spawn_cluster_with(3, with_admin).await;
    let before = agreed_jwks(&apps, Duration::from_secs(5)).await;
    let active = kids_in("active", &keys(&apps[0]).await);
    assert_eq!(active.len(), 1);
    let target = active[0].clone();

    let requests = (0..10).map(|i| {
        let app = &apps[i % 3];
        let body = json!({ "kid": target, "revoke_current": i % 2 == 1 });
        async move {
            let answer = rotate(app, body).await;
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()
        }
    });
    let answers = futures::future::join_all(requests).await;

    let rotated: Vec<&Value> = answers.iter().filter(|a| a["rotated"] == true).collect();
    assert_eq!(rotated.len(), 1, "exactly one request rotated: {answers:?}");
    let new = rotated[0]["active"].as_str().unwrap();
    assert_eq!(rotated[0]["replaced"], target.as_str());
    for answer in &answers {
        assert_eq!(answer["active"], new, "every request answers with that rotation's result: {answers:?}");
    }
    let after = agreed_jwks(&apps, Duration::from_secs(5)).await;
    assert_ne!(before, after);
    for app in &apps {
        let listed = keys(app).await;
        assert_eq!(kids_in("active", &listed), vec![new.to_string()], "exactly one active key on every node");
        assert_eq!(listed["keys"].as_array().unwrap().len(), if rotated[0]["revoked"] == true { 1 } else { 2 });
    }
    let published: Vec<&str> = after["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(published.contains(&new));
}

#[tokio::test]
async fn after_an_emergency_rotation_the_old_keys_tokens_fail_on_every_node_and_new_ones_verify() {
    let apps = spawn_cluster_with(3, with_admin).await;
    let mut sessions = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let session = app.session(&format!("leak{i}@example.com")).await;
        let token = session["access_token"].as_str().unwrap().to_string();
        for verifier in &apps {
            // Each token verifies everywhere, and is in every node's verified-token cache now.
            assert_eq!(verifier.verify(&token).await.status(), 200);
        }
        sessions.push(session);
    }
    let old = kids_in("active", &keys(&apps[0]).await).remove(0);

    let rotated = rotate(&apps[2], json!({ "revoke_current": true })).await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!((rotated["rotated"].clone(), rotated["revoked"].clone()), (json!(true), json!(true)));
    assert_eq!(rotated["replaced"], old.as_str());

    for app in &apps {
        // Once the removal is applied on a node, its tokens are refused there at once: no
        // wait for the key ring to reload, no cached verification outliving the key.
        let started = Instant::now();
        while keys(app).await["keys"].as_array().unwrap().iter().any(|k| k["kid"] == old.as_str()) {
            assert!(started.elapsed() < Duration::from_secs(5), "the removal never reached {}", app.address);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for session in &sessions {
            let refused = app.verify(session["access_token"].as_str().unwrap()).await;
            assert_eq!(refused.status(), 401, "a token of the revoked key on {}", app.address);
        }
    }
    let set = agreed_jwks(&apps, Duration::from_secs(5)).await;
    assert!(!set["keys"].as_array().unwrap().iter().any(|k| k["kid"] == old.as_str()), "removed from the JWKS");

    // New tokens (a login, a refresh) are signed by the new key and verify on every node at once.
    for (i, app) in apps.iter().enumerate() {
        let refreshed = app.refresh(sessions[i]["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.status(), 200, "the session itself was not revoked, only the key");
        let refreshed: Value = refreshed.json().await.unwrap();
        let login: Value = app.login(&format!("leak{i}@example.com"), PASSWORD).await.json().await.unwrap();
        for token in [&refreshed["access_token"], &login["access_token"]] {
            for verifier in &apps {
                assert_eq!(verifier.verify(token.as_str().unwrap()).await.status(), 200);
            }
        }
    }
}

#[tokio::test]
async fn a_verifier_with_a_cached_key_set_never_meets_an_unknown_kid_through_scheduled_rotations() {
    // Short bounds: a key signs for 8 s, its successor is published 4 s before (twice the
    // 2 s cache age), access tokens live 3 s (+1 s leeway: retired keys stay 4 s).
    let apps = spawn_cluster_with(3, |s| {
        with_admin(s);
        s.keys.rotation_secs = Some(8);
        s.keys.prepublish_secs = 4;
        s.keys.jwks_max_age_secs = 2;
        s.tokens.access_ttl_secs = 3;
        s.tokens.leeway_secs = 1;
    })
    .await;
    assert_eq!(apps[0].register("verifier@example.com", PASSWORD).await.status(), 201);
    let urls: Vec<String> = apps.iter().map(|a| a.address.clone()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/verifier.py");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &urls.join(","), "verifier@example.com", PASSWORD, "26", "2", ISSUER, "tessera"])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["misses"], json!([]), "no token ever carried a kid missing from a cached key set");
    assert!(report["kids"].as_array().unwrap().len() >= 3, "at least two scheduled rotations were crossed: {report}");
    assert!(report["verified"].as_u64().unwrap() > report["logins"].as_u64().unwrap(), "old tokens re-verified");

    let listed = keys(&apps[1]).await;
    assert_eq!(kids_in("active", &listed).len(), 1);
    assert!(listed["keys"].as_array().unwrap().len() <= 3, "retired keys are removed: {listed}");
    // The audit trail records every transition, decided by Tessera itself.
    let events: Value = apps[0]
        .client
        .get(apps[0].url("/v1/admin/audit?action=key.activated"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let activations = events["events"].as_array().unwrap();
    assert!(activations.len() >= 3, "{events}");
    assert!(activations.iter().all(|e| e["actor"]["type"] == "system" && e["resource_type"] == "signing_key"));
}

/// `tessera keys` and `tessera clients` against a running node, as an operator uses them.
#[tokio::test]
async fn the_cli_lists_and_rotates_keys_and_manages_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    with_admin(&mut settings);
    let app = TestApp::spawn_with(dir, settings).await;
    let url = app.address.clone();
    let cli = move |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .args(["--url", &url])
            .env("TESSERA_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let before = kids_in("active", &keys(&app).await).remove(0);

    let run = |args: Vec<&'static str>| {
        let cli = cli.clone();
        tokio::task::spawn_blocking(move || cli(&args))
    };
    let (ok, listed) = run(vec!["keys", "list"]).await.unwrap();
    assert!(ok && listed.contains(&before) && listed.contains("active"), "{listed}");
    let (ok, rotated) = run(vec!["keys", "rotate", "--revoke-current"]).await.unwrap();
    assert!(ok && rotated.starts_with(&format!("revoked {before} → ")), "{rotated}");
    let after = kids_in("active", &keys(&app).await).remove(0);
    assert_ne!(after, before);
    assert!(!keys(&app).await.to_string().contains(&before), "the revoked key is gone");

    let (ok, created) = run(vec!["clients", "create", "--name", "cli api"]).await.unwrap();
    assert!(ok, "{created}");
    let id = created.lines().find_map(|l| l.strip_prefix("client_id=")).unwrap().to_string();
    let secret = created.lines().find_map(|l| l.strip_prefix("client_secret=")).unwrap().to_string();
    let session = app.session("cli@example.com").await;
    let introspected: Value = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", session["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);
    let (ok, listed) = run(vec!["clients", "list"]).await.unwrap();
    assert!(ok && listed.contains(&id) && listed.contains("cli api") && !listed.contains(&secret), "{listed}");
    let delete = {
        let (cli, id) = (cli.clone(), id.clone());
        tokio::task::spawn_blocking(move || cli(&["clients", "delete", "--id", &id])).await.unwrap()
    };
    assert!(delete.0, "{}", delete.1);
    let (_, listed) = run(vec!["clients", "list"]).await.unwrap();
    assert!(!listed.contains(&id));
}
