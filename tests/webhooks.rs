//! Webhooks, black-box: a real node delivering to a Python receiver that checks every request
//! with the `standardwebhooks` package and refuses the first attempts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::receiver::{Receiver, SECRET};
use common::*;
use serde_json::{Value, json};
use tessera::config::{Secret, WebhookSettings};

const ADMIN: &str = "webhook-test-admin-token-0123456789abcdef";

fn endpoint(name: &str, url: String, events: &[&str]) -> WebhookSettings {
    WebhookSettings {
        name: name.into(),
        url,
        secret: Secret::new(SECRET.into()),
        events: events.iter().map(|e| e.to_string()).collect(),
    }
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = app.client.get(app.url(path)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_event_is_delivered_signed_in_order_once_accepted_and_a_dead_endpoint_is_disabled() {
    // Arrange: one receiver refusing each event twice, three endpoints on it and one nowhere.
    let receiver = Receiver::start(2);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.admin_token = Some(Secret::new(ADMIN.into()));
    settings.webhook_delivery.retry_ms = vec![100, 100, 100];
    let dead = format!("http://{}/nobody-listens", free_addr());
    settings.webhooks = vec![
        endpoint("all", receiver.url("/all"), &["*"]),
        endpoint("failures", receiver.url("/failures"), &["login.failed", "account.locked"]),
        endpoint("dead", dead, &["*"]),
    ];
    let app = TestApp::spawn_with(dir, settings).await;

    // Act: a registration, a login, two failed logins.
    assert_eq!(app.register("hooked@example.com", PASSWORD).await.status(), 201);
    assert_eq!(app.login("hooked@example.com", PASSWORD).await.status(), 200);
    assert_eq!(app.login("hooked@example.com", "wrong password").await.status(), 401);
    assert_eq!(app.login("stranger@example.com", "wrong password").await.status(), 401);

    // Assert: each event once accepted, in order, every request verified by the package.
    let trail = admin_get(&app, "/v1/admin/audit?limit=100").await;
    let trail = trail["events"].as_array().unwrap().clone();
    // The cluster's first signing key (`key.activated`), then the four actions' five events.
    // An endpoint's cursor starts at the head when the leader first sees the endpoint, which
    // may be just before or just after the key's event: leave that one out.
    assert_eq!(trail.len(), 6, "{trail:#?}");
    assert_eq!(trail[0]["action"], "key.activated");
    let events = trail[1..].to_vec();
    let expected: Vec<String> = events.iter().map(|e| format!("evt_{}", e["seq"])).collect();
    receiver.wait_all_accepted("/all", &expected.iter().cloned().collect(), Duration::from_secs(20)).await;
    let all: Vec<Value> =
        receiver.accepted("/all").into_iter().filter(|r| r["body"]["type"] != "key.activated").collect();
    let ids: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected, "in trail order, each once");
    for (delivery, event) in all.iter().zip(&events) {
        assert_eq!(delivery["attempt"], 3, "accepted at the third attempt");
        assert_eq!(delivery["body"]["type"], event["action"]);
        assert_eq!(delivery["body"]["data"]["seq"], event["seq"]);
        assert_eq!(delivery["body"]["data"]["resource_id"], event["resource_id"]);
        assert_eq!(delivery["body"]["timestamp"], event["at"]);
        let body = delivery["body"].to_string();
        assert!(!body.contains("hooked@") && !body.contains("127.0.0.1") && !body.contains("\"ip\""), "{body}");
    }
    assert!(receiver.requests().iter().all(|r| r["verified"] == true), "{:#?}", receiver.requests());
    let failures = receiver.wait_accepted("/failures", 2, Duration::from_secs(20)).await;
    let types: BTreeSet<&str> = failures.iter().map(|r| r["body"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from(["login.failed"]));
    let reasons: Vec<&str> =
        failures.iter().map(|r| r["body"]["data"]["changes"]["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["bad_password", "unknown_account"]);

    // The delivery log and the endpoint list say the same; the dead endpoint ends disabled.
    let log = admin_get(&app, "/v1/admin/webhooks/all/deliveries?limit=3").await;
    let outcomes: Vec<&str> =
        log["deliveries"].as_array().unwrap().iter().map(|d| d["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "failed", "delivered"]);
    assert_eq!(log["deliveries"][0]["status"], 503);
    assert_eq!(log["deliveries"][1]["status"], 429);
    assert!(log["next"].is_string());
    let head = trail.len() as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        // The receiver logs an acceptance before the dispatcher commits the cursor past it.
        let listed = admin_get(&app, "/v1/admin/webhooks").await;
        if listed["endpoints"][2]["disabled"] == true && listed["endpoints"][0]["delivered_seq"] == head {
            break listed;
        }
        assert!(std::time::Instant::now() < deadline, "not disabled or not caught up: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed["endpoints"][0]["disabled"], false);
    let start = listed["endpoints"][2]["delivered_seq"].as_u64().unwrap();
    assert!(start <= 1, "it never got the first event it was due (its cursor began at 0 or 1): {listed}");
    let dead_log = admin_get(&app, "/v1/admin/webhooks/dead/deliveries").await;
    let dead_outcomes: Vec<&str> =
        dead_log["deliveries"].as_array().unwrap().iter().map(|d| d["outcome"].as_str().unwrap()).collect();
    assert_eq!(dead_outcomes, ["failed", "failed", "failed", "disabled"]);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tessera_webhook_disabled{endpoint=\"dead\"} 1"), "{metrics}");
    let cluster: Value = app.client.get(app.url("/v1/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        cluster["webhooks"][2],
        json!({ "name": "dead", "delivered_seq": start, "failures": 4, "disabled": true })
    );

    // Enabled again, it is tried at once (and fails again: nothing listens).
    let enabled = app.client.post(app.url("/v1/admin/webhooks/dead/enable")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(enabled.json::<Value>().await.unwrap(), json!({ "was_disabled": true }));
    let unknown = app.client.post(app.url("/v1/admin/webhooks/nope/enable")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(app.client.get(app.url("/v1/admin/webhooks")).send().await.unwrap().status(), 401);
    app.stop().await;
}
