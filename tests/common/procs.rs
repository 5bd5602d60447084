//! A cluster of Tessera processes on 127.0.0.1 for fault-injection tests: start, `kill -9`,
//! `SIGSTOP`/`SIGCONT`, restart, wipe, and partition through each node's test-only fault layer.
//! Every process is killed when the cluster is dropped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{ISSUER, PgDatabase, free_addr};

pub const ADMIN: &str = "fault-suite-admin-token-0123456789abcdef";

pub struct ProcNode {
    pub id: u64,
    pub public: SocketAddr,
    pub peer: SocketAddr,
    pub data: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl ProcNode {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct ProcCluster {
    pub nodes: Vec<ProcNode>,
    pub db: PgDatabase,
    pub client: reqwest::Client,
    extra: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl ProcCluster {
    /// Starts `n` nodes: node 1 bootstraps, the others join as learners and are promoted.
    /// `extra` are environment settings for every node (an empty value unsets the suite's own).
    pub async fn start(n: u64, extra: &[(&str, &str)]) -> ProcCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=n)
            .map(|id| ProcNode {
                id,
                public: free_addr(),
                peer: free_addr(),
                data: dir.path().join(format!("node{id}")),
                child: None,
                stopped: false,
            })
            .collect();
        let mut cluster = ProcCluster {
            nodes,
            db: PgDatabase::create(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            _dir: dir,
        };
        cluster.spawn(1, &[("TESSERA_BOOTSTRAP", "true")]);
        cluster.wait_ready(1).await;
        for id in 2..=n {
            cluster.spawn(id, &[("TESSERA_BOOTSTRAP", "false"), ("TESSERA_RESTORE", "false")]);
            cluster.join(id).await;
        }
        for id in 1..=n {
            cluster.wait_ready(id).await;
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &ProcNode {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut ProcNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Starts node `id`'s process (bootstrap and restore off unless `env` says otherwise).
    pub fn spawn(&mut self, id: u64, env: &[(&str, &str)]) {
        let (public, peer, data) = {
            let node = self.node(id);
            (node.public, node.peer, node.data.clone())
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TESSERA_NODE_ID", id.to_string())
            .env("TESSERA_LISTEN", public.to_string())
            .env("TESSERA_PEER_LISTEN", peer.to_string())
            .env("TESSERA_DATA_DIR", &data)
            .env("TESSERA_DATABASE_URL", &self.db.url)
            .env("TESSERA_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()))
            .env("TESSERA_CLUSTER_SECRET", "fault-suite-cluster-secret-0123456789abcdef")
            .env("TESSERA_REFRESH_PEPPER", "fault-suite-refresh-pepper-0123456789abcdef")
            .env("TESSERA_KEY_ENCRYPTION_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
            .env("TESSERA_ADMIN_TOKEN", ADMIN)
            .env("TESSERA_TOKENS__ISSUER", ISSUER)
            .env("TESSERA_FAULT_INJECTION", "true")
            .env("TESSERA_ARGON2__MEMORY_KIB", "256")
            .env("TESSERA_ARGON2__ITERATIONS", "1")
            .env("TESSERA_THROTTLE__REGISTRATIONS", "1000000")
            .env("TESSERA_THROTTLE__LOGIN_FAILURES", "1000000")
            // Lockout still locks after ten failures, without minutes of progressive delay.
            .env("TESSERA_LOCKOUT__BASE_DELAY_MS", "20")
            .env("TESSERA_LOCKOUT__MAX_DELAY_MS", "100")
            .env("TESSERA_BOOTSTRAP", "false")
            .env("TESSERA_RESTORE", "false")
            .stdout(if std::env::var("TEST_LOG").is_ok() { Stdio::inherit() } else { Stdio::null() })
            .stderr(Stdio::inherit());
        // An empty value removes the suite's default for that variable.
        for (k, v) in self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(env.iter().copied()) {
            if v.is_empty() {
                command.env_remove(k);
            } else {
                command.env(k, v);
            }
        }
        let child = command.spawn().expect("spawn tessera");
        let node = self.node_mut(id);
        node.child = Some(child);
        node.stopped = false;
    }

    async fn admin(&self, via: u64, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.node(via).peer))
            .bearer_auth(ADMIN)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("admin request")
    }

    /// Adds node `id` as a learner and promotes it (through whichever node answers).
    pub async fn join(&self, id: u64) {
        let node = self.node(id);
        let body = json!({ "id": id, "peer_addr": node.peer.to_string(), "public_addr": node.public.to_string() });
        let via = self.leader().await.expect("a leader to join");
        let added = self.admin(via, reqwest::Method::POST, "/admin/learners", Some(body)).await;
        assert!(added.status().is_success(), "add learner {id}: {}", added.text().await.unwrap());
        let promoted = self.admin(via, reqwest::Method::POST, &format!("/admin/voters/{id}"), None).await;
        assert!(promoted.status().is_success(), "promote {id}: {}", promoted.text().await.unwrap());
    }

    /// Moves leadership to `to` through node `via`'s admin API; returns the reported time.
    pub async fn transfer(&self, via: u64, to: u64) -> Value {
        let moved = self.admin(via, reqwest::Method::POST, &format!("/admin/transfer/{to}"), None).await;
        assert!(moved.status().is_success(), "transfer to {to}: {}", moved.text().await.unwrap());
        moved.json().await.unwrap()
    }

    pub async fn remove(&self, id: u64) {
        let via = self.leader().await.expect("a leader to remove a member");
        let removed = self.admin(via, reqwest::Method::DELETE, &format!("/admin/members/{id}"), None).await;
        assert!(removed.status().is_success(), "remove {id}: {}", removed.text().await.unwrap());
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        let node = self.node(id);
        if !node.running() || node.stopped {
            return None;
        }
        let response = self.client.get(node.url("/v1/cluster")).timeout(Duration::from_secs(2)).send().await.ok()?;
        response.json().await.ok()
    }

    /// The node every running node agrees leads, if they agree and it answers as leader.
    pub async fn leader(&self) -> Option<u64> {
        for node in &self.nodes {
            if let Some(status) = self.status(node.id).await
                && status["role"] == "leader"
            {
                return status["node_id"].as_u64();
            }
        }
        None
    }

    pub async fn wait_leader(&self, limit: Duration, not: Option<u64>) -> u64 {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader().await
                && Some(leader) != not
            {
                return leader;
            }
            assert!(started.elapsed() < limit, "no leader within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&mut self, id: u64) {
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.node_mut(id).child
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!("node {id} exited with {status} before it became ready");
            }
            if let Ok(r) = self.client.get(self.node(id).url("/readyz")).timeout(Duration::from_secs(2)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "node {id} never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&mut self, id: u64, signal: Signal) {
        let node = self.node_mut(id);
        if let Some(child) = &node.child {
            kill(Pid::from_raw(child.id() as i32), signal).expect("signal");
            node.stopped = signal == Signal::SIGSTOP;
        }
    }

    /// Cuts `isolated` off from everyone else (both directions), through every node's fault layer.
    pub async fn partition(&self, isolated: &[u64]) {
        let all: BTreeSet<u64> = self.ids().into_iter().collect();
        for node in self.nodes.iter().filter(|n| n.running() && !n.stopped) {
            let blocked: BTreeSet<u64> = if isolated.contains(&node.id) {
                all.iter().copied().filter(|id| *id != node.id).collect()
            } else {
                isolated.iter().copied().collect()
            };
            let response =
                self.admin(node.id, reqwest::Method::PUT, "/admin/faults", Some(json!({ "isolated": blocked }))).await;
            assert!(response.status().is_success(), "faults on {}", node.id);
        }
    }

    pub async fn heal(&self) {
        self.partition(&[]).await;
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        self.node(id).url(path)
    }

    /// Every node's public base URL, node 1 first.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("http://{}", n.public)).collect()
    }

    /// Deletes node `id`'s data directory (the process must not be running).
    pub fn wipe(&mut self, id: u64) {
        assert!(!self.node(id).running(), "wipe a stopped node only");
        let _ = std::fs::remove_dir_all(&self.node(id).data);
    }

    /// Waits until one of `among` reports itself leader; returns it.
    pub async fn wait_leader_among(&self, among: &[u64], limit: Duration) -> u64 {
        let started = Instant::now();
        loop {
            for id in among {
                if let Some(status) = self.status(*id).await
                    && status["role"] == "leader"
                {
                    return *id;
                }
            }
            assert!(started.elapsed() < limit, "no leader among {among:?} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` follows `leader` and has applied everything `leader` had committed
    /// when the wait began.
    pub async fn wait_caught_up(&self, id: u64, leader: u64, limit: Duration) {
        let target = self.status(leader).await.and_then(|s| s["committed"].as_u64()).unwrap_or(0);
        let started = Instant::now();
        loop {
            if let Some(status) = self.status(id).await
                && status["leader_id"].as_u64() == Some(leader)
                && status["applied"].as_u64().unwrap_or(0) >= target
            {
                return;
            }
            assert!(started.elapsed() < limit, "node {id} did not catch up with {leader} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if node.stopped {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
