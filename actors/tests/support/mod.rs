//! Fakes for the actor ports: a settable clock, counting entropy, and an in-memory
//! compare-and-set store with the same semantics as the replicated one.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tessera_actors::domain::{KeyPolicy, LockoutPolicy, Millis, Pepper, SessionCap, SessionPolicy};
use tessera_actors::keys::{KeyMaker, SigningPolicy};
use tessera_actors::ports::{Clock, Entropy, ReplicaError, Replicator, Write, WriteOutcome};
use tessera_actors::record::SigningKey;
use tessera_actors::{ActorContext, AuditPolicy, Domain, Record, Registry, ThrottlePolicy};

pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

/// Deterministic "randomness": a counter spread over the buffer.
pub struct CountingEntropy(AtomicU64);

impl Entropy for CountingEntropy {
    fn fill(&self, dest: &mut [u8]) {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        for (i, byte) in dest.iter_mut().enumerate() {
            *byte = (n >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    pub data: Mutex<BTreeMap<String, (u64, Record)>>,
    index: AtomicU64,
    pub writes: AtomicUsize,
    /// Forces the next N writes to conflict (simulates another writer).
    pub force_conflicts: AtomicUsize,
    pub term: Mutex<Option<u64>>,
    pub confirmations: AtomicUsize,
    /// Every text appended, by stream, in order (the fake never flushes or compacts).
    pub streams: Mutex<BTreeMap<String, Vec<String>>>,
}

impl MemoryStore {
    /// Applies a write outside any actor (another leader, an operator).
    pub fn apply(&self, write: Write) -> WriteOutcome {
        let mut data = self.data.lock();
        for (key, expected) in &write.expect {
            let actual = data.get(key).map(|(v, _)| *v);
            if actual != *expected {
                return WriteOutcome::Conflict { key: key.clone(), actual };
            }
        }
        let version = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        for (key, record) in write.puts {
            data.insert(key, (version, record));
        }
        for key in write.deletes {
            data.remove(&key);
        }
        let mut streams = self.streams.lock();
        for (stream, text) in write.appends {
            streams.entry(stream).or_default().push(text);
        }
        WriteOutcome::Committed { version }
    }
}

impl Replicator for MemoryStore {
    fn read(&self, key: &str) -> Result<Option<(u64, Record)>, ReplicaError> {
        Ok(self.data.lock().get(key).cloned())
    }

    fn scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, Record)>, ReplicaError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let start = match after {
            Some(after) if after >= prefix => Excluded(after.to_string()),
            _ => Included(prefix.to_string()),
        };
        Ok(self
            .data
            .lock()
            .range((start, Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, (v, r))| (k.clone(), *v, r.clone()))
            .collect())
    }

    fn stream_backlog(&self) -> usize {
        0
    }

    fn write(&self, write: Write) -> BoxFuture<'static, Result<WriteOutcome, ReplicaError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let forced =
            self.force_conflicts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let outcome = if forced {
            let key = write.expect.first().map(|(k, _)| k.clone()).unwrap_or_default();
            WriteOutcome::Conflict { key, actual: Some(u64::MAX) }
        } else {
            self.apply(write)
        };
        // Yield once so concurrent callers really interleave at the await point.
        Box::pin(async move {
            futures::future::ready(()).await;
            Ok(outcome)
        })
    }

    fn holds_lease(&self) -> bool {
        self.term.lock().is_some()
    }

    fn catch_up(&self) -> BoxFuture<'static, Result<(), ReplicaError>> {
        Box::pin(futures::future::ready(Ok(())))
    }

    fn confirm_leadership(&self) -> BoxFuture<'static, Result<u64, ReplicaError>> {
        self.confirmations.fetch_add(1, Ordering::SeqCst);
        let term = *self.term.lock();
        Box::pin(async move { term.ok_or(ReplicaError::NotLeader) })
    }

    fn leading_term(&self) -> Option<u64> {
        *self.term.lock()
    }
}

pub fn pepper() -> Pepper {
    Pepper::new(b"actor test pepper, long enough to be a secret")
}

pub struct World {
    pub clock: Arc<FakeClock>,
    pub store: Arc<MemoryStore>,
    pub domain: Domain,
}

/// Makes keys named `k1`, `k2`, … (the sealed half is a placeholder: these tests never sign).
#[derive(Default)]
pub struct CountingKeys(pub AtomicU64);

impl KeyMaker for CountingKeys {
    fn generate(&self, now: Millis) -> SigningKey {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        SigningKey {
            kid: format!("k{n}"),
            public: [n as u8; 32],
            nonce: [0; 24],
            sealed_private: vec![0; 48],
            created_at: now,
        }
    }
}

/// A leader in term 1 with default policies. Must run inside an actix System.
pub fn world() -> World {
    world_with(|_| {})
}

/// Like [`world`], with the policies adjusted by `tune`.
pub fn world_with(tune: impl FnOnce(&mut ActorContext)) -> World {
    let clock = Arc::new(FakeClock(AtomicU64::new(1_700_000_000_000)));
    let store = Arc::new(MemoryStore::default());
    *store.term.lock() = Some(1);
    let mut cx = ActorContext {
        clock: clock.clone(),
        entropy: Arc::new(CountingEntropy(AtomicU64::new(1))),
        replicator: store.clone(),
        pepper: pepper(),
        sessions: SessionPolicy::default(),
        lockout: LockoutPolicy::default(),
        cap: SessionCap::default(),
        throttle: ThrottlePolicy::default(),
        audit: AuditPolicy { cluster_pii_key: [9; 32], max_backlog: 100_000 },
        factors: tessera_actors::factor_keys::FactorKeys::new([10; 32], [11; 32]),
        signing: SigningPolicy { maker: Arc::new(CountingKeys::default()), schedule: KeyPolicy::default() },
    };
    tune(&mut cx);
    let cx = Arc::new(cx);
    let arbiters = vec![actix::Arbiter::current(), actix::Arbiter::new().handle()];
    let registry = Arc::new(Registry::new(cx, arbiters));
    World { clock, store, domain: Domain::new(registry) }
}
