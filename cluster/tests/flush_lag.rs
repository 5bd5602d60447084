//! The operator view of the snapshot store on every member: once the leader has flushed and
//! the cluster is idle, no member reports a flush lag (followers used to report the time since
//! they started, growing forever).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use tessera_cluster::{NodeInfo, TxnOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_member_reports_a_flush_lag_once_the_leader_has_flushed() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let listeners: Vec<_> = (0..3).map(|_| reserve_port()).collect();
    let members: BTreeMap<u64, NodeInfo> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (i as u64 + 1, NodeInfo { peer_addr: l.local_addr().unwrap().to_string(), public_addr: String::new() })
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let store = sqlite_store(&dirs[i].path().join("store")).await;
        nodes.push(start_node(i as u64 + 1, &dirs[i].path().join("data"), store, None, fast_tuning(), listener).await);
    }
    assert!(nodes[0].node.initialize(members).await.unwrap());
    let all: Vec<&TestNode> = nodes.iter().collect();
    let leader = agreed_leader(&all, Duration::from_secs(10)).await;
    let leader_node = nodes.iter().find(|n| n.id == leader).unwrap();
    for round in 0..3 {
        for i in 0..20 {
            let put = leader_node.put(&format!("k/{i}"), round * 100 + i).await;
            assert!(matches!(put, Ok(TxnOutcome::Committed { .. })), "{put:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle now: a flush (100 ms) and its compaction entry reach every member, then the lag must
    // read zero everywhere and stay there, however long the cluster stays idle.
    eventually(Duration::from_secs(10), "every member reports no lag", || {
        nodes.iter().all(|n| n.node.status().store.lag_entries == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for n in &nodes {
        let store = n.node.status().store;
        assert_eq!(store.lag_entries, 0, "node {}: {store:?}", n.id);
        assert!(store.lag_seconds < 0.5, "node {} reports {} s of lag while idle", n.id, store.lag_seconds);
    }
    // Under steady writes every member's lag stays about one flush interval (100 ms here).
    let mut worst = 0.0f64;
    for i in 0..100 {
        let put = leader_node.put(&format!("busy/{}", i % 10), i).await;
        assert!(matches!(put, Ok(TxnOutcome::Committed { .. })), "{put:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        worst = nodes.iter().map(|n| n.node.status().store.lag_seconds).fold(worst, f64::max);
    }
    assert!(worst < 1.0, "a member reported {worst} s of lag under steady writes");
    for n in nodes {
        n.stop().await;
    }
}
