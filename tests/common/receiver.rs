//! A webhook receiver in Python that verifies each request with the `standardwebhooks`
//! package (tests/webhooks/receiver.py), stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A receiver's secret: `whsec_` and base64 of 32 bytes.
pub const SECRET: &str = "whsec_dGVzc2VyYS13ZWJob29rLXRlc3Qtc2VjcmV0LTAxMjM0NTY3OA==";

pub struct Receiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver that refuses the first `failures` attempts of every webhook-id.
    pub fn start(failures: u32) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let (port_file, log) = (dir.path().join("port"), dir.path().join("requests.jsonl"));
        let child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py"))
            .arg(&port_file)
            .arg(&log)
            .arg(SECRET)
            .arg(failures.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the receiver");
        let started = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the receiver did not start (is standardwebhooks installed?)"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Receiver { child, port, log, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The accepted deliveries at `path`, in order.
    pub fn accepted(&self, path: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["path"] == path && r["answered"] == 204).collect()
    }

    /// Waits until `path` accepted `count` deliveries.
    pub async fn wait_accepted(&self, path: &str, count: usize, limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let accepted = self.accepted(path);
            if accepted.len() >= count {
                return accepted;
            }
            assert!(
                started.elapsed() < limit,
                "{} of {count} deliveries to {path} after {limit:?}: {:#?}",
                accepted.len(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Receiver {
    /// Waits until `path` accepted every webhook-id in `ids` (some perhaps more than once).
    pub async fn wait_all_accepted(&self, path: &str, ids: &std::collections::BTreeSet<String>, limit: Duration) {
        let started = Instant::now();
        loop {
            let accepted: std::collections::BTreeSet<String> =
                self.accepted(path).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
            if ids.is_subset(&accepted) {
                return;
            }
            let missing: Vec<&String> = ids.difference(&accepted).collect();
            assert!(started.elapsed() < limit, "not accepted at {path} after {limit:?}: {missing:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
