//! MFA and step-up, black-box: codes come from Debian's `oathtool` (an independent RFC 6238
//! implementation), the QR code is read back by `zbarimg` (after `rsvg-convert` renders the
//! SVG), and token claims are read by decoding the JWT payload here, not by the server.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};

/// What `zbarimg` reads from an SVG QR code.
fn read_qr(svg: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (svg_path, png_path) = (dir.path().join("qr.svg"), dir.path().join("qr.png"));
    std::fs::write(&svg_path, svg).unwrap();
    let rendered = Command::new("rsvg-convert").arg("-o").arg(&png_path).arg(&svg_path).status().expect("rsvg-convert");
    assert!(rendered.success());
    let output = Command::new("zbarimg").args(["--raw", "-q"]).arg(&png_path).output().expect("zbarimg");
    assert!(output.status.success(), "zbarimg read nothing");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// The claims of a JWT, decoded here.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn post_bearer(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

/// Enrols `email` (signed in as `access`): the enrolment answer and the recovery codes.
async fn enrol(app: &TestApp, access: &str) -> (Value, Vec<String>) {
    let enrolment = app.client.post(app.url("/v1/mfa/totp")).bearer_auth(access).send().await.unwrap();
    assert_eq!(enrolment.status(), 201);
    let enrolment: Value = enrolment.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap();
    let code = oathtool(secret, 0);
    let confirm = json!({ "factor_id": enrolment["factor_id"], "code": code });
    let confirmed = post_bearer(app, "/v1/mfa/totp/confirm", access, confirm).await;
    assert_eq!(confirmed.status(), 200);
    let codes: Vec<String> = confirmed.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (enrolment, codes)
}

fn mfa_settings(dir: &std::path::Path) -> tessera::config::Settings {
    let mut settings = test_settings(dir.join("data"));
    settings.lockout.base_delay_ms = 20;
    settings.lockout.max_delay_ms = 40;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_with_an_independent_authenticator_then_logins_need_a_code_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let settings = mfa_settings(dir.path());
    let app = TestApp::spawn_with(dir, settings).await;
    let access = app.session("otp@example.com").await["access_token"].as_str().unwrap().to_string();

    // Enrolment: the URI, the QR code and the secret agree; oathtool's code confirms.
    let enrolment = app.client.post(app.url("/v1/mfa/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(enrolment.status(), 201);
    assert_eq!(enrolment.headers()["cache-control"], "no-store");
    let enrolment: Value = enrolment.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32, "160 bits of base32");
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Tessera:otp%40example.com?secret={secret}&issuer=Tessera&algorithm=SHA1&digits=6&period=30"
        )
    );
    assert_eq!(read_qr(enrolment["qr_svg"].as_str().unwrap()), uri, "the QR code encodes the URI");
    assert_eq!(enrolment["expires_in"], 600);
    let status: Value =
        app.client.get(app.url("/v1/mfa")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    assert_eq!(status, json!({ "totp": false, "recovery_codes_remaining": 0 }), "pending is not enrolled");
    let wrong = json!({ "factor_id": enrolment["factor_id"], "code": "abcdef" });
    assert_eq!(post_bearer(&app, "/v1/mfa/totp/confirm", &access, wrong).await.status(), 401);
    let unknown = json!({ "factor_id": "00".repeat(16), "code": oathtool(&secret, 0) });
    assert_eq!(post_bearer(&app, "/v1/mfa/totp/confirm", &access, unknown).await.status(), 404);
    let confirm_code = oathtool(&secret, 0);
    let confirm = json!({ "factor_id": enrolment["factor_id"], "code": confirm_code });
    let confirmed = post_bearer(&app, "/v1/mfa/totp/confirm", &access, confirm.clone()).await;
    assert_eq!(confirmed.status(), 200);
    let recovery: Vec<String> =
        serde_json::from_value(confirmed.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    assert_eq!(recovery.iter().collect::<std::collections::BTreeSet<_>>().len(), 10);
    assert!(recovery.iter().all(|c| c.len() == 23 && c.replace('-', "").len() == 20), "{recovery:?}");
    assert_eq!(post_bearer(&app, "/v1/mfa/totp/confirm", &access, confirm).await.status(), 404, "confirmed once");
    let status: Value =
        app.client.get(app.url("/v1/mfa")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    assert_eq!(status, json!({ "totp": true, "recovery_codes_remaining": 10 }));
    let again = app.client.post(app.url("/v1/mfa/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(again.status(), 409);

    // The password alone opens no session and sets no cookie.
    let first = app.login("otp@example.com", PASSWORD).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("set-cookie").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["mfa_required"], true);
    assert_eq!(first["factors"], json!(["totp", "recovery_code"]));
    assert_eq!(first["expires_in"], 300);
    assert!(first.get("access_token").is_none());
    let token = first["mfa_token"].as_str().unwrap();

    // The confirming code's step is used; a wrong code counts like a wrong password.
    let replayed = app.post("/v1/login/mfa", json!({ "mfa_token": token, "code": confirm_code })).await;
    assert_eq!(replayed.status(), 401);
    assert_eq!(replayed.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let too_soon = app.post("/v1/login/mfa", json!({ "mfa_token": token, "code": "000000" })).await;
    assert_eq!(too_soon.status(), 429, "the failure delays the next guess");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let both = app.post("/v1/login/mfa", json!({ "mfa_token": token, "code": "1", "recovery_code": "2" })).await;
    assert_eq!(both.status(), 400);

    // The next step's code opens the session, at aal2; it is accepted once.
    let next = oathtool(&secret, 1);
    let opened = app.post("/v1/login/mfa", json!({ "mfa_token": token, "code": next })).await;
    assert_eq!(opened.status(), 200);
    let opened: Value = opened.json().await.unwrap();
    let claims = claims(opened["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["acr"], "aal2");
    let passed = app.post("/v1/login/mfa", json!({ "mfa_token": token, "code": next })).await;
    assert_eq!(passed.status(), 401, "the mfa_token died with its success");
    let fresh: Value = app.login("otp@example.com", PASSWORD).await.json().await.unwrap();
    let reused = app.post("/v1/login/mfa", json!({ "mfa_token": fresh["mfa_token"], "code": next })).await;
    assert_eq!(reused.status(), 401, "a code is accepted once per user");

    // A recovery code stands in for the app, once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let typed = recovery[0].to_uppercase();
    let login: Value = app.login("otp@example.com", PASSWORD).await.json().await.unwrap();
    let by_recovery =
        app.post("/v1/login/mfa", json!({ "mfa_token": login["mfa_token"], "recovery_code": typed })).await;
    assert_eq!(by_recovery.status(), 200);
    let by_recovery: Value = by_recovery.json().await.unwrap();
    assert_eq!(claims_of(&by_recovery)["amr"], json!(["pwd", "mfa"]));
    assert_eq!(claims_of(&by_recovery)["acr"], "aal2");
    let login: Value = app.login("otp@example.com", PASSWORD).await.json().await.unwrap();
    let spent =
        app.post("/v1/login/mfa", json!({ "mfa_token": login["mfa_token"], "recovery_code": recovery[0] })).await;
    assert_eq!(spent.status(), 401);

    // Five wrong codes end an mfa_token.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let login: Value = app.login("otp@example.com", PASSWORD).await.json().await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wrong = app.post("/v1/login/mfa", json!({ "mfa_token": login["mfa_token"], "code": "000000" })).await;
        assert_eq!(wrong.status(), 401);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dead =
        app.post("/v1/login/mfa", json!({ "mfa_token": login["mfa_token"], "recovery_code": recovery[1] })).await;
    assert_eq!(dead.status(), 401);
    assert_eq!(dead.json::<Value>().await.unwrap()["detail"], "the mfa_token is invalid or has expired");
    let forged = app.post("/v1/login/mfa", json!({ "mfa_token": "not-a-token", "code": "123456" })).await;
    assert_eq!(forged.status(), 401);

    // Regeneration and disabling need aal2: the aal2 session does both.
    let aal2 = opened["access_token"].as_str().unwrap();
    let regenerated = app.client.post(app.url("/v1/mfa/recovery-codes")).bearer_auth(aal2).send().await.unwrap();
    assert_eq!(regenerated.status(), 200);
    let status: Value =
        app.client.get(app.url("/v1/mfa")).bearer_auth(aal2).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["recovery_codes_remaining"], 10);
    let old_session = app.client.delete(app.url("/v1/mfa/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(old_session.status(), 401, "the enrolling session was aal1");
    let challenge = old_session.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"") && challenge.contains("acr_values=\"aal2\"")
    );
    let disabled = app.client.delete(app.url("/v1/mfa/totp")).bearer_auth(aal2).send().await.unwrap();
    assert_eq!(disabled.status(), 204);
    let plain = app.login("otp@example.com", PASSWORD).await.json::<Value>().await.unwrap();
    assert!(plain["access_token"].is_string(), "no second factor any more");
    assert_eq!(claims_of(&plain)["acr"], "aal1");

    // The secret is nowhere in the data directory (Raft log, snapshots, SQLite store) in the clear.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap();
    let dir = app.stop().await;
    assert!(!files_contain(dir.path(), raw.as_ref()), "the TOTP secret is stored in the clear");
}

/// Whether any file under `dir` contains `needle`.
fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            files_contain(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

fn claims_of(tokens: &Value) -> Value {
    claims(tokens["access_token"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_session_must_re_authenticate_for_a_password_change_rfc_9470() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = mfa_settings(dir.path());
    settings.mfa.step_up_max_age_secs = 1;
    let app = TestApp::spawn_with(dir, settings).await;
    let session = app.session("stale@example.com").await;
    let access = session["access_token"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let change = json!({ "current_password": PASSWORD, "new_password": "a whole new passphrase 42" });
    let refused = post_bearer(&app, "/v1/password", access, change.clone()).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer error=\"insufficient_user_authentication\", error_description=\"this operation needs a recent login\", max_age=1"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        (problem["error"].as_str(), problem["max_age"].as_u64()),
        (Some("insufficient_user_authentication"), Some(1))
    );
    assert!(problem.get("acr_values").is_none());
    let others = app.client.post(app.url("/v1/logout?scope=others")).bearer_auth(access).send().await.unwrap();
    assert_eq!(others.status(), 401, "logging out other sessions is sensitive too");

    let wrong = post_bearer(&app, "/v1/reauthenticate", access, json!({ "password": "not the password" })).await;
    assert_eq!(wrong.status(), 401);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let no_app = post_bearer(&app, "/v1/reauthenticate", access, json!({ "code": "123456" })).await;
    assert_eq!(no_app.status(), 400);
    let reauthenticated = post_bearer(&app, "/v1/reauthenticate", access, json!({ "password": PASSWORD })).await;
    assert_eq!(reauthenticated.status(), 200);
    let renewed: Value = reauthenticated.json().await.unwrap();
    assert_eq!(renewed["session_id"], session["session_id"], "the same session");
    assert_eq!(renewed["refresh_token"], session["refresh_token"], "the refresh lineage is unchanged");
    let refreshed: Value = app.refresh(session["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims_of(&refreshed)["auth_time"], claims_of(&renewed)["auth_time"], "a refresh keeps it");
    assert!(claims_of(&renewed)["auth_time"].as_u64() > claims_of(&session)["auth_time"].as_u64());
    let changed = post_bearer(&app, "/v1/password", refreshed["access_token"].as_str().unwrap(), change).await;
    assert_eq!(changed.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_account_needs_aal2_for_a_password_change_and_a_code_steps_up() {
    let dir = tempfile::tempdir().unwrap();
    let settings = mfa_settings(dir.path());
    let app = TestApp::spawn_with(dir, settings).await;
    let session = app.session("weak@example.com").await;
    let access = session["access_token"].as_str().unwrap();
    let (enrolment, _) = enrol(&app, access).await;
    let secret = enrolment["secret"].as_str().unwrap();

    let change = json!({ "current_password": PASSWORD, "new_password": "a whole new passphrase 42" });
    let refused = post_bearer(&app, "/v1/password", access, change.clone()).await;
    assert_eq!(refused.status(), 401);
    let header = refused.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(header.ends_with("max_age=300, acr_values=\"aal2\""), "{header}");
    assert_eq!(refused.json::<Value>().await.unwrap()["acr_values"], "aal2");
    let stepped = post_bearer(&app, "/v1/reauthenticate", access, json!({ "code": oathtool(secret, 1) })).await;
    assert_eq!(stepped.status(), 200);
    let stepped: Value = stepped.json().await.unwrap();
    assert_eq!(claims_of(&stepped)["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims_of(&stepped)["acr"], "aal2");
    assert_eq!(
        post_bearer(&app, "/v1/password", stepped["access_token"].as_str().unwrap(), change).await.status(),
        200
    );
    app.stop().await;
}

/// Twenty logins of one account hold twenty `mfa_token`s; the same valid code sent with each,
/// all at once, through three nodes, opens exactly one session. The same for a recovery code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_or_recovery_code_sent_twenty_times_at_once_over_three_nodes_opens_one_session() {
    let nodes = spawn_cluster(3).await;
    let app = &nodes[0];
    let access = app.session("race@example.com").await["access_token"].as_str().unwrap().to_string();
    let (enrolment, recovery) = enrol(app, &access).await;
    let secret = enrolment["secret"].as_str().unwrap().to_string();

    for (round, proof) in [("code", json!(oathtool(&secret, 1))), ("recovery_code", json!(recovery[0]))] {
        let mut tokens = Vec::new();
        for i in 0..20 {
            let login = loop {
                let answer = nodes[i % 3].login("race@example.com", PASSWORD).await;
                if answer.status() == 200 {
                    break answer.json::<Value>().await.unwrap();
                }
                assert_eq!(answer.status(), 429, "{round}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            tokens.push(login["mfa_token"].as_str().unwrap().to_string());
        }
        let sends = tokens.iter().enumerate().map(|(i, token)| {
            let node = &nodes[i % 3];
            let body = json!({ "mfa_token": token, round: proof });
            async move { node.post("/v1/login/mfa", body).await.status().as_u16() }
        });
        let statuses = futures::future::join_all(sends).await;
        let successes = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(successes, 1, "{round}: {statuses:?}");
        assert!(statuses.iter().all(|s| [200, 401, 429].contains(s)), "{round}: {statuses:?}");
        println!("{round}: 20 concurrent over 3 nodes: {statuses:?}");
    }
    for node in nodes {
        node.stop().await;
    }
}

/// Wrong codes count against the client network's failure window like wrong passwords, so
/// guessing codes across many accounts from one network is throttled as credential stuffing is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_count_against_the_client_network() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = mfa_settings(dir.path());
    settings.throttle.login_failures = 3;
    let app = TestApp::spawn_with(dir, settings).await;
    let access = app.session("network@example.com").await["access_token"].as_str().unwrap().to_string();
    enrol(&app, &access).await;
    let login: Value = app.login("network@example.com", PASSWORD).await.json().await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wrong = app.post("/v1/login/mfa", json!({ "mfa_token": login["mfa_token"], "code": "000000" })).await;
        assert_eq!(wrong.status(), 401);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.login("network@example.com", PASSWORD).await.status(), 429, "the network is throttled");
    app.stop().await;
}
