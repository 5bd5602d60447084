//! Argon2id hashing and verification on a bounded pool of dedicated threads.
//!
//! Hashing is deliberately slow (≈20 ms at the defaults), so it never runs on an async
//! worker. The pool has a fixed number of threads and a bounded queue: when the queue is full
//! the caller gets `Overloaded` at once (503 + `Retry-After` at the edge) instead of making
//! every other request wait behind a login storm.
//!
//! Unknown accounts are verified against a dummy hash made with the same parameters, so a
//! login for an address that does not exist costs the same as a wrong password.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tessera_actors::ports::{Entropy, random};
use tokio::sync::oneshot;

use crate::config::Argon2Settings;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password hashing is saturated")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce() + Send>;

/// Fixed threads behind a bounded queue.
struct Pool {
    queue: mpsc::SyncSender<Job>,
}

impl Pool {
    fn new(threads: usize, capacity: usize) -> Pool {
        let (queue, jobs) = mpsc::sync_channel::<Job>(capacity);
        let jobs = Arc::new(parking_lot::Mutex::new(jobs));
        for i in 0..threads {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = jobs.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn an argon2 thread");
        }
        Pool { queue }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => PasswordError::Overloaded,
            mpsc::TrySendError::Disconnected(_) => PasswordError::Failed("hashing pool stopped".into()),
        })?;
        rx.await.map_err(|_| PasswordError::Failed("hashing job dropped".into()))
    }
}

pub struct Passwords {
    hasher: Argon2<'static>,
    pool: Pool,
    /// Where salts come from.
    entropy: Arc<dyn Entropy>,
    dummy: String,
    /// Argon2id verifications performed (real and dummy), for `/metrics`.
    verifications: AtomicU64,
}

impl Passwords {
    pub fn new(settings: &Argon2Settings, entropy: Arc<dyn Entropy>) -> Result<Passwords, PasswordError> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| PasswordError::Failed(e.to_string()))?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let threads = if settings.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.threads
        };
        // The dummy is a hash of a random password nobody knows, with the live parameters.
        let unknowable: [u8; 32] = random(&*entropy);
        let dummy = hash_with(&hasher, &unknowable, random(&*entropy))?;
        let pool = Pool::new(threads, settings.queue);
        Ok(Passwords { hasher, pool, entropy, dummy, verifications: AtomicU64::new(0) })
    }

    /// A PHC string for `password` with a fresh random salt.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let hasher = self.hasher.clone();
        let salt = random(&*self.entropy);
        self.pool.run(move || hash_with(&hasher, password.expose_secret().as_bytes(), salt)).await?
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no account
    /// (then the answer is always `false`, after the same work).
    pub async fn verify(&self, password: SecretString, phc: Option<String>) -> Result<bool, PasswordError> {
        let genuine = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.clone());
        let hasher = self.hasher.clone();
        self.verifications.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tessera_password_verifications_total").increment(1);
        let matched = self
            .pool
            .run(move || {
                let parsed = PasswordHash::new(&phc).map_err(|e| PasswordError::Failed(e.to_string()))?;
                Ok::<bool, PasswordError>(hasher.verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
            })
            .await??;
        Ok(genuine && matched)
    }

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

/// Hashing threads yield the CPU to request handling: a login storm then costs logins
/// latency rather than every verify and refresh on the node. On Linux they run at nice 10
/// (about a tenth of a core's share against busy request handlers), not `SCHED_IDLE`: a
/// starved hash would outlive its permit and count as a failed attempt.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id changes only this thread's nice value.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) != 0 {
            tracing::debug!("could not lower the scheduling priority of a hashing thread");
        }
    }
}

fn hash_with(hasher: &Argon2<'_>, password: &[u8], salt: [u8; 16]) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Failed(e.to_string()))?;
    hasher.hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| PasswordError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Argon2Settings {
        Argon2Settings { memory_kib: 64, iterations: 1, parallelism: 1, threads: 1, queue: 1 }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    fn passwords(settings: &Argon2Settings) -> Result<Passwords, PasswordError> {
        Passwords::new(settings, Arc::new(crate::adapters::SystemEntropy))
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_password_exactly() {
        let passwords = passwords(&fast()).unwrap();
        let phc = passwords.hash(secret("correct horse battery staple")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(passwords.verify(secret("correct horse battery staple"), Some(phc.clone())).await.unwrap());
        assert!(!passwords.verify(secret("Correct horse battery staple"), Some(phc.clone())).await.unwrap());
        assert!(!passwords.verify(secret("correct horse battery stapl"), Some(phc)).await.unwrap());
        assert!(!passwords.verify(secret("anything"), None).await.unwrap(), "the dummy never matches");
        assert_eq!(passwords.verifications(), 4);
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded_at_once() {
        let passwords = Arc::new(passwords(&Argon2Settings { memory_kib: 8192, iterations: 3, ..fast() }).unwrap());
        // One thread busy, one job queued: the rest must be refused, not queued.
        let attempts = (0..8).map(|_| {
            let passwords = Arc::clone(&passwords);
            tokio::spawn(async move { passwords.hash(secret("x")).await })
        });
        let results: Vec<_> = futures::future::join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
        assert!(results.contains(&Err(PasswordError::Overloaded)), "{results:?}");
        assert!(results.iter().any(|r| r.is_ok()));
    }
}
