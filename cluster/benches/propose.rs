//! Committed compare-and-set transactions per second on one node with the durable redb log.
//!
//! Each proposer owns one key and rewrites it with `expect_version(last)`: the shape of a
//! refresh-token rotation. Runs at 1, 64 and 512 concurrent proposers, through the batching
//! proposer and, for contrast, with one `client_write` per transaction (no batching).
//!
//! `cargo bench -p tessera-cluster --bench propose` (set `BENCH_SECONDS` to change the
//! measured time per case; default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tessera_cluster::durable::SqliteStore;
use tessera_cluster::types::{Applied, Command};
use tessera_cluster::{ClusterNode, NodeConfig, NodeInfo, StoreTuning, Txn, TxnOutcome};

type Node = ClusterNode<Vec<u8>>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Batched,
    Unbatched,
}

struct Outcome {
    committed: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    conflicts: u64,
    errors: u64,
}

async fn one_write(
    node: &Node,
    mode: Mode,
    key: &str,
    expected: Option<u64>,
    payload: &[u8],
) -> Result<TxnOutcome, String> {
    let txn = Txn::new().expect(key, expected).put(key, &payload.to_vec()).unwrap();
    match mode {
        Mode::Batched => node.propose(txn).await.map_err(|e| e.to_string()),
        Mode::Unbatched => match node.raft().client_write(Command::Txns(vec![txn.into_raw()])).await {
            Ok(response) => match response.data {
                Applied::Txns(mut outcomes) if outcomes.len() == 1 => Ok(outcomes.remove(0)),
                other => Err(format!("unexpected {other:?}")),
            },
            Err(e) => Err(e.to_string()),
        },
    }
}

async fn run_case(
    node: &Node,
    mode: Mode,
    proposers: usize,
    warmup: Duration,
    measure: Duration,
    round: usize,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..proposers {
        let node = node.clone();
        let (stop, measuring) = (Arc::clone(&stop), Arc::clone(&measuring));
        tasks.push(tokio::spawn(async move {
            let key = format!("bench/{round}/{p}");
            let payload = vec![7u8; 120];
            let mut version = None;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let (mut committed, mut conflicts, mut errors) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = one_write(&node, mode, &key, version, &payload).await;
                let counted = measuring.load(Ordering::Relaxed);
                match result {
                    Ok(TxnOutcome::Committed { version: v }) => {
                        version = Some(v);
                        if counted {
                            committed += 1;
                            hist.record(start.elapsed().as_micros() as u64).unwrap();
                        }
                    }
                    Ok(TxnOutcome::Conflict { actual, .. }) => {
                        version = actual;
                        conflicts += counted as u64;
                    }
                    Err(_) => errors += counted as u64,
                }
            }
            (committed, conflicts, errors, hist)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut outcome = Outcome {
        committed: 0,
        elapsed,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        conflicts: 0,
        errors: 0,
    };
    for task in tasks {
        let (committed, conflicts, errors, hist) = task.await.unwrap();
        outcome.committed += committed;
        outcome.conflicts += conflicts;
        outcome.errors += errors;
        outcome.latency.add(&hist).unwrap();
    }
    outcome
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("store.sqlite").display()), 2000)
            .await
            .unwrap();
        sqlx::migrate!("../migrations/sqlite").run(store.pool()).await.unwrap();
        let config = NodeConfig {
            node_id: 1,
            info: NodeInfo { peer_addr: "127.0.0.1:1".into(), public_addr: String::new() },
            data_dir: dir.path().join("data"),
            cluster_name: "bench".into(),
            tuning: bench_tuning(),
            restore: true,
        };
        let node = Node::start(config, b"bench secret", Arc::new(store), None).await.unwrap();
        node.bootstrap_single().await.unwrap();
        while node.status().role != "leader" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("durable redb log in {} ; {seconds}s per case after 1s warm-up", dir.path().display());
        println!("| mode | proposers | committed txn/s | p50 ms | p99 ms | max ms | entries/s | conflicts | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut round = 0;
        for mode in [Mode::Batched, Mode::Unbatched] {
            for proposers in [1usize, 64, 512] {
                round += 1;
                let entries_before = node.status().proposer.entries;
                let log_before = node.status().last_log_index.unwrap_or(0);
                let o =
                    run_case(&node, mode, proposers, Duration::from_secs(1), Duration::from_secs(seconds), round).await;
                let entries = match mode {
                    Mode::Batched => node.status().proposer.entries - entries_before,
                    Mode::Unbatched => node.status().last_log_index.unwrap_or(0) - log_before,
                };
                let secs = o.elapsed.as_secs_f64();
                println!(
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
                    if mode == Mode::Batched { "batched" } else { "unbatched" },
                    proposers,
                    o.committed as f64 / secs,
                    o.latency.value_at_quantile(0.5) as f64 / 1000.0,
                    o.latency.value_at_quantile(0.99) as f64 / 1000.0,
                    o.latency.max() as f64 / 1000.0,
                    entries as f64 / (secs + 1.0),
                    o.conflicts,
                    o.errors,
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        node.shutdown().await;
    });
}

/// The default tuning, with `BENCH_OVERLAP` (if set) as the proposer's overlap threshold.
fn bench_tuning() -> StoreTuning {
    let mut tuning = StoreTuning::default();
    if let Some(overlap) = std::env::var("BENCH_OVERLAP").ok().and_then(|v| v.parse().ok()) {
        tuning.proposer.overlap_batch_txns = overlap;
    }
    tuning
}
