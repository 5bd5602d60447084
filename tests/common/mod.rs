//! Black-box test helpers: a whole Tessera node on 127.0.0.1 port 0 with a fresh data
//! directory and a fresh database.
#![allow(dead_code)]

pub mod history;
pub mod procs;
pub mod receiver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera::config::Secret;
use tessera::{Node, Settings};

pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";
pub const ISSUER: &str = "http://tessera.test";

/// The generation part of a refresh token (`family.generation.mac`).
pub fn generation_of(refresh_token: &str) -> u64 {
    refresh_token.split('.').nth(1).unwrap().parse().unwrap()
}

/// Fast Raft timings for tests; production defaults are in `Settings::default()`.
pub fn test_settings(data_dir: PathBuf) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        peer_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        cluster_secret: Some(Secret::new(CLUSTER_SECRET.into())),
        workers: 2,
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()),
        ..Settings::default()
    };
    settings.raft.heartbeat_ms = 50;
    settings.raft.election_timeout_min_ms = 300;
    settings.raft.election_timeout_max_ms = 600;
    settings.flush.interval_ms = 100;
    settings.max_staleness_ms = 500;
    // Ports differ between restarts in tests; the issuer must not.
    settings.tokens.issuer = Some(ISSUER.to_string());
    // Cheap hashing keeps tests fast; production parameters are tested where they matter.
    settings.argon2.memory_kib = 256;
    settings.argon2.iterations = 1;
    // Every test client is 127.0.0.1: keep network limits out of tests that are not about them.
    settings.throttle.registrations = 1_000_000;
    settings.throttle.login_failures = 1_000_000;
    settings
}

/// A fresh Postgres database, dropped (even on panic) when this goes out of scope.
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!("tessera_test_{}", uuid::Uuid::new_v4().simple());
        run_blocking({
            let (admin_url, name) = (admin_url.clone(), name.clone());
            async move {
                let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect to Postgres (is it running?)");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
                admin.close().await;
            }
        });
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin_url.clone());
        PgDatabase { url: format!("{base}/{name}"), name, admin_url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        run_blocking(async move {
            if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                admin.close().await;
            }
        });
    }
}

/// Runs a future to completion on a private runtime on its own thread (safe from any context).
pub fn run_blocking<F: std::future::Future<Output = ()> + Send + 'static>(future: F) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    })
    .join()
    .expect("helper thread panicked");
}

/// A node started in this process.
pub struct TestApp {
    pub node: Option<Node>,
    pub address: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path().join("data"));
        Self::spawn_with(dir, settings).await
    }

    pub async fn spawn_with(dir: tempfile::TempDir, settings: Settings) -> TestApp {
        tessera::telemetry::init(&settings.log, settings.log_format);
        let node = tokio::task::spawn_blocking(move || Node::start(settings)).await.unwrap().expect("node starts");
        let address = format!("http://{}", node.public_addr());
        let app = TestApp { node: Some(node), address, client: reqwest::Client::new(), dir };
        app.wait_ready().await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("running")
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(&body).send().await.expect("request")
    }

    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/v1/users", json!({ "email": email, "password": password })).await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/v1/login", json!({ "email": email, "password": password })).await
    }

    /// Registers `email` and logs in; returns the token response.
    pub async fn session(&self, email: &str) -> Value {
        let registered = self.register(email, PASSWORD).await;
        assert_eq!(registered.status(), 201, "{}", registered.text().await.unwrap());
        let login = self.login(email, PASSWORD).await;
        assert_eq!(login.status(), 200);
        login.json().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post("/v1/token/refresh", json!({ "refresh_token": refresh_token })).await
    }

    pub async fn verify(&self, access_token: &str) -> reqwest::Response {
        self.client.get(self.url("/v1/verify")).bearer_auth(access_token).send().await.expect("request")
    }

    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "node never became ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(node) = self.node.take() {
            tokio::task::spawn_blocking(move || node.stop()).await.unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let _ = std::thread::spawn(move || node.stop()).join();
        }
    }
}

/// A node running as a child process of the real binary.
pub struct ChildNode {
    pub child: Child,
    pub public: SocketAddr,
    pub data_dir: PathBuf,
}

/// A port on 127.0.0.1 that was free a moment ago and that this process has not handed out
/// before (the kernel may offer a just-released port again).
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        if GIVEN.lock().unwrap().insert(addr.port()) {
            return addr;
        }
    }
}

pub fn tessera_command(data_dir: &std::path::Path, public: SocketAddr, peer: SocketAddr) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_LISTEN", public.to_string())
        .env("TESSERA_PEER_LISTEN", peer.to_string())
        .env("TESSERA_DATA_DIR", data_dir)
        .env("TESSERA_LOG", "warn")
        .env("TESSERA_TOKENS__ISSUER", ISSUER)
        .env("TESSERA_THROTTLE__REGISTRATIONS", "1000000")
        .env("TESSERA_THROTTLE__LOGIN_FAILURES", "1000000")
        .env("TESSERA_RAFT__HEARTBEAT_MS", "50")
        .env("TESSERA_RAFT__ELECTION_TIMEOUT_MIN_MS", "300")
        .env("TESSERA_RAFT__ELECTION_TIMEOUT_MAX_MS", "600")
        .env("TESSERA_MAX_STALENESS_MS", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

impl ChildNode {
    pub fn spawn(data_dir: PathBuf, configure: impl FnOnce(&mut Command)) -> ChildNode {
        let public = free_addr();
        let mut command = tessera_command(&data_dir, public, free_addr());
        configure(&mut command);
        let child = command.spawn().expect("spawn tessera");
        ChildNode { child, public, data_dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("tessera exited early with {status}");
            }
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "child node never became ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Secrets shared by every node of a test cluster.
pub fn shared_secrets(settings: &mut Settings) {
    settings.refresh_pepper = Some(Secret::new("cluster-test-refresh-pepper-0123456789abcdef".into()));
    settings.key_encryption_key = Some(Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".into()));
}

/// `n` nodes in this process, forming one cluster with node 1 as the initial leader.
pub async fn spawn_cluster(n: u64) -> Vec<TestApp> {
    spawn_cluster_with(n, |_| {}).await
}

/// Like [`spawn_cluster`], with every node's settings adjusted by `tune`.
pub async fn spawn_cluster_with(n: u64, tune: impl Fn(&mut Settings)) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for id in 1..=n {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path().join("data"));
        settings.node_id = id;
        settings.bootstrap = false;
        shared_secrets(&mut settings);
        tune(&mut settings);
        tessera::telemetry::init(&settings.log, settings.log_format);
        let node = tokio::task::spawn_blocking(move || Node::start(settings)).await.unwrap().expect("node starts");
        let address = format!("http://{}", node.public_addr());
        apps.push(TestApp { node: Some(node), address, client: reqwest::Client::new(), dir });
    }
    let members = apps.iter().map(|a| (a.node().cluster().id(), a.node().cluster().info().clone())).collect();
    assert!(apps[0].node().cluster().initialize(members).await.unwrap());
    for app in &apps {
        app.wait_ready().await;
    }
    apps
}

/// `oathtool`'s code for `secret` (base32) at now plus `steps` time steps.
pub fn oathtool(secret: &str, steps: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let output = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "--now", &format!("@{}", now + 30 * steps), secret])
        .output()
        .expect("oathtool is installed (.ci/run installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}
