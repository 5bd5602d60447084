//! Abuse resistance as a black box: the guess cap under concurrency, progressive delays and
//! lockout, indistinguishable unknown accounts, per-network limits, password policy, session
//! cap, administrator unlock.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tessera::Settings;

fn settings_with(dir: &tempfile::TempDir, tune: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = test_settings(dir.path().join("data"));
    tune(&mut settings);
    settings
}

async fn spawn_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_with(&dir, tune);
    TestApp::spawn_with(dir, settings).await
}

async fn verifications(app: &TestApp) -> u64 {
    let cluster: Value = app.client.get(app.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
    cluster["password_verifications"].as_u64().unwrap()
}

/// Status, `Retry-After` and body of a response: everything but `Date` and `X-Request-Id`.
async fn observable(response: reqwest::Response) -> (u16, BTreeMap<String, String>, String) {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
        .collect();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn two_hundred_concurrent_guesses_evaluate_at_most_the_limit_then_lock() {
    let app = spawn_with(|s| s.lockout.lock_secs = 3).await;
    assert_eq!(app.register("victim@example.com", PASSWORD).await.status(), 201);
    let before = verifications(&app).await;

    let passwords: Vec<String> = (0..200).map(|i| format!("wrong guess number {i}")).collect();
    let guesses = passwords.iter().map(|p| app.login("victim@example.com", p));
    let statuses: Vec<u16> = futures::future::join_all(guesses).await.iter().map(|r| r.status().as_u16()).collect();

    let evaluated = verifications(&app).await - before;
    assert!(evaluated <= 10, "{evaluated} password verifications for 200 concurrent guesses");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count() as u64, evaluated, "one 401 per evaluated guess");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");

    // Locked: even the right password is not checked.
    let locked = app.login("victim@example.com", PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(verifications(&app).await - before, evaluated);

    // After the lock runs out, the right password works.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(app.login("victim@example.com", PASSWORD).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn each_failure_earns_a_longer_wait_and_the_threshold_locks() {
    let app = spawn_with(|s| {
        s.lockout.base_delay_ms = 100;
        s.lockout.max_delay_ms = 1_600;
        s.lockout.threshold = 6;
        s.lockout.lock_secs = 2;
    })
    .await;
    assert_eq!(app.register("slow@example.com", PASSWORD).await.status(), 201);
    // A probe with the right password inside a delay must wait. On a loaded machine a probe can
    // arrive after the delay: then it logs in (and resets the count), which is right, and the
    // schedule is walked again from the first failure.
    'schedule: for _attempt in 0..3 {
        for failure in 1..=5u32 {
            // The failure is recorded after this instant, so a request answered within `delay`
            // of it was decided within the delay.
            let sent = std::time::Instant::now();
            assert_eq!(app.login("slow@example.com", "wrong password!").await.status(), 401, "failure {failure}");
            let delay = Duration::from_millis(100 * 2u64.pow(failure - 1));
            for (probe, wait) in [("right after", Duration::ZERO), ("halfway through", delay / 2)] {
                tokio::time::sleep(wait).await;
                let answer = app.login("slow@example.com", PASSWORD).await;
                if answer.status() == 429 {
                    assert!(answer.headers().contains_key("retry-after"));
                    continue;
                }
                assert_eq!(answer.status(), 200);
                assert!(sent.elapsed() >= delay, "{probe} failure {failure}: a login within {delay:?}");
                continue 'schedule;
            }
            tokio::time::sleep(delay / 2 + Duration::from_millis(60)).await;
        }
        break;
    }
    assert_eq!(app.login("slow@example.com", "wrong password!").await.status(), 401, "failure 6");
    let locked = app.login("slow@example.com", PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert_eq!(locked.headers()["retry-after"], "2");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(app.login("slow@example.com", PASSWORD).await.status(), 200, "after the lock");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_email_gets_byte_identical_answers() {
    // No delays, so a fast storm runs into the lock without waiting.
    let app = spawn_with(|s| {
        s.lockout.base_delay_ms = 0;
        s.lockout.max_delay_ms = 0;
    })
    .await;
    assert_eq!(app.register("exists@example.com", PASSWORD).await.status(), 201);
    let mut storms = Vec::new();
    for email in ["exists@example.com", "missing@example.com"] {
        let mut answers = Vec::new();
        for i in 0..16 {
            answers.push(observable(app.login(email, &format!("not the password {i}")).await).await);
        }
        // Locked now: the right password gets the same answer as a wrong one.
        answers.push(observable(app.login(email, PASSWORD).await).await);
        storms.push(answers);
    }
    assert_eq!(storms[0], storms[1], "status, headers (but Date and X-Request-Id) and body, in order");
    assert_eq!(storms[0].iter().filter(|(s, _, _)| *s == 401).count(), 10);
    assert_eq!(storms[0].last().unwrap().1["retry-after"], "3600");

    // Concurrent storms against both: the same kinds of answer, and never more than ten
    // passwords checked (how many exactly depends on how requests and reports interleave).
    let mut tallies = Vec::new();
    for email in ["exists2@example.com", "missing2@example.com"] {
        if email.starts_with("exists") {
            assert_eq!(app.register(email, PASSWORD).await.status(), 201);
        }
        let passwords: Vec<String> = (0..60).map(|i| format!("not the password {i}")).collect();
        let responses = futures::future::join_all(passwords.iter().map(|p| app.login(email, p))).await;
        let mut tally: BTreeMap<u16, usize> = BTreeMap::new();
        for response in responses {
            *tally.entry(response.status().as_u16()).or_default() += 1;
        }
        tallies.push(tally);
    }
    assert_eq!(tallies[0].keys().collect::<Vec<_>>(), tallies[1].keys().collect::<Vec<_>>());
    assert!(tallies.iter().all(|t| t.get(&401).copied().unwrap_or(0) <= 10), "{tallies:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_lock_survives_kill_9_and_restart() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spawn = || {
        ChildNode::spawn(data.clone(), |c| {
            c.arg("serve")
                .env("TESSERA_ARGON2__MEMORY_KIB", "256")
                .env("TESSERA_ARGON2__ITERATIONS", "1")
                .env("TESSERA_LOCKOUT__THRESHOLD", "3")
                .env("TESSERA_LOCKOUT__BASE_DELAY_MS", "0")
                .env("TESSERA_LOCKOUT__MAX_DELAY_MS", "0");
        })
    };
    let mut node = spawn();
    node.wait_ready(&client).await;
    let post = |url: String, body: Value| client.post(url).json(&body).send();
    let wrong = json!({ "email": "locked@example.com", "password": "a wrong password" });
    let right = json!({ "email": "locked@example.com", "password": PASSWORD });
    assert_eq!(post(node.url("/v1/users"), right.clone()).await.unwrap().status(), 201);
    for _ in 0..3 {
        assert_eq!(post(node.url("/v1/login"), wrong.clone()).await.unwrap().status(), 401);
    }
    assert_eq!(post(node.url("/v1/login"), right.clone()).await.unwrap().status(), 429);

    node.kill9();
    let mut node = spawn();
    node.wait_ready(&client).await;
    let after = post(node.url("/v1/login"), right).await.unwrap();
    assert_eq!(after.status(), 429, "the lock is replicated state");
    assert!(after.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 3_000);
}

#[tokio::test]
async fn forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_with(|s| s.throttle.login_failures = 3).await;
    for i in 0..3 {
        let response = app
            .client
            .post(app.url("/v1/login"))
            .header("x-forwarded-for", format!("198.51.{i}.7"))
            .json(&json!({ "email": format!("stuffing{i}@example.com"), "password": "password guess" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let throttled = app
        .client
        .post(app.url("/v1/login"))
        .header("x-forwarded-for", "203.0.113.99")
        .json(&json!({ "email": "fresh@example.com", "password": "password guess" }))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429, "all four came from 127.0.0.0/24, whatever they claimed");
    app.stop().await;

    // Behind a trusted proxy the header is believed: other networks are not throttled.
    let app = spawn_with(|s| {
        s.throttle.login_failures = 3;
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for i in 0..6 {
        let response = app
            .client
            .post(app.url("/v1/login"))
            .header("x-forwarded-for", format!("198.51.{i}.7"))
            .json(&json!({ "email": format!("spread{i}@example.com"), "password": "password guess" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "client network {i} has its own budget");
    }
    app.stop().await;
}

#[tokio::test]
async fn registrations_per_network_are_limited() {
    let app = spawn_with(|s| s.throttle.registrations = 3).await;
    let emails: Vec<String> = (0..5).map(|i| format!("r{i}@example.com")).collect();
    let statuses: Vec<u16> = futures::future::join_all(emails.iter().map(|e| app.register(e, PASSWORD)))
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_password_policy_table() {
    let app = spawn_with(|_| {}).await;
    let cases: Vec<(&str, String, u16)> = vec![
        ("len7", "tR7#kq2".into(), 400),
        ("len8 weak", "12345678".into(), 400),
        ("len10 random", "tR7#kq2!x9".into(), 201),
        ("len64", "sixty-four characters of a memorable and unusual passphrase!!!!".into(), 201),
        ("len128", "a long sentence about walruses, teapots and the moon ".repeat(3)[..128].to_string(), 201),
        ("len256", "an unguessable passphrase ".repeat(10)[..256].to_string(), 201),
        ("len257", "an unguessable passphrase ".repeat(10)[..256].to_string() + "!", 400),
        ("emoji", "🦀🐙🦑🐳🦈🐬🐟🐠🦐🦞🦂".into(), 201),
        ("common", "password123456789".into(), 400),
        ("keyboard", "qwertyuiopasdf".into(), 400),
        ("email-derived", "jane.doe2024".into(), 400),
        ("2 KB", "x".repeat(2_048), 400),
    ];
    let before = verifications(&app).await;
    for (name, password, status) in cases {
        let response = app.register(&format!("jane.doe+{}@example.com", name.replace(' ', "-")), &password).await;
        assert_eq!(response.status(), status, "{name}");
        if status == 400 {
            let body: Value = response.json().await.unwrap();
            assert!(body["detail"].as_str().unwrap().len() > 10, "{name}: the reason is named: {body}");
        }
    }
    assert_eq!(verifications(&app).await, before, "registration never verifies");
    // A 2 KB password at login is refused before any hashing.
    assert_eq!(app.login("jane.doe+len64@example.com", &"x".repeat(2_048)).await.status(), 400);
    assert_eq!(verifications(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_logins_leave_at_most_five_usable_sessions() {
    // Permits in flight count toward the guess threshold (10): raise it so that all twenty
    // concurrent logins are checked and the session cap is what is tested.
    let app = spawn_with(|s| s.lockout.threshold = 25).await;
    assert_eq!(app.register("capped@example.com", PASSWORD).await.status(), 201);
    let logins = futures::future::join_all((0..20).map(|_| app.login("capped@example.com", PASSWORD))).await;
    let mut sessions = Vec::new();
    for response in logins {
        assert_eq!(response.status(), 200);
        sessions.push(response.json::<Value>().await.unwrap());
    }
    let mut usable = 0;
    for session in &sessions {
        if app.verify(session["access_token"].as_str().unwrap()).await.status() == 200 {
            usable += 1;
        }
    }
    assert_eq!(usable, 5, "exactly the cap");
    // The newest login is always among the survivors (the oldest are evicted).
    let newest = app.login("capped@example.com", PASSWORD).await.json::<Value>().await.unwrap();
    assert_eq!(app.verify(newest["access_token"].as_str().unwrap()).await.status(), 200);
    app.stop().await;

    let app = spawn_with(|s| {
        s.sessions.max_per_user = 2;
        s.sessions.over_cap = tessera::config::OverCap::Deny;
    })
    .await;
    assert_eq!(app.register("denied@example.com", PASSWORD).await.status(), 201);
    assert_eq!(app.login("denied@example.com", PASSWORD).await.status(), 200);
    assert_eq!(app.login("denied@example.com", PASSWORD).await.status(), 200);
    let third = app.login("denied@example.com", PASSWORD).await;
    assert_eq!(third.status(), 409);
    assert_eq!(third.json::<Value>().await.unwrap()["error"], "session_limit");
    // A policy denial is not a failed attempt: no delay follows it.
    assert_eq!(app.login("denied@example.com", PASSWORD).await.status(), 409);
    app.stop().await;
}

#[tokio::test]
async fn an_administrator_unlocks_a_permanently_locked_account() {
    let admin = "an-admin-token-for-tests-0123456789abcdef";
    let app = spawn_with(|s| {
        s.lockout.threshold = 2;
        s.lockout.base_delay_ms = 0;
        s.lockout.max_delay_ms = 0;
        s.lockout.permanent_after_locks = 1;
        s.admin_token = Some(tessera::config::Secret::new(admin.into()));
    })
    .await;
    let user: Value = app.register("forever@example.com", PASSWORD).await.json().await.unwrap();
    let user_id = user["user_id"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(app.login("forever@example.com", "wrong password!").await.status(), 401);
    }
    assert_eq!(app.login("forever@example.com", PASSWORD).await.status(), 429);

    let unlock = |token: &str| {
        app.client.post(app.url(&format!("/v1/admin/users/{user_id}/unlock"))).bearer_auth(token.to_string()).send()
    };
    assert_eq!(unlock("not the admin token").await.unwrap().status(), 401);
    assert_eq!(
        app.client.post(app.url(&format!("/v1/admin/users/{user_id}/unlock"))).send().await.unwrap().status(),
        401
    );
    let unlocked = unlock(admin).await.unwrap();
    assert_eq!(unlocked.status(), 200);
    assert_eq!(unlocked.json::<Value>().await.unwrap()["was_locked"], true);
    assert_eq!(app.login("forever@example.com", PASSWORD).await.status(), 200);
    let missing = app
        .client
        .post(app.url("/v1/admin/users/00000000-0000-4000-8000-000000000000/unlock"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

/// A measurement, not an assertion: login latency for an unknown email, a wrong password and
/// a locked account, interleaved. Run with
/// `cargo test --release --test abuse login_timing -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for BENCHMARKS.md, not a pass/fail test"]
async fn login_timing_does_not_reveal_accounts() {
    let samples: usize = std::env::var("TIMING_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let app = spawn_with(|s| {
        // Production hashing parameters; no delays, so every case evaluates a hash.
        s.argon2 = tessera::config::Argon2Settings::default();
        s.lockout.base_delay_ms = 0;
        s.lockout.max_delay_ms = 0;
        s.lockout.threshold = 100;
    })
    .await;
    assert_eq!(app.register("timing@example.com", PASSWORD).await.status(), 201);
    assert_eq!(app.register("timing-locked@example.com", PASSWORD).await.status(), 201);
    // Lock one account for good measure (a locked account answers 429 without hashing; its
    // timing is compared with the throttled answers of the other two).
    let mut cases: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for i in 0..samples {
        for (case, email, password) in [
            ("unknown email", format!("nobody{i}@example.com"), "a wrong password"),
            ("wrong password", "timing@example.com".to_string(), "a wrong password"),
        ] {
            let started = Instant::now();
            let response = app.login(&email, password).await;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(response.status(), 401, "{case}");
            cases.entry(case).or_default().push(elapsed);
        }
        if i % 50 == 0 {
            // Keep the known account below its threshold.
            assert_eq!(app.login("timing@example.com", PASSWORD).await.status(), 200);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let mut unknown = cases.remove("unknown email").unwrap();
    let mut wrong = cases.remove("wrong password").unwrap();
    let ks = kolmogorov_smirnov(&unknown, &wrong);
    println!("samples per case: {samples}");
    println!("median ms: unknown email {:.3}, wrong password {:.3}", median(&mut unknown), median(&mut wrong));
    println!("  two-sample Kolmogorov-Smirnov D = {:.4}, p ≈ {:.4}", ks.0, ks.1);

    // Locked: a real account and an unknown address, both past the threshold.
    for email in ["timing-locked@example.com", "nobody-locked@example.com"] {
        for _ in 0..100 {
            assert_eq!(app.login(email, "a wrong password").await.status(), 401);
        }
    }
    let mut locked: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for _ in 0..samples {
        for (case, email) in
            [("locked account", "timing-locked@example.com"), ("locked unknown", "nobody-locked@example.com")]
        {
            let started = Instant::now();
            let response = app.login(email, PASSWORD).await;
            locked.entry(case).or_default().push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(response.status(), 429, "{case}");
        }
    }
    let mut account = locked.remove("locked account").unwrap();
    let mut nobody = locked.remove("locked unknown").unwrap();
    let ks = kolmogorov_smirnov(&account, &nobody);
    println!(
        "median ms: locked account {:.3}, locked unknown address {:.3}",
        median(&mut account),
        median(&mut nobody)
    );
    println!("  two-sample Kolmogorov-Smirnov D = {:.4}, p ≈ {:.4}", ks.0, ks.1);
    app.stop().await;
}

/// Two-sample KS statistic and its asymptotic p-value.
fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    b.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            i += 1;
        } else {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    let n = (a.len() * b.len()) as f64 / (a.len() + b.len()) as f64;
    let lambda = (n.sqrt() + 0.12 + 0.11 / n.sqrt()) * d;
    let p: f64 =
        (1..100).map(|k| 2.0 * (-1f64).powi(k - 1) * (-2.0 * (k as f64).powi(2) * lambda * lambda).exp()).sum();
    (d, p.clamp(0.0, 1.0))
}
