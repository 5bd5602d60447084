//! Any node serves any request: followers forward domain commands to the leader over the
//! authenticated peer listener; reads are served from each node's replica.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_every_request_and_agrees_on_the_outcome() {
    let apps = spawn_cluster(3).await;
    let leader = apps[0].node().cluster().leadership().leader.unwrap().0;
    let follower = |i: usize| &apps[(leader as usize + i) % 3];
    assert_ne!(follower(0).node().cluster().id(), leader);

    // Register and log in through followers: Argon2id runs there, the writes on the leader.
    let registered = follower(0).register("forward@example.com", PASSWORD).await;
    assert_eq!(registered.status(), 201);
    let login = follower(1).login("forward@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let tokens: Value = login.json().await.unwrap();

    // Every node verifies the new token at once (catching up if needed) and serves the same JWKS.
    let mut jwks = Vec::new();
    for app in &apps {
        assert_eq!(app.verify(tokens["access_token"].as_str().unwrap()).await.status(), 200);
        jwks.push(
            app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json::<Value>().await.unwrap(),
        );
    }
    assert!(jwks.iter().all(|j| *j == jwks[0]), "identical JWKS on every node");

    // Concurrent refreshes of one token spread over all nodes: one successor.
    let token = tokens["refresh_token"].as_str().unwrap().to_string();
    let refreshes = (0..9).map(|i| apps[i % 3].refresh(&token));
    let mut successors = Vec::new();
    for response in futures::future::join_all(refreshes).await {
        assert_eq!(response.status(), 200);
        successors.push(response.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_string());
    }
    assert!(successors.iter().all(|s| *s == successors[0]), "{successors:?}");

    // Rotate on one node, replay the parent's parent on another: revoked everywhere.
    let g3: Value = follower(0).refresh(&successors[0]).await.json().await.unwrap();
    assert_eq!(follower(1).refresh(&token).await.status(), 401, "replay through another node");
    for app in &apps {
        let started = Instant::now();
        while app.verify(g3["access_token"].as_str().unwrap()).await.status() != 401 {
            assert!(started.elapsed() < Duration::from_secs(5), "revocation never reached node");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_get_503_with_retry_after() {
    let mut apps = spawn_cluster(3).await;
    apps[0].session("quorum@example.com").await;
    let survivor = apps.remove(2);
    for app in apps {
        app.stop().await;
    }
    let started = Instant::now();
    let response = loop {
        let response = survivor.login("quorum@example.com", PASSWORD).await;
        if response.status() == 503 {
            break response;
        }
        assert_ne!(response.status(), 200, "a node without quorum must not open a session");
        assert!(started.elapsed() < Duration::from_secs(15), "never answered 503");
    };
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
    survivor.stop().await;
}

/// Every string in a JSON document, keys included.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.iter().flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v))).collect(),
        Value::Null | Value::Bool(_) | Value::Number(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_leader_is_a_503_whose_body_names_nothing_internal() {
    let mut apps = spawn_cluster(3).await;
    let session = apps[0].session("hygiene@example.com").await;
    let leader = apps[0].node().cluster().leadership().leader.unwrap().0;
    // Whatever a leaked peer, openraft or OS error would carry: addresses and error words.
    let mut internal: Vec<String> =
        apps.iter().flat_map(|a| [a.node().peer_addr().to_string(), a.node().public_addr().to_string()]).collect();
    internal.extend(
        ["127.0.0.1", "os error", "error sending request", "connect", "refused", "raft", "peer"].map(String::from),
    );

    // Stop the leader and one follower: the survivor still believes in the old leader, which
    // it cannot reach, and then knows no leader at all.
    let survivor = apps.remove(apps.iter().position(|a| a.node().cluster().id() != leader).unwrap());
    for app in apps {
        app.stop().await;
    }
    let refresh_token = session["refresh_token"].as_str().unwrap();
    let access_token = session["access_token"].as_str().unwrap();
    let mut unavailable = 0;
    let started = Instant::now();
    while unavailable < 12 {
        assert!(started.elapsed() < Duration::from_secs(20), "only {unavailable} answers were 503");
        let writes = [
            survivor.login("hygiene@example.com", PASSWORD).await,
            survivor.refresh(refresh_token).await,
            survivor.register("someone-new@example.com", PASSWORD).await,
        ];
        // A read is served from the replica until it is `max_staleness` old, then fails closed.
        let read = survivor.verify(access_token).await;
        for (response, write) in writes.into_iter().map(|w| (w, true)).chain([(read, false)]) {
            assert!(!(write && response.status().is_success()), "a node without a leader must not write");
            if response.status() != 503 {
                continue;
            }
            unavailable += 1;
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable");
            for text in strings(&body) {
                let lower = text.to_lowercase();
                for needle in &internal {
                    assert!(!lower.contains(needle), "{needle:?} in a client-facing 503: {body}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    survivor.stop().await;
}
