//! `tessera-ceilings`: what this machine allows, measured with the primitives Tessera uses, so
//! the load generator's figures can be read as fractions of a ceiling.
//!
//! - Argon2id verifications per second on all cores at the configured parameters: no server
//!   can log users in faster.
//! - Ed25519 signatures and verifications per second (one thread and all threads): the bound
//!   on issuing and verifying access tokens.
//!
//! The HTTP ceiling is measured against the server itself: `tessera-loadtest --scenario
//! trivial` drives `GET /healthz` through the same actix-web configuration and middleware.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::Parser;
use ed25519_dalek::{Signer, SigningKey, Verifier};

#[derive(Debug, Parser)]
#[command(name = "tessera-ceilings", about = "Physical limits for Tessera's benchmarks")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Threads for the all-core figures (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Argon2id memory in KiB (Tessera's default).
    #[arg(long, default_value_t = 19_456)]
    memory_kib: u32,
    /// Argon2id iterations (Tessera's default).
    #[arg(long, default_value_t = 2)]
    iterations: u32,
    /// Write the figures as JSON here as well.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// Runs `work` on `threads` threads for `seconds`; returns operations per second.
fn rate(threads: usize, seconds: f64, work: impl Fn() + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (work, stop, count, start) =
                (Arc::clone(&work), Arc::clone(&stop), Arc::clone(&count), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    work();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let done = count.load(Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    for handle in handles {
        let _ = handle.join();
    }
    done as f64 / elapsed
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).max(1);
    let mut figures = serde_json::Map::new();
    figures.insert("threads".into(), serde_json::json!(threads));
    figures.insert("argon2id_memory_kib".into(), serde_json::json!(args.memory_kib));
    figures.insert("argon2id_iterations".into(), serde_json::json!(args.iterations));
    let mut report = |key: &str, label: &str, value: f64| {
        println!("{label:<44} {value:>12.1} /s");
        figures.insert(key.to_string(), serde_json::json!(value));
    };
    println!("{cores} cores, {threads} threads for all-core figures, {} s each", args.seconds);

    let params = Params::new(args.memory_kib, args.iterations, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::encode_b64(b"tessera-ceiling!").map_err(|e| anyhow::anyhow!("{e}"))?;
    let phc =
        argon.hash_password(b"correct horse battery staple", &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string();
    let verify_password = move || {
        let hash = PasswordHash::new(&phc).expect("a PHC string we just made");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        assert!(argon.verify_password(b"correct horse battery staple", &hash).is_ok());
    };
    let label = format!("argon2id verify m={} t={} ({threads} threads)", args.memory_kib, args.iterations);
    report("argon2id_verifications_per_second_all_threads", &label, rate(threads, args.seconds, verify_password));

    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    // About the size of an access token's signing input (header.claims, base64url).
    let message = vec![b'a'; 420];
    let signature = key.sign(&message);
    for (n, scope, suffix) in
        [(1, "one_thread", "1 thread".to_string()), (threads, "all_threads", format!("{threads} threads"))]
    {
        let (key, to_sign, to_verify) = (key.clone(), message.clone(), message.clone());
        report(
            &format!("ed25519_signatures_per_second_{scope}"),
            &format!("ed25519 sign ({suffix})"),
            rate(n, args.seconds, move || {
                std::hint::black_box(key.sign(&to_sign));
            }),
        );
        report(
            &format!("ed25519_verifications_per_second_{scope}"),
            &format!("ed25519 verify ({suffix})"),
            rate(n, args.seconds, move || assert!(public.verify(&to_verify, &signature).is_ok())),
        );
    }
    if let Some(out) = args.out {
        std::fs::write(&out, serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}
