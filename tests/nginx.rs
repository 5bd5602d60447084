//! `deploy/nginx.conf` in front of a three-node cluster: Debian's nginx, started from the
//! shipped file with only the addresses changed, carries a login/refresh/verify/logout flow,
//! adds `Cache-Control: no-store` on `/v1/*`, rate-limits logins per client, and keeps serving
//! when a node dies. Outside CI the test is skipped when nginx is not installed.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::PASSWORD;
use common::procs::ProcCluster;
use serde_json::{Value, json};

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    url: String,
    _prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers before it exits (SIGKILL would orphan them).
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts nginx with `deploy/nginx.conf`, its upstreams and listener replaced.
async fn start_nginx(upstreams: &[String]) -> Nginx {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf")).unwrap();
    let listen = common::free_addr();
    let mut config = shipped.replace("listen 127.0.0.1:8080;", &format!("listen {listen};"));
    for (i, upstream) in upstreams.iter().enumerate() {
        let shipped_addr = format!("server 127.0.0.1:{} ", 8081 + i);
        assert!(config.contains(&shipped_addr), "deploy/nginx.conf names {shipped_addr}");
        config = config.replace(&shipped_addr, &format!("server {} ", upstream.trim_start_matches("http://")));
    }
    let prefix = tempfile::tempdir().unwrap();
    let conf = prefix.path().join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    // As root, nginx's workers would switch to `nobody` and lose the private temp directory.
    let globals = if nix::unistd::geteuid().is_root() { "daemon off; user root;" } else { "daemon off;" };
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(format!("{}/", prefix.path().display()))
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(globals)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx { child, url: format!("http://{listen}"), _prefix: prefix };
    let started = Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "nginx never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nginx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_behind_the_shipped_nginx_config() {
    if !Path::new(NGINX).exists() {
        assert!(std::env::var("CI").is_err(), "CI installs nginx (see .ci/run)");
        eprintln!("skipped: {NGINX} is not installed (apt-get install nginx)");
        return;
    }
    let mut cluster = ProcCluster::start(3, &[("TESSERA_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let nginx = start_nginx(&cluster.urls()).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", nginx.url);

    // The whole flow, through nginx.
    let registered = http.post(url("/v1/users")).json(&json!({ "email": "edge@example.com", "password": PASSWORD }));
    let registered = registered.send().await.unwrap();
    assert_eq!(registered.status(), 201);
    assert_eq!(registered.headers()["cache-control"], "no-store", "nginx sets no-store on /v1/*");
    let login = http.post(url("/v1/login")).json(&json!({ "email": "edge@example.com", "password": PASSWORD }));
    let login = login.send().await.unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers().get_all("cache-control").iter().count(), 1, "one Cache-Control, not two");
    let tokens: Value = login.json().await.unwrap();
    let verify = |access: String| http.get(url("/v1/verify")).bearer_auth(access).send();
    let verified = verify(tokens["access_token"].as_str().unwrap().into()).await.unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.headers()["cache-control"], "no-store");
    let refresh = http.post(url("/v1/token/refresh")).json(&json!({ "refresh_token": tokens["refresh_token"] }));
    let refreshed = refresh.send().await.unwrap();
    assert_eq!(refreshed.status(), 200);
    let next: Value = refreshed.json().await.unwrap();
    let access = next["access_token"].as_str().unwrap().to_string();
    // Every node (round robin) verifies the new token.
    for _ in 0..6 {
        assert_eq!(verify(access.clone()).await.unwrap().status(), 200);
    }
    let jwks = http.get(url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);

    // A node dies: nginx skips it and the cluster keeps answering.
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill9(follower);
    for _ in 0..9 {
        assert_eq!(verify(access.clone()).await.unwrap().status(), 200, "with node {follower} down");
    }
    let logout = http.post(url("/v1/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    // Whichever node nginx picks, a strong read sees the logout at once. A plain read comes
    // from that node's replica, which may apply the commit a moment after the logout answered
    // (bounded staleness): it must say 401 on both live nodes well within max_staleness.
    let strong = http.get(url("/v1/verify?consistency=strong")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(strong.status(), 401, "strong read after logout");
    let ended = std::time::Instant::now();
    let mut plain = Vec::new();
    while plain.len() < 2 || !plain.iter().all(|s| *s == 401) {
        assert!(ended.elapsed() < Duration::from_millis(1_500), "the logout never reached a replica: {plain:?}");
        plain = vec![verify(access.clone()).await.unwrap().status(), verify(access.clone()).await.unwrap().status()];
    }

    // Logins are limited per client at the proxy: two logins so far, a burst of five more is
    // allowed at once, then nginx answers 429 itself (Tessera's own limits are set high here).
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let attempt =
            http.post(url("/v1/login")).json(&json!({ "email": "edge@example.com", "password": "wrong guess!" }));
        let response = attempt.send().await.unwrap();
        let from_nginx = response.headers().get("content-type").is_some_and(|c| c.as_bytes().starts_with(b"text/html"));
        statuses.push((response.status().as_u16(), from_nginx));
    }
    let passed = statuses.iter().filter(|(_, nginx)| !nginx).count();
    let limited = statuses.iter().filter(|(status, nginx)| *status == 429 && *nginx).count();
    assert!(passed <= 6, "at most the burst reaches Tessera: {statuses:?}");
    assert!(limited >= 2, "nginx limits the rest: {statuses:?}");
    println!("nginx: flow ok through 3 nodes, node {follower} killed without errors, login attempts {statuses:?}");
}
