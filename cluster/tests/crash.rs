//! `kill -9` a node that is committing writes, reopen its files, and check that every
//! acknowledged write is there and no transaction is half-applied.
//!
//! The writer runs in a child process: this test binary re-executes itself, running only the
//! ignored `crash_child` test with `TESSERA_CRASH_DIR` set.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tessera_cluster::{Txn, TxnOutcome};

const CHILD_ENV: &str = "TESSERA_CRASH_DIR";
const WRITERS: u64 = 32;

/// Each transaction writes two keys; both or neither must survive.
fn pair(i: u64) -> Txn<Value> {
    Txn::new().put(format!("a/{i:06}"), &value(i)).unwrap().put(format!("b/{i:06}"), &value(i)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as the child of acknowledged_writes_survive_kill_9"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let store = sqlite_store(&dir.join("store")).await;
    let node = start_node(1, &dir.join("data"), store, None, fast_tuning(), reserve_port()).await;
    node.node.bootstrap_single().await.unwrap();
    let node = Arc::new(node);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let node = Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            loop {
                if let Ok(TxnOutcome::Committed { .. }) = node.node.propose(pair(i)).await {
                    println!("ACK {i}");
                }
                i += WRITERS;
            }
        }));
    }
    futures::future::join_all(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = BTreeSet::new();
    while acked.len() < 2_000 {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some(i) = line.strip_prefix("ACK ") {
            acked.insert(i.parse::<u64>().unwrap());
        }
    }
    child.kill().expect("kill -9"); // SIGKILL on Unix
    child.wait().unwrap();
    // Acknowledgements already written to the pipe count too.
    for line in lines {
        if let Some(i) = line.unwrap().strip_prefix("ACK ") {
            acked.insert(i.parse::<u64>().unwrap());
        }
    }

    // Reopen the same files in this process.
    let store = sqlite_store(&dir.path().join("store")).await;
    let node = start_node(1, &dir.path().join("data"), store, None, fast_tuning(), reserve_port()).await;
    eventually(Duration::from_secs(10), "the reopened node to lead", || node.node.status().role == "leader").await;
    let last = node.node.status().last_log_index.unwrap();
    eventually(Duration::from_secs(10), "the reopened node to apply its log", || {
        node.node.applied_index() >= Some(last)
    })
    .await;

    let a: BTreeSet<u64> = node.node.scan_prefix("a/").unwrap().into_iter().map(|(_, v)| v.value.n).collect();
    let b: BTreeSet<u64> = node.node.scan_prefix("b/").unwrap().into_iter().map(|(_, v)| v.value.n).collect();
    let lost: Vec<&u64> = acked.difference(&a).take(10).collect();
    assert!(lost.is_empty(), "acknowledged writes lost after kill -9: {lost:?} (of {})", acked.len());
    assert_eq!(a, b, "a transaction was half-applied");
    println!("kill -9 after {} acknowledged transactions: all present, {} committed in total", acked.len(), a.len());
    node.stop().await;
}
