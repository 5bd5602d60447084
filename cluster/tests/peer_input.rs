//! The peer listener refuses unauthenticated and malformed requests and keeps running.

mod support;

use std::time::Duration;

use support::*;
use tessera_cluster::{AUTH_HEADER, PeerAuth, TxnOutcome, paths};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_listener_rejects_bad_requests_and_keeps_serving() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir.path().join("store")).await;
    let node = start_node(1, &dir.path().join("data"), store, None, fast_tuning(), reserve_port()).await;
    node.node.bootstrap_single().await.unwrap();
    eventually(Duration::from_secs(5), "leadership", || node.node.status().role == "leader").await;
    let term = node.node.status().term;

    let http = reqwest::Client::new();
    let url = format!("http://{}{}", node.peer_addr, paths::VOTE);
    // A genuine vote request from a would-be candidate with a much higher term.
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(term + 10, 2), None);
    let body = tessera_cluster::wire::encode(&vote).unwrap();
    let good = PeerAuth::new(SECRET);
    let wrong = PeerAuth::new(b"not the cluster secret");

    let cases: Vec<(&str, Option<String>, Vec<u8>, u16)> = vec![
        ("no MAC", None, body.clone(), 401),
        ("MAC from the wrong secret", Some(wrong.sign(paths::VOTE, &body)), body.clone(), 401),
        ("MAC for another path", Some(good.sign(paths::APPEND, &body)), body.clone(), 401),
        ("MAC that is not hex", Some("xyz".into()), body.clone(), 401),
        ("truncated body", Some(good.sign(paths::VOTE, &body[..body.len() / 2])), body[..body.len() / 2].to_vec(), 400),
        (
            "garbage body",
            Some(good.sign(paths::VOTE, b"\xff\xff\xff\xff garbage")),
            b"\xff\xff\xff\xff garbage".to_vec(),
            400,
        ),
        ("empty body", Some(good.sign(paths::VOTE, b"")), Vec::new(), 400),
        ("replayed a minute later", Some(good.sign_at(paths::VOTE, &body, unix_ms() - 60_000)), body.clone(), 401),
        ("signed a minute ahead", Some(good.sign_at(paths::VOTE, &body, unix_ms() + 60_000)), body.clone(), 401),
    ];
    for (name, mac, body, status) in cases {
        let mut request = http.post(&url).body(body);
        if let Some(mac) = mac {
            request = request.header(AUTH_HEADER, mac);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
    }

    // None of it reached Raft: same term, still the leader, still committing.
    let status = node.node.status();
    assert_eq!((status.term, status.role), (term, "leader"));
    assert!(matches!(node.put("still/alive", 1).await, Ok(TxnOutcome::Committed { .. })));
    node.stop().await;
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
