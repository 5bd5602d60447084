//! Three real nodes in one process, talking HTTP over 127.0.0.1 through a fault layer.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tessera_cluster::{NodeInfo, Partition, ProposeError, TxnOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_leader_cannot_commit_and_catches_up_through_a_snapshot_after_healing() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let partition = Arc::new(Partition::default());
    let listeners: Vec<_> = (0..3).map(|_| reserve_port()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let store = sqlite_store(&dirs[i].path().join("store")).await;
        let faults: Arc<dyn tessera_cluster::PeerFaults> = partition.clone();
        nodes.push(
            start_node(i as u64 + 1, &dirs[i].path().join("data"), store, Some(faults), fast_tuning(), listener).await,
        );
    }
    let members: BTreeMap<u64, NodeInfo> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, NodeInfo { peer_addr: a.clone(), public_addr: String::new() }))
        .collect();

    // Phase 1: a healthy cluster replicates writes to every node.
    assert!(nodes[0].node.initialize(members.clone()).await.unwrap());
    assert!(!nodes[0].node.initialize(members).await.unwrap(), "initialising twice is harmless");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let leader = agreed_leader(&all, Duration::from_secs(10)).await;
    let leader_node = nodes.iter().find(|n| n.id == leader).unwrap();
    for i in 0..20 {
        assert!(matches!(leader_node.put(&format!("k/{i}"), i).await, Ok(TxnOutcome::Committed { .. })));
    }
    let target = leader_node.node.applied_index().unwrap();
    eventually(Duration::from_secs(10), "all replicas applied phase 1", || {
        nodes.iter().all(|n| n.node.applied_index() >= Some(target))
    })
    .await;
    assert_eq!(nodes[1].node.get("k/7").unwrap().unwrap().value, value(7));

    // Phase 2: the leader is cut off. Its writes never commit; the others elect a new leader.
    partition.isolate(leader);
    let stale = leader_node.put("stale/write", 999).await;
    assert!(
        matches!(stale, Err(ProposeError::Timeout) | Err(ProposeError::NotLeader { .. })),
        "an isolated leader must not commit, got {stale:?}"
    );
    let majority: Vec<&TestNode> = nodes.iter().filter(|n| n.id != leader).collect();
    let new_leader = agreed_leader(&majority, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let new_leader_node = nodes.iter().find(|n| n.id == new_leader).unwrap();

    // Enough entries (one write each) for several snapshots and a log purge past the old
    // leader's position, then a concurrent burst that the proposer batches.
    for i in 0..150u64 {
        let outcome = new_leader_node.put(&format!("m/{i}"), i).await;
        assert!(matches!(outcome, Ok(TxnOutcome::Committed { .. })), "{outcome:?}");
    }
    let burst = (150..300u64).map(|i| async move { new_leader_node.put(&format!("m/{i}"), i).await });
    for outcome in futures::future::join_all(burst).await {
        assert!(matches!(outcome, Ok(TxnOutcome::Committed { .. })), "{outcome:?}");
    }
    let old_last_log = leader_node.node.status().last_log_index.unwrap();
    eventually(Duration::from_secs(15), "the majority to purge past the old leader's log", || {
        majority.iter().all(|n| n.node.status().purged_index.unwrap_or(0) > old_last_log)
    })
    .await;

    // Phase 3: heal. The old leader follows, drops its uncommitted write, installs a snapshot.
    partition.heal();
    let target = new_leader_node.node.applied_index().unwrap();
    eventually(Duration::from_secs(15), "the old leader to catch up", || {
        leader_node.node.applied_index() >= Some(target)
    })
    .await;
    assert_eq!(leader_node.node.status().role, "follower");
    assert_eq!(leader_node.node.status().leader_id, Some(new_leader));
    assert!(
        leader_node.node.status().snapshot_index.unwrap_or(0) > old_last_log,
        "the old leader caught up through a snapshot install"
    );
    for n in &nodes {
        assert_eq!(n.node.get("stale/write").unwrap(), None, "node {} kept an uncommitted write", n.id);
        assert_eq!(n.node.get("m/299").unwrap().unwrap().value, value(299));
    }

    // All replicas end byte-identical once they have applied the same entries.
    let target = new_leader_node.node.applied_index().unwrap();
    eventually(Duration::from_secs(10), "identical applied index", || {
        nodes.iter().all(|n| n.node.applied_index() == Some(target))
    })
    .await;
    let images: Vec<Vec<u8>> = nodes.iter().map(|n| n.node.state_image()).collect();
    assert!(images.iter().all(|i| *i == images[0]), "replicas differ");

    for n in nodes {
        n.stop().await;
    }
}
