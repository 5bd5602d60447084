//! Acknowledged writes survive: `kill -9` and restart, and a restore from Postgres after the
//! data directory is gone.

mod common;

use common::*;
use serde_json::{Value, json};
use tessera::config::{DatabaseUrl, Secret};

async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
    client.post(url).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn logouts_and_rotations_survive_kill_9() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spawn = || {
        ChildNode::spawn(data.clone(), |c| {
            c.arg("serve").env("TESSERA_ARGON2__MEMORY_KIB", "256").env("TESSERA_ARGON2__ITERATIONS", "1");
        })
    };

    // Arrange: two sessions; one logged out, one rotated once.
    let mut node = spawn();
    node.wait_ready(&client).await;
    let credentials = json!({ "email": "durable@example.com", "password": PASSWORD });
    assert_eq!(post(&client, node.url("/v1/users"), credentials.clone()).await.status(), 201);
    let ended: Value = post(&client, node.url("/v1/login"), credentials.clone()).await.json().await.unwrap();
    let kept: Value = post(&client, node.url("/v1/login"), credentials.clone()).await.json().await.unwrap();
    let logout =
        client.post(node.url("/v1/logout")).bearer_auth(ended["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    let rotated: Value =
        post(&client, node.url("/v1/token/refresh"), json!({ "refresh_token": kept["refresh_token"] }))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(generation_of(rotated["refresh_token"].as_str().unwrap()), 2);

    // Act: no shutdown, no flush — SIGKILL.
    node.kill9();
    let mut node = spawn();
    node.wait_ready(&client).await;

    // Assert: the logout holds, the rotation holds, and the old generation is a replay.
    let verify =
        |token: &Value| client.get(node.url("/v1/verify")).bearer_auth(token.as_str().unwrap().to_string()).send();
    assert_eq!(verify(&ended["access_token"]).await.unwrap().status(), 401, "logged-out access token");
    let refresh = |token: &Value| post(&client, node.url("/v1/token/refresh"), json!({ "refresh_token": token }));
    assert_eq!(refresh(&ended["refresh_token"]).await.status(), 401, "logged-out refresh token");
    assert_eq!(verify(&rotated["access_token"]).await.unwrap().status(), 200, "tokens minted before the crash verify");
    let next = refresh(&rotated["refresh_token"]).await;
    assert_eq!(next.status(), 200, "the acknowledged rotation is the current generation");
    assert_eq!(generation_of(next.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap()), 3);
    assert_eq!(refresh(&kept["refresh_token"]).await.status(), 401, "the pre-crash parent is now a replay");
}

#[tokio::test]
async fn a_node_restores_sessions_from_postgres_after_losing_its_data_directory() {
    let db = PgDatabase::create();
    let configure = |dir: &std::path::Path| {
        let mut settings = test_settings(dir.join("data"));
        settings.database_url = Some(DatabaseUrl::new(db.url.clone()));
        // Secrets live outside the data directory, as they must in production.
        settings.refresh_pepper = Some(Secret::new("refresh-pepper-for-restore-tests-0123456789".into()));
        settings.key_encryption_key = Some(Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".into()));
        settings
    };
    let first_dir = tempfile::tempdir().unwrap();
    let settings = configure(first_dir.path());
    let app = TestApp::spawn_with(first_dir, settings).await;
    let ended = app.session("restore@example.com").await;
    let kept: Value = app.login("restore@example.com", PASSWORD).await.json().await.unwrap();
    let logout = app
        .client
        .post(app.url("/v1/logout"))
        .bearer_auth(ended["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let jwks_before: Value =
        app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    drop(app.stop().await); // graceful: flushes to Postgres; then the directory is deleted

    let second_dir = tempfile::tempdir().unwrap();
    let settings = configure(second_dir.path());
    let app = TestApp::spawn_with(second_dir, settings).await;
    let jwks_after: Value =
        app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks_after, jwks_before, "the signing key came back from the store");
    assert_eq!(app.verify(ended["access_token"].as_str().unwrap()).await.status(), 401);
    assert_eq!(app.refresh(ended["refresh_token"].as_str().unwrap()).await.status(), 401);
    assert_eq!(app.verify(kept["access_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(app.refresh(kept["refresh_token"].as_str().unwrap()).await.status(), 200);
    let relogin = app.login("restore@example.com", PASSWORD).await;
    assert_eq!(relogin.status(), 200, "the identity came back too");
    app.stop().await;
}

#[tokio::test]
async fn the_sql_views_show_identities_and_sessions() {
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.database_url = Some(DatabaseUrl::new(db.url.clone()));
    let app = TestApp::spawn_with(dir, settings).await;
    let tokens = app.session("views@example.com").await;
    app.client.post(app.url("/v1/logout")).bearer_auth(tokens["access_token"].as_str().unwrap()).send().await.unwrap();
    let live: Value = app.login("views@example.com", PASSWORD).await.json().await.unwrap();
    app.node().cluster().flush().await.unwrap();

    let url = db.url.clone();
    let user_id = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(live["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (identity, sessions, plan) = {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let identity: (String, String, bool) =
            sqlx::query_as("SELECT user_id, email, disabled FROM identities").fetch_one(&pool).await.unwrap();
        let sessions: Vec<(String, i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT family_id, generation, revoke_reason, last_ip_cidr FROM session_families WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(&user_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        sqlx::query("SET enable_seqscan = off").execute(&pool).await.unwrap();
        let plan: Vec<(String,)> =
            sqlx::query_as("EXPLAIN SELECT family_id FROM session_families WHERE user_id = 'x' AND revoked_at IS NULL")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        (identity, sessions, plan.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n"))
    };
    assert_eq!(identity, (user_id.clone(), "views@example.com".to_string(), false));
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].2.as_deref(), Some("logout"));
    assert_eq!(sessions[1].2, None);
    assert_eq!(sessions[1].0, live["session_id"].as_str().unwrap());
    assert_eq!(sessions[1].3.as_deref(), Some("127.0.0.0/24"));
    assert!(plan.contains("kv_store_family_user"), "live sessions of a user use the index:\n{plan}");
    app.stop().await;
}
