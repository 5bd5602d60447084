//! What resource servers use — clients, introspection (RFC 7662), revocation (RFC 7009) and
//! the revocation stream — checked with an independent OAuth client (Authlib) and across a
//! three-node cluster.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tessera::Settings;
use tessera::config::Secret;

const ADMIN: &str = "resource-test-admin-token-0123456789abcdef";

fn with_admin(settings: &mut Settings) {
    settings.admin_token = Some(Secret::new(ADMIN.into()));
}

/// Registers a client through the admin API: (client_id, client_secret).
async fn new_client(app: &TestApp, name: &str) -> (String, String) {
    let created = app
        .client
        .post(app.url("/v1/admin/clients"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    (created["client_id"].as_str().unwrap().to_string(), created["client_secret"].as_str().unwrap().to_string())
}

async fn introspect(app: &TestApp, client: &(String, String), token: &str) -> Value {
    let answer = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

#[tokio::test]
async fn authlib_introspects_and_revokes_with_client_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    with_admin(&mut settings);
    let app = TestApp::spawn_with(dir, settings).await;
    let (id, secret) = new_client(&app, "orders api").await;
    let session = app.session("authlib@example.com").await;
    let (access, refresh) = (session["access_token"].as_str().unwrap(), session["refresh_token"].as_str().unwrap());

    let claims: Value = app.verify(access).await.json().await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/resource/authlib_client.py");
    let args = [script.to_string(), app.address.clone(), id, secret, access.to_string(), refresh.to_string()];
    let run = tokio::task::spawn_blocking(move || std::process::Command::new("python3").args(args).output().unwrap())
        .await
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();

    let access_report = &report["access"]["body"];
    assert_eq!(access_report["active"], true, "{report}");
    assert_eq!(access_report["token_type"], "access_token");
    for claim in ["sub", "sid", "iss", "aud", "exp", "iat", "nbf", "jti", "auth_time", "amr", "acr"] {
        assert_eq!(access_report[claim], claims[claim], "{claim}");
    }
    assert_eq!(report["access"]["cache_control"], "no-store");
    assert_eq!(report["refresh"]["body"]["active"], true, "client_secret_post works too: {report}");
    assert_eq!(report["refresh"]["body"]["token_type"], "refresh_token");
    assert_eq!(report["refresh"]["body"]["sid"], claims["sid"]);
    assert_eq!(report["refresh_unhinted"]["body"]["active"], true);
    assert_eq!(report["garbage"]["body"], json!({ "active": false }));
    assert_eq!(report["wrong_secret"]["status"], 401);
    assert_eq!(report["wrong_secret"]["body"]["error"], "invalid_client");
    assert_eq!(report["revoke"], 200);
    assert_eq!(report["revoke_garbage"], 200, "RFC 7009: an invalid token is not an error");
    assert_eq!(report["access_after"]["body"], json!({ "active": false }), "the whole session ended");
    assert_eq!(report["refresh_after"]["body"], json!({ "active": false }));
    assert_eq!(app.verify(access).await.status(), 401);
}

#[tokio::test]
async fn clients_are_created_listed_and_deleted_and_only_their_secret_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    with_admin(&mut settings);
    let app = TestApp::spawn_with(dir, settings).await;
    let client = new_client(&app, "billing").await;
    let session = app.session("clients@example.com").await;
    let access = session["access_token"].as_str().unwrap();

    let listed: Value =
        app.client.get(app.url("/v1/admin/clients")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["clients"].as_array().unwrap().len(), 1);
    assert_eq!(listed["clients"][0]["client_id"], client.0.as_str());
    assert!(!listed.to_string().contains(&client.1), "the secret is never shown again");

    let post = |form: Vec<(&'static str, String)>| app.client.post(app.url("/v1/introspect")).form(&form).send();
    let anonymous = post(vec![("token", access.to_string())]).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"tessera\"");
    assert_eq!(anonymous.headers()["content-type"], "application/problem+json");
    let wrong =
        post(vec![("token", access.to_string()), ("client_id", client.0.clone()), ("client_secret", "x".into())]);
    assert_eq!(wrong.await.unwrap().status(), 401);
    let not_a_form = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth(&client.0, Some(&client.1))
        .json(&json!({ "token": access }))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status(), 415);
    let no_token =
        app.client.post(app.url("/v1/introspect")).basic_auth(&client.0, Some(&client.1)).form(&[("x", "y")]);
    assert_eq!(no_token.send().await.unwrap().status(), 400);
    assert_eq!(introspect(&app, &client, access).await["active"], true);

    let bad_name = app.client.post(app.url("/v1/admin/clients")).bearer_auth(ADMIN).json(&json!({ "name": "" }));
    assert_eq!(bad_name.send().await.unwrap().status(), 400);
    let delete = |id: &str| app.client.delete(app.url(&format!("/v1/admin/clients/{id}"))).bearer_auth(ADMIN).send();
    assert_eq!(delete(&client.0).await.unwrap().status(), 204);
    assert_eq!(delete(&client.0).await.unwrap().status(), 404);
    let after = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "a deleted client's credentials stop working");

    // Audit: both changes, by the admin, about the client.
    let trail: Value = app
        .client
        .get(app.url("/v1/admin/audit?limit=100"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let about: Vec<&Value> =
        trail["events"].as_array().unwrap().iter().filter(|e| e["resource_id"] == client.0.as_str()).collect();
    let actions: Vec<&str> = about.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["client.created", "client.deleted"]);
    assert!(about.iter().all(|e| e["actor"]["type"] == "admin" && e["resource_type"] == "client"));
}

#[tokio::test]
async fn a_logout_on_one_node_is_inactive_at_once_in_introspection_on_another_and_revocation_reaches_every_node() {
    let apps = spawn_cluster_with(3, with_admin).await;
    let client = new_client(&apps[0], "gateway").await;

    for round in 0..5 {
        let session = apps[round % 3].session(&format!("intro{round}@example.com")).await;
        let access = session["access_token"].as_str().unwrap();
        let other = &apps[(round + 1) % 3];
        assert_eq!(introspect(other, &client, access).await["active"], true);
        let logout = apps[round % 3].client.post(apps[round % 3].url("/v1/logout")).bearer_auth(access).send();
        assert_eq!(logout.await.unwrap().status(), 204);
        // No waiting: the write was acknowledged, so every node's introspection sees it.
        for app in &apps {
            assert_eq!(introspect(app, &client, access).await, json!({ "active": false }), "round {round}");
        }
    }

    // A confidential client revokes an access token: its session ends everywhere.
    let session = apps[0].session("revoke-access@example.com").await;
    let access = session["access_token"].as_str().unwrap();
    let revoked = apps[1]
        .client
        .post(apps[1].url("/v1/revoke"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    for app in &apps {
        assert_eq!(introspect(app, &client, access).await["active"], false);
    }
    let refreshed = apps[2].refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 401, "the session's refresh token died with it");

    // A public client (no secret) revokes its own refresh token; an access token it may not.
    let session = apps[2].session("public@example.com").await;
    let (access, refresh) = (session["access_token"].as_str().unwrap(), session["refresh_token"].as_str().unwrap());
    let public = |token: &str| {
        apps[0].client.post(apps[0].url("/v1/revoke")).form(&[("token", token), ("client_id", "spa")]).send()
    };
    assert_eq!(public(access).await.unwrap().status(), 200);
    assert_eq!(introspect(&apps[1], &client, access).await["active"], true, "an access token alone proves nothing");
    assert_eq!(public(refresh).await.unwrap().status(), 200);
    assert_eq!(introspect(&apps[1], &client, access).await["active"], false);
    let nobody = apps[0].client.post(apps[0].url("/v1/revoke")).form(&[("token", refresh)]).send().await.unwrap();
    assert_eq!(nobody.status(), 401, "no client at all");
}

/// Reads server-sent events from `response` until `want` events have arrived (or `limit`).
async fn events(mut response: reqwest::Response, want: usize, limit: Duration) -> Vec<(u64, Value)> {
    let mut buffer = String::new();
    let mut found = Vec::new();
    let deadline = Instant::now() + limit;
    while found.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, response.chunk()).await else { break };
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
            if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                found.push((id.parse().unwrap(), serde_json::from_str(&data).unwrap()));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_revocation_stream_pushes_every_ended_session_and_resumes_after_the_last_event_id() {
    let apps = spawn_cluster_with(3, with_admin).await;
    let client = new_client(&apps[0], "websocket gateway").await;
    let stream = |app: &TestApp, last: Option<u64>| {
        let mut request = app.client.get(app.url("/v1/revocations/stream")).basic_auth(&client.0, Some(&client.1));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        request.send()
    };
    let anonymous = apps[2].client.get(apps[2].url("/v1/revocations/stream")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let live = stream(&apps[2], None).await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut sessions = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        sessions.push(app.session(&format!("sse{i}@example.com")).await);
    }
    let started = Instant::now();
    for (i, session) in sessions.iter().enumerate() {
        let logout =
            apps[i].client.post(apps[i].url("/v1/logout")).bearer_auth(session["access_token"].as_str().unwrap());
        assert_eq!(logout.send().await.unwrap().status(), 204);
    }
    let pushed = events(live, 3, Duration::from_secs(5)).await;
    let took = started.elapsed();
    let sids: Vec<&Value> = pushed.iter().map(|(_, e)| &e["sid"]).collect();
    let expected: Vec<&Value> = sessions.iter().map(|s| &s["session_id"]).collect();
    assert_eq!(sids, expected, "every ended session, in order, on a node that ended none of them");
    assert!(pushed.iter().all(|(_, e)| e["reason"] == "logout" && e["sub"].is_string() && e["at"].is_u64()));
    println!("three logouts on three nodes pushed to node 3's stream within {} ms", took.as_millis());

    // Resume after the first: the other two again, nothing before.
    let resumed = events(stream(&apps[0], Some(pushed[0].0)).await.unwrap(), 2, Duration::from_secs(5)).await;
    assert_eq!(resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![pushed[1].0, pushed[2].0]);
}
