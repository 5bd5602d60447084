//! One node as a black box: operator endpoints, configuration, secrets, lifecycle.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

#[tokio::test]
async fn a_fresh_node_is_live_ready_and_describes_its_cluster() {
    let app = TestApp::spawn().await;

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let cluster: Value = app.client.get(app.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cluster["node_id"], 1);
    assert_eq!(cluster["role"], "leader");
    assert_eq!(cluster["leader_id"], 1);
    assert_eq!(cluster["members"].as_array().unwrap().len(), 1);
    for field in ["term", "last_log_index", "committed", "applied", "snapshot_index", "store", "proposer"] {
        assert!(cluster.get(field).is_some(), "missing {field}");
    }
    for field in ["kind", "watermark", "lag_entries", "lag_seconds"] {
        assert!(cluster["store"].get(field).is_some(), "missing store.{field}");
    }
    assert_eq!(cluster["store"]["kind"], "sqlite");
    assert!(cluster["proposer"].get("queue_depth").is_some());

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tessera_raft_is_leader"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_problem_json_with_the_request_id_a_trusted_proxy_gave() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_with(dir, settings).await;
    let response =
        app.client.get(app.url("/v1/nothing-here")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "not_found");

    // An unusable request id is replaced, not echoed.
    let response =
        app.client.get(app.url("/healthz")).header("x-request-id", "bad id with spaces").send().await.unwrap();
    assert_ne!(response.headers()["x-request-id"], "bad id with spaces");
    app.stop().await;
}

#[tokio::test]
async fn a_node_on_postgres_reports_its_store() {
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.database_url = Some(tessera::config::DatabaseUrl::new(db.url.clone()));
    let app = TestApp::spawn_with(dir, settings).await;
    let cluster: Value = app.client.get(app.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cluster["store"]["kind"], "postgres");
    assert_eq!(cluster["store"]["reachable"], true);
    app.stop().await;
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["config", "check"])
        .env("TESSERA_DATA_DIR", dir.path())
        .env("TESSERA_PROFILE", "prod")
        .env("TESSERA_CLUSTER_SECRET", "a-very-secret-value-that-must-never-print")
        .env("TESSERA_REFRESH_PEPPER", "another-secret-value-that-must-never-print")
        .env("TESSERA_KEY_ENCRYPTION_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
        .env("TESSERA_TOKENS__ISSUER", "https://auth.example.com")
        .env("TESSERA_ADMIN_TOKEN", "an-admin-token-that-must-never-print-0123")
        .env("TESSERA_DATABASE_URL", "postgres://tessera:hunter2@db.internal/tessera")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("profile = \"prod\""), "{stdout}");
    for secret in [
        "a-very-secret-value",
        "another-secret-value",
        "an-admin-token",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "hunter2",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    assert!(stdout.contains("<redacted>"));
}

#[test]
fn config_check_names_every_problem_and_exits_non_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["config", "check"])
        .env("TESSERA_PROFILE", "prod")
        .env("TESSERA_NODE_ID", "0")
        .env("TESSERA_LISTEN", "127.0.0.1:7070")
        .env("TESSERA_RAFT__ELECTION_TIMEOUT_MIN_MS", "10")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for needle in [
        "node_id",
        "peer_listen",
        "election_timeout_min_ms",
        "TESSERA_CLUSTER_SECRET",
        "TESSERA_REFRESH_PEPPER",
        "TESSERA_KEY_ENCRYPTION_KEY",
        "TESSERA_TOKENS__ISSUER",
        "TESSERA_ADMIN_TOKEN",
    ] {
        assert!(stderr.contains(needle), "{needle} not named in:\n{stderr}");
    }
}

#[test]
fn an_unknown_setting_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["config", "check"])
        .env("TESSERA_LISTN", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("listn"));
}

#[test]
fn the_prod_profile_refuses_to_start_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = tessera_command(dir.path(), free_addr(), free_addr())
        .arg("serve")
        .env("TESSERA_PROFILE", "prod")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("TESSERA_CLUSTER_SECRET"), "{stderr}");
    assert!(!dir.path().join("secrets.toml").exists());
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_the_node_restarts_from_its_own_disk() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut node = ChildNode::spawn(data.clone(), |c| {
        c.arg("serve");
    });
    node.wait_ready(&client).await;
    let first: Value = client.get(node.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
    let secrets = std::fs::read_to_string(data.join("secrets.toml")).unwrap();

    kill(Pid::from_raw(node.child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    let mut node = ChildNode::spawn(data.clone(), |c| {
        c.arg("serve");
    });
    node.wait_ready(&client).await;
    let second: Value = client.get(node.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(second["role"], "leader");
    assert!(second["applied"].as_u64() >= first["applied"].as_u64());
    // The node listens on new ports; it updates its own entry in the membership.
    let own = format!("{}", node.public);
    let started = Instant::now();
    loop {
        let view: Value = client.get(node.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
        if view["members"][0]["public_addr"] == own.as_str() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "membership still shows the old address: {view}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(std::fs::read_to_string(data.join("secrets.toml")).unwrap(), secrets, "dev secrets are generated once");
}

/// Under a permissive umask (022) the data directory is created 0700 and every file the node
/// writes (Raft log, snapshots, SQLite store, dev secrets) is its owner's only; in the prod
/// profile a data directory open to others is refused.
#[tokio::test]
async fn the_data_directory_and_its_files_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    fn modes(dir: &std::path::Path, found: &mut Vec<(std::path::PathBuf, u32)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            found.push((path.clone(), entry.metadata().unwrap().permissions().mode() & 0o777));
            if path.is_dir() {
                modes(&path, found);
            }
        }
    }
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = ChildNode::spawn(data.clone(), |command| {
        command.arg("serve");
    });
    node.wait_ready(&client).await;
    let registered = client
        .post(node.url("/v1/users"))
        .json(&serde_json::json!({ "email": "modes@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await; // a flush to SQLite
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    let mut found = Vec::new();
    modes(&data, &mut found);
    assert!(found.len() >= 3, "{found:?}");
    for (path, mode) in &found {
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
    node.kill9();

    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = tessera_command(&open, free_addr(), free_addr())
        .arg("serve")
        .env("TESSERA_PROFILE", "prod")
        .env("TESSERA_CLUSTER_SECRET", "a-cluster-secret-of-at-least-32-bytes-0123")
        .env("TESSERA_REFRESH_PEPPER", "a-refresh-pepper-of-at-least-32-bytes-0123")
        .env("TESSERA_KEY_ENCRYPTION_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
        .env("TESSERA_ADMIN_TOKEN", "an-admin-token-of-sufficient-length-0123456")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("open to other users"), "{stderr}");
}

/// `deploy/tessera.service` is a unit systemd accepts as written (any warning fails), with the
/// built binary in place of `/usr/local/bin/tessera`. Skipped where `systemd-analyze` is absent.
#[test]
fn the_shipped_systemd_unit_verifies() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(version.status.success());
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/tessera.service")).unwrap();
    for hardening in
        ["DynamicUser=yes", "StateDirectory=tessera", "ProtectSystem=strict", "NoNewPrivileges=yes", "UMask=0077"]
    {
        assert!(unit.lines().any(|l| l == hardening), "{hardening} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tessera", env!("CARGO_BIN_EXE_tessera"))).unwrap();
    let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}
