//! The audit trail, black-box: what the admin query shows after real requests, what
//! `tessera audit verify` and an independent Python verifier (tests/audit/verify_trail.py,
//! written from docs/audit.md) say about the stored trail, and what they say after SQL tampering,
//! a retention purge and an erasure.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tessera::config::Secret;

const ADMIN: &str = "audit-test-admin-token-0123456789abcdef";

fn audited_settings(dir: &Path) -> tessera::Settings {
    let mut settings = test_settings(dir.join("data"));
    settings.admin_token = Some(Secret::new(ADMIN.into()));
    settings.fault_injection = true;
    // A checkpoint after every event, so the tests below have several.
    settings.audit.checkpoint_every = 1;
    settings
}

/// `audited_settings` on a fresh Postgres database instead of the embedded SQLite.
fn audited_on_postgres(dir: &Path, db: &PgDatabase) -> tessera::Settings {
    let mut settings = audited_settings(dir);
    settings.database_url = Some(tessera::config::DatabaseUrl::new(&db.url));
    settings
}

/// `tessera audit …` against the data directory (and so the dev secrets) of a stopped node,
/// and its store if `database_url` is given (else the configured SQLite file).
fn tessera_audit_on(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_DATA_DIR", data_dir)
        .env("TESSERA_LOG", "error");
    if let Some(url) = database_url {
        command.env("TESSERA_DATABASE_URL", url);
    }
    command.arg("audit").args(args).output().expect("run tessera audit")
}

fn tessera_audit(data_dir: &Path, args: &[&str]) -> Output {
    tessera_audit_on(data_dir, None, args)
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn public_key(data_dir: &Path) -> String {
    let output = tessera_audit(data_dir, &["public-key"]);
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// The independent verifier's verdict on a SQLite store.
fn python_verdict(database: &Path, key: &str) -> (bool, String) {
    let output = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/audit/verify_trail.py"))
        .arg(database)
        .arg(key)
        .output()
        .expect("python3 runs");
    (output.status.success(), text(&output))
}

/// Waits until the leader's keeper has signed a checkpoint of the audit stream's head (its
/// `tessera_audit_checkpoint_seq` gauge says which seq it signed last).
async fn wait_checkpointed(app: &TestApp) {
    let head = app.node().cluster().stream_head("audit").last;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let signed = metrics
            .lines()
            .find_map(|line| line.strip_prefix("tessera_audit_checkpoint_seq "))
            .map(|value| value.trim().parse::<f64>().unwrap() as u64);
        if signed == Some(head) {
            return;
        }
        assert!(Instant::now() < deadline, "the head (seq {head}) was never checkpointed: {signed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audit_page(app: &TestApp, query: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/v1/admin/audit{query}"))).bearer_auth(ADMIN).send().await.unwrap()
}

/// Every event the query returns, following `next` with pages of `limit`.
async fn all_events(app: &TestApp, filter: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let response = audit_page(app, &format!("?limit={limit}{filter}{after}")).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return events,
        }
    }
}

fn actions(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(event["action"].as_str().unwrap().to_string()).or_default() += 1;
    }
    counts
}

async fn login_as(app: &TestApp, email: &str, password: &str, agent: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/login"))
        .header("user-agent", agent)
        .header("x-request-id", "chosen-by-the-client")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_acknowledged_action_is_recorded_once_sealed_queryable_and_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let settings = audited_settings(dir.path());
    let data = settings.data_dir.clone();
    let app = TestApp::spawn_with(dir, settings).await;

    // Arrange: a user's life, a stranger's guess and an administrator's unlock.
    assert_eq!(app.register("alice@example.com", PASSWORD).await.status(), 201);
    assert_eq!(app.register("bob@example.com", PASSWORD).await.status(), 201);
    let login = login_as(&app, "alice@example.com", PASSWORD, "audit-test/1").await;
    assert_eq!(login.status(), 200);
    let login_request_id = login.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(login_request_id, "chosen-by-the-client", "only a trusted proxy names the request");
    let tokens: Value = login.json().await.unwrap();
    let alice = all_events(&app, "&action=user.registered", 100).await[0]["user_id"].as_str().unwrap().to_string();
    assert_eq!(login_as(&app, "alice@example.com", "wrong password", "audit-test/1").await.status(), 401);
    assert_eq!(login_as(&app, "nobody@example.com", "wrong password", "audit-test/2").await.status(), 401);
    let refresh = |agent: &'static str| {
        let request = app.client.post(app.url("/v1/token/refresh")).header("user-agent", agent);
        request.json(&json!({ "refresh_token": tokens["refresh_token"] })).send()
    };
    assert_eq!(refresh("another-device/9").await.unwrap().status(), 401, "another device");
    let refreshed = refresh("audit-test/1").await.unwrap();
    assert_eq!(refreshed.status(), 200, "a refresh is a metric, not an event");
    let access = refreshed.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let logout = app
        .client
        .post(app.url("/v1/logout"))
        .header("user-agent", "audit-test/1")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    let unlock =
        app.client.post(app.url(&format!("/v1/admin/users/{alice}/unlock"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(unlock.status(), 200);

    wait_checkpointed(&app).await;

    // Act: read the trail back in pages of two.
    let events = all_events(&app, "", 2).await;

    // Assert: each acknowledged action once, in one gapless order.
    let expected: BTreeMap<String, usize> = [
        ("key.activated", 1),
        ("user.registered", 2),
        ("login.succeeded", 1),
        ("session.created", 1),
        ("login.failed", 2),
        ("device.mismatch_refused", 1),
        ("session.revoked", 1),
        ("account.unlocked", 1),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_string(), n))
    .collect();
    assert_eq!(actions(&events), expected, "{events:#?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(all_events(&app, "", 100).await, events, "one page or many, the same trail");

    let succeeded = events.iter().find(|e| e["action"] == "login.succeeded").unwrap();
    assert_eq!(succeeded["user_id"], alice.as_str());
    assert_eq!(succeeded["actor"], json!({ "type": "user", "id": alice }));
    assert_eq!(succeeded["ip"], "127.0.0.1");
    assert_eq!(succeeded["user_agent"], "audit-test/1");
    assert_eq!(succeeded["request_id"], login_request_id.as_str());
    assert_eq!(succeeded["resource_type"], "session");
    let registered = events.iter().find(|e| e["action"] == "user.registered").unwrap();
    assert_eq!(registered["changes"]["email"], "alice@example.com");
    let failures: Vec<&Value> = events.iter().filter(|e| e["action"] == "login.failed").collect();
    assert_eq!(failures[0]["changes"]["reason"], "bad_password");
    assert_eq!(failures[1]["changes"]["reason"], "unknown_account");
    assert_eq!(failures[1]["user_id"], Value::Null);
    assert_eq!(failures[1]["user_agent"], "audit-test/2", "sealed under the cluster's key, and readable");
    let revoked = events.iter().find(|e| e["action"] == "session.revoked").unwrap();
    assert_eq!(revoked["changes"]["reason"], "logout");
    let unlocked = events.iter().find(|e| e["action"] == "account.unlocked").unwrap();
    assert_eq!(unlocked["actor"], json!({ "type": "admin", "id": "admin-token" }));

    // Filters.
    let mine = all_events(&app, &format!("&user_id={alice}"), 100).await;
    assert!(mine.iter().all(|e| e["user_id"] == alice.as_str()) && mine.len() == 7, "{mine:#?}");
    assert_eq!(all_events(&app, "&action=login.failed", 100).await.len(), 2);
    let at = succeeded["at"].as_str().unwrap();
    let since = all_events(&app, &format!("&since={at}"), 100).await;
    assert!(since.iter().all(|e| e["seq"].as_u64() >= succeeded["seq"].as_u64()) && !since.is_empty());
    assert!(all_events(&app, &format!("&until={at}"), 100).await.iter().all(|e| e["at"].as_str() < Some(at)));

    // Bad input is a 400 problem, no token a 401.
    for query in ["?limit=101", "?limit=0", "?after=x", "?user_id=nope", "?since=yesterday", "?colour=red"] {
        let response = audit_page(&app, query).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{query}");
    }
    assert_eq!(app.client.get(app.url("/v1/admin/audit")).send().await.unwrap().status(), 401);

    // Erasure: alice's key goes, her events stay (and verify), her personal data no longer opens.
    let peer = format!("http://{}/admin/pii/{alice}", app.node().peer_addr());
    assert_eq!(app.client.delete(peer).bearer_auth(ADMIN).send().await.unwrap().status(), 204);
    let erased = all_events(&app, &format!("&user_id={alice}"), 100).await;
    assert_eq!(erased.len(), 7);
    for event in &erased {
        assert_eq!((event["ip"].clone(), event["user_agent"].clone()), (Value::Null, Value::Null), "{event}");
        assert_eq!(event["pii_erased"], true);
    }
    let bob = all_events(&app, "&action=user.registered", 100).await;
    assert_eq!(bob[1]["changes"]["email"], "bob@example.com", "another user's data still opens");
    assert_eq!(bob[0]["changes"]["email"], Value::Null, "alice's email is gone");

    // The stored trail verifies, with Tessera's verifier and with the independent one.
    let _dir = app.stop().await;
    let database = data.join("tessera.sqlite");
    let key = public_key(&data);
    let verified = tessera_audit(&data, &["verify"]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains(&format!("seq 1..={} kept", events.len())), "{}", text(&verified));
    let (ok, verdict) = python_verdict(&database, &key);
    assert!(ok && verdict.starts_with(&format!("ok 1..{}", events.len())), "{verdict}");

    // Retention: purge everything a checkpoint covers, as if the retention had passed.
    let url = format!("sqlite://{}", database.display());
    let purged = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = tessera::audit::store::AuditStore::connect(&url).await.unwrap();
            let key = tessera::audit::checkpoint::parse_public_key(&key).unwrap();
            let mut purged = 0;
            loop {
                match tessera::audit::keeper::purge_before(&store, &key, u64::MAX).await.unwrap() {
                    0 => return purged,
                    gone => purged += gone,
                }
            }
        })
    })
    .await
    .unwrap();
    assert!(purged > 0, "a checkpoint covered at least one event");
    let verified = tessera_audit(&data, &["verify"]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains(&format!("seq 1..={purged} purged")), "{}", text(&verified));
    let (ok, verdict) = python_verdict(&database, &public_key(&data));
    assert!(ok && verdict.contains(&format!("anchored={purged}")), "{verdict}");
}

/// Runs SQL against the test database.
async fn sql(url: &str, statements: &[&str]) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_first_bad_seq_after_any_sql_tampering() {
    // Arrange: a few events in Postgres, a checkpoint after each, the node stopped.
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let settings = audited_on_postgres(dir.path(), &db);
    let data = settings.data_dir.clone();
    let app = TestApp::spawn_with(dir, settings).await;
    for i in 0..4 {
        assert_eq!(app.register(&format!("user{i}@example.com"), PASSWORD).await.status(), 201);
        assert_eq!(app.login(&format!("user{i}@example.com"), "wrong password").await.status(), 401);
        wait_checkpointed(&app).await;
    }
    // seq 1 is the cluster's first signing key (`key.activated`), then two per user.
    assert_eq!(app.node().cluster().stream_head("audit").last, 9);
    let _dir = app.stop().await;
    let verify = || {
        let output = tessera_audit_on(&data, Some(&db.url), &["verify"]);
        (output.status.code(), text(&output))
    };
    let intact = verify();
    assert_eq!(intact.0, Some(0), "{}", intact.1);

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE saved_entries AS SELECT * FROM stream_entries").execute(&pool).await.unwrap();
    sqlx::query("CREATE TABLE saved_heads AS SELECT * FROM stream_heads").execute(&pool).await.unwrap();
    let checkpointed: Vec<u64> = sqlx::query_as::<_, (String,)>(
        "SELECT text FROM stream_entries WHERE stream = 'audit-checkpoints' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(text,)| serde_json::from_str::<Value>(&text).unwrap()["seq"].as_u64().unwrap())
    .collect();
    let restore = [
        "DELETE FROM stream_entries",
        "INSERT INTO stream_entries SELECT * FROM saved_entries",
        "DELETE FROM stream_heads",
        "INSERT INTO stream_heads SELECT * FROM saved_heads",
        "DELETE FROM stream_anchors",
    ];
    let row = |seq: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Vec<u8>, Vec<u8>, String)>(
                "SELECT prev_hash, hash, text FROM stream_entries WHERE stream = 'audit' AND seq = $1",
            )
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    // Act and assert, one tampering at a time on the restored trail.
    let (_, _, second) = row(3).await;
    let tampered = second.replace("bad_password", "throttled").replace('\'', "''");
    assert_ne!(tampered, second);
    let cases: Vec<(String, Vec<String>, u64)> = vec![
        (
            "a changed text".into(),
            vec![format!("UPDATE stream_entries SET text = '{tampered}' WHERE stream = 'audit' AND seq = 3")],
            3,
        ),
        ("a deleted row".into(), vec!["DELETE FROM stream_entries WHERE stream = 'audit' AND seq = 5".into()], 5),
        (
            "the last row deleted".into(),
            vec!["DELETE FROM stream_entries WHERE stream = 'audit' AND seq = 9".into()],
            9,
        ),
        (
            "an inserted row".into(),
            vec![
                "INSERT INTO stream_entries SELECT stream, 10, version, hash, hash, text FROM stream_entries \
                 WHERE stream = 'audit' AND seq = 9"
                    .into(),
            ],
            10,
        ),
    ];
    for (what, statements, seq) in cases {
        sql(&db.url, &restore).await;
        sql(&db.url, &statements.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let (code, out) = verify();
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(out.contains(&format!("audit seq {seq}:")), "{what}: {out}");
    }

    // The text changed and every hash after it recomputed, the head moved along: only the
    // signature of the first checkpoint at or after it (which the forger cannot make) catches it.
    sql(&db.url, &restore).await;
    let (prev, _, _) = row(3).await;
    let mut prev = prev;
    for seq in 3..=9i64 {
        let (_, _, text) = row(seq).await;
        let text = if seq == 3 { text.replace("bad_password", "throttled") } else { text };
        let hash = Sha256::new()
            .chain_update(&prev)
            .chain_update((seq as u64).to_be_bytes())
            .chain_update(text.as_bytes())
            .finalize()
            .to_vec();
        sqlx::query(
            "UPDATE stream_entries SET prev_hash = $1, hash = $2, text = $3 WHERE stream = 'audit' AND seq = $4",
        )
        .bind(&prev)
        .bind(&hash)
        .bind(&text)
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE stream_heads SET hash = $1 WHERE stream = 'audit'").bind(&prev).execute(&pool).await.unwrap();
    let first_checkpoint = *checkpointed.iter().find(|seq| **seq >= 3).expect("a checkpoint after seq 3");
    let (code, out) = verify();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("audit seq {first_checkpoint}:")) && out.contains("checkpoint"), "{out}");

    // Old rows deleted and an anchor planted where no checkpoint was signed: not a purge.
    sql(&db.url, &restore).await;
    let cut = (1..9).find(|seq| !checkpointed.contains(seq)).expect("an uncheckpointed seq");
    let (_, hash, _) = row(cut as i64).await;
    sqlx::query("DELETE FROM stream_entries WHERE stream = 'audit' AND seq <= $1")
        .bind(cut as i64)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO stream_anchors (stream, first_seq, prev_hash) VALUES ('audit', $1, $2)")
        .bind(cut as i64 + 1)
        .bind(&hash)
        .execute(&pool)
        .await
        .unwrap();
    let (code, out) = verify();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("audit seq {}:", cut + 1)) && out.contains("anchor"), "{out}");

    // Restored, it is intact again.
    sql(&db.url, &restore).await;
    assert_eq!(verify().0, Some(0));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_cannot_take_the_trail_event_writes_fail_closed_and_nothing_is_lost() {
    // Arrange: a node on Postgres allowed a backlog of three events, and a transaction that
    // locks the trail's table so the flusher cannot write it.
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = audited_on_postgres(dir.path(), &db);
    settings.audit.max_backlog = 3;
    settings.audit.checkpoint_every = 1_000_000;
    let app = TestApp::spawn_with(dir, settings).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE stream_entries IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();

    // Act: register until refused.
    let mut registered = Vec::new();
    let refused = loop {
        let email = format!("backlog{}@example.com", registered.len());
        let response = app.register(&email, PASSWORD).await;
        match response.status().as_u16() {
            201 => registered.push(email),
            503 => break response.json::<Value>().await.unwrap(),
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
        assert!(registered.len() <= 3, "the backlog limit was not enforced");
    };

    // Assert: a 503 that says why, in the body, /readyz and a metric.
    assert_eq!(refused["detail"], "security events cannot be recorded right now; retry");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("audit backlog full"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("tessera_audit_backlog ") && !l.ends_with(" 0")), "{metrics}");

    // Once the store takes the trail again, writes resume and every acknowledged event is there once.
    lock.rollback().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let email = format!("backlog{}@example.com", registered.len());
        match app.register(&email, PASSWORD).await.status().as_u16() {
            201 => {
                registered.push(email);
                break;
            }
            503 => assert!(Instant::now() < deadline, "writes never resumed"),
            other => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = all_events(&app, "&action=user.registered", 100).await;
    let emails: Vec<&str> = events.iter().map(|e| e["changes"]["email"].as_str().unwrap()).collect();
    assert_eq!(emails, registered.iter().map(String::as_str).collect::<Vec<_>>());
    pool.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_carry_emails_client_addresses_or_token_material() {
    // Arrange: the real binary at debug level behind a "proxy" (this test) that names the client.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("tessera.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = ChildNode::spawn(dir.path().join("data"), |command| {
        command
            .arg("serve")
            .env("TESSERA_ARGON2__MEMORY_KIB", "256")
            .env("TESSERA_ARGON2__ITERATIONS", "1")
            .env("TESSERA_LOCKOUT__BASE_DELAY_MS", "1")
            .env("TESSERA_LOCKOUT__MAX_DELAY_MS", "5")
            .env("TESSERA_LOG", "debug")
            .env("TESSERA_TRUSTED_PROXIES", "127.0.0.1")
            .env("TESSERA_ADMIN_TOKEN", ADMIN)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
    });
    let client = reqwest::Client::new();
    node.wait_ready(&client).await;
    const EMAIL: &str = "scan-me.secretly@example.com";
    const CLIENT_IP: &str = "203.0.113.77";
    const NEW_PASSWORD: &str = "another long passphrase nobody logs";
    let send = |method: reqwest::Method, path: &str| {
        client.request(method, node.url(path)).header("x-forwarded-for", CLIENT_IP).header("user-agent", "scanner/1")
    };
    let post = |path: &str| send(reqwest::Method::POST, path);

    // Act: a user's whole life, mistakes included, and an administrator's.
    let registered = post("/v1/users").json(&json!({ "email": EMAIL, "password": PASSWORD })).send().await.unwrap();
    assert_eq!(registered.status(), 201);
    let user_id = registered.json::<Value>().await.unwrap()["user_id"].as_str().unwrap().to_string();
    let tokens: Value = post("/v1/login")
        .json(&json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let wrong = post("/v1/login").json(&json!({ "email": EMAIL, "password": "wrong guess" })).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = json!({ "email": "nobody.at.all@example.com", "password": "x".repeat(20) });
    assert_eq!(post("/v1/login").json(&unknown).send().await.unwrap().status(), 401);
    let rotated: Value = post("/v1/token/refresh")
        .json(&json!({ "refresh_token": first_refresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = rotated["access_token"].as_str().unwrap().to_string();
    let refresh = rotated["refresh_token"].as_str().unwrap().to_string();
    let verified = send(reqwest::Method::GET, "/v1/verify").bearer_auth(&access).send().await.unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(send(reqwest::Method::GET, "/v1/sessions").bearer_auth(&access).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let change = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD, "revoke_other_sessions": false });
    let changed = post("/v1/password").bearer_auth(&access).json(&change).send().await.unwrap();
    assert!(changed.status().is_success(), "{}", changed.status());
    // A replay of the first refresh token two rotations on (revokes the session), a forged
    // bearer, a bad admin token.
    let again = post("/v1/token/refresh").json(&json!({ "refresh_token": refresh })).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let replay = post("/v1/token/refresh").json(&json!({ "refresh_token": first_refresh })).send().await.unwrap();
    assert_eq!(replay.status(), 401);
    let forged = format!("{access}x");
    assert_eq!(send(reqwest::Method::GET, "/v1/verify").bearer_auth(&forged).send().await.unwrap().status(), 401);
    let unlock = format!("/v1/admin/users/{user_id}/unlock");
    assert_eq!(post(&unlock).bearer_auth("not-the-admin-token").send().await.unwrap().status(), 401);
    assert_eq!(post(&unlock).bearer_auth(ADMIN).send().await.unwrap().status(), 200);
    let trail = send(reqwest::Method::GET, "/v1/admin/audit").bearer_auth(ADMIN).send().await.unwrap();
    let trail: Value = trail.json().await.unwrap();
    assert!(trail["events"].as_array().unwrap().iter().any(|e| e["ip"] == CLIENT_IP), "the trail has the address");
    let _ =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(node.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = node.child.wait();

    // Assert: not one line carries any of it.
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.lines().count() > 20, "debug logging was on:\n{logs}");
    let jwt_signature = access.rsplit('.').next().unwrap();
    let secrets = [
        ("the email", EMAIL),
        ("the email's local part", "scan-me.secretly"),
        ("the unknown email", "nobody.at.all"),
        ("the client address", CLIENT_IP),
        ("the password", PASSWORD),
        ("the new password", NEW_PASSWORD),
        ("the wrong password", "wrong guess"),
        ("a refresh token", &refresh),
        ("the first refresh token", &first_refresh),
        ("the access token's signature", jwt_signature),
        ("the admin token", ADMIN),
        ("the user agent", "scanner/1"),
    ];
    for line in logs.lines() {
        for (what, secret) in &secrets {
            assert!(!line.contains(secret), "{what} in the log: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_a_locked_account_are_all_counted_in_a_few_events() {
    // Arrange: an account locked by three wrong passwords.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = audited_settings(dir.path());
    settings.lockout.threshold = 3;
    settings.lockout.base_delay_ms = 1;
    settings.lockout.max_delay_ms = 1;
    let app = TestApp::spawn_with(dir, settings).await;
    assert_eq!(app.register("locked@example.com", PASSWORD).await.status(), 201);
    for _ in 0..3 {
        assert_eq!(app.login("locked@example.com", "wrong password").await.status(), 401);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Act: an attacker's storm of guesses against the locked account.
    let storm = (0..300).map(|_| app.login("locked@example.com", "another guess"));
    let answers = futures::future::join_all(storm).await;
    let refused = answers.iter().filter(|r| r.status() == 429).count() as u64;
    assert_eq!(refused, 300, "every guess refused without a check");

    // Assert: a couple of events a second, whose attempts add up to every refusal.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let locked = all_events(&app, "&action=login.failed", 100).await;
    let locked: Vec<&Value> = locked.iter().filter(|e| e["changes"]["reason"] == "locked").collect();
    let counted: u64 = locked.iter().map(|e| e["changes"]["attempts"].as_u64().unwrap()).sum();
    assert_eq!(counted, refused, "{locked:#?}");
    assert!(locked.len() <= 6, "{} events for one storm", locked.len());
    assert_eq!(all_events(&app, "&action=account.locked", 100).await.len(), 1);
    app.stop().await;
}
