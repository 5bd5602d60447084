//! Helpers for cluster tests: real nodes (redb log, snapshot files, SQLite or Postgres store)
//! with real peer listeners on 127.0.0.1, and an optional fault layer.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use serde::{Deserialize, Serialize};
use tessera_cluster::durable::{DurableStore, PgStore, SqliteStore};
use tessera_cluster::{
    ClusterNode, FlushConfig, NodeConfig, NodeId, NodeInfo, PeerFaults, ProposerConfig, RaftTuning, StoreTuning, Txn,
    TxnOutcome,
};

pub const SECRET: &[u8] = b"test cluster secret";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    pub n: u64,
    pub text: String,
}

pub fn value(n: u64) -> Value {
    Value { n, text: format!("value {n}") }
}

/// Fast timings so elections, snapshots and purges happen within a test's patience.
pub fn fast_tuning() -> StoreTuning {
    StoreTuning {
        raft: RaftTuning {
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_entries: 50,
            keep_entries: 5,
            max_payload_entries: 32,
            snapshot_chunk_bytes: 16 * 1024,
            install_snapshot_timeout_ms: 5_000,
        },
        proposer: ProposerConfig { write_timeout_ms: 2_000, ..ProposerConfig::default() },
        flush: FlushConfig { interval_ms: 100, rows_per_statement: 100 },
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TEST_LOG").unwrap_or_else(|_| "error".into()))
        .with_test_writer()
        .try_init();
}

pub async fn sqlite_store(dir: &Path) -> Arc<dyn DurableStore> {
    std::fs::create_dir_all(dir).unwrap();
    let url = format!("sqlite://{}", dir.join("store.sqlite").display());
    let store = SqliteStore::connect(&url, 100).await.expect("open sqlite");
    sqlx::migrate!("../migrations/sqlite").run(store.pool()).await.expect("sqlite migrations");
    Arc::new(store)
}

/// A fresh Postgres database for one test, dropped when the guard goes.
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!("tessera_test_{}", uuid_like());
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect to Postgres (is it running?)");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
        admin.close().await;
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin_url.clone());
        PgDatabase { url: format!("{base}/{name}"), name, admin_url }
    }

    pub async fn store(&self) -> Arc<dyn DurableStore> {
        let store = PgStore::connect(&self.url, 100).await.expect("connect test database");
        sqlx::migrate!("../migrations/postgres").run(store.pool()).await.expect("postgres migrations");
        Arc::new(store)
    }

    /// A pool on the test database, to read what the store wrote.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.expect("connect test database")
    }

    pub async fn drop_database(self) {
        if let Ok(admin) = sqlx::PgPool::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&admin).await;
        }
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// A node plus its peer listener, served by actix-web on its own thread.
pub struct TestNode {
    pub id: NodeId,
    pub node: ClusterNode<Value>,
    pub peer_addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn reserve_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

pub async fn start_node(
    id: NodeId,
    dir: &Path,
    store: Arc<dyn DurableStore>,
    faults: Option<Arc<dyn PeerFaults>>,
    tuning: StoreTuning,
    listener: TcpListener,
) -> TestNode {
    let peer_addr = listener.local_addr().unwrap();
    let config = NodeConfig {
        node_id: id,
        info: NodeInfo { peer_addr: peer_addr.to_string(), public_addr: String::new() },
        data_dir: dir.to_path_buf(),
        cluster_name: "test".into(),
        tuning,
        restore: true,
    };
    let node = ClusterNode::<Value>::start(config, SECRET, store, faults).await.expect("start node");
    let service = node.peer_service().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || App::new().configure(|cfg| service.configure(cfg)))
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)
                .expect("listen")
                .run();
            tx.send(server.handle()).unwrap();
            let _ = server.await;
        })
    });
    let server = rx.recv().unwrap();
    TestNode { id, node, peer_addr, server, thread: Some(thread) }
}

impl TestNode {
    pub async fn stop(mut self) {
        self.node.shutdown().await;
        self.server.stop(false).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    pub async fn put(&self, key: &str, n: u64) -> Result<TxnOutcome, tessera_cluster::ProposeError> {
        self.node.propose(Txn::new().put(key, &value(n)).unwrap()).await
    }
}

/// Polls `check` until it holds or `limit` passes.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, what: &str, mut check: F) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader every given node agrees on, once they do.
pub async fn agreed_leader(nodes: &[&TestNode], limit: Duration) -> NodeId {
    let mut leader = 0;
    eventually(limit, "an agreed leader", || {
        let leaders: Vec<Option<NodeId>> =
            nodes.iter().map(|n| n.node.raft().metrics().borrow().current_leader).collect();
        match leaders[0] {
            Some(l) if leaders.iter().all(|x| *x == Some(l)) && nodes.iter().any(|n| n.id == l) => {
                leader = l;
                nodes.iter().find(|n| n.id == l).unwrap().node.status().role == "leader"
            }
            _ => false,
        }
    })
    .await;
    leader
}
