//! Cookie sessions in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (`tests/browser/run.mjs`) against a node started here, from an allowed origin and from a
//! foreign one.
//!
//! Needs `/usr/bin/chromium` and Node.js; `.ci/run` installs Chromium. Outside CI, a machine
//! without them skips this test with a warning; under `CI=true` their absence is a failure.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Serves one tiny HTML page on 127.0.0.1 (or `localhost`) on a thread; returns its origin.
fn serve_page(host: &str, title: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = format!("<!doctype html><html><head><title>{title}</title></head><body>{title}</body></html>");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{host}:{port}")
}

fn available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required for the browser tests in CI (.ci/run installs it)");
    }
    eprintln!("SKIPPING the browser test: {what} is not installed (apt-get install chromium; see .ci/run)");
    false
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_work_in_chromium_and_foreign_origins_get_nothing() {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !available("Node.js", node) || !available(CHROMIUM, Path::new(CHROMIUM).exists()) {
        return;
    }
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists() {
        let npm = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).status().unwrap();
        assert!(npm.success(), "npm ci in tests/browser failed");
    }

    let app_origin = serve_page("127.0.0.1", "the app");
    let foreign_origin = serve_page("localhost", "someone else");
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(data.path().join("data"));
    settings.cors_origins = vec![app_origin.clone()];
    let app = TestApp::spawn_with(data, settings).await;

    let output = tokio::task::spawn_blocking({
        let (tessera, dir) = (app.address.clone(), dir.clone());
        move || {
            Command::new("node")
                .arg("run.mjs")
                .current_dir(dir)
                .env("TESSERA_URL", tessera)
                .env("APP_URL", app_origin)
                .env("FOREIGN_URL", foreign_origin)
                .env("CHROMIUM", CHROMIUM)
                .output()
                .expect("run node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "browser checks failed:\n{stdout}\n{stderr}");
    app.stop().await;
}
