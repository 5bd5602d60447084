//! The ports through which actors reach the world. `src/` implements them over the real
//! clock, the OS CSPRNG and the replicated store; tests use fakes.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::domain::Millis;
use crate::record::Record;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

pub trait Entropy: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]);
}

/// Convenience for fixed-size random values.
pub fn random<const N: usize>(entropy: &dyn Entropy) -> [u8; N] {
    let mut bytes = [0u8; N];
    entropy.fill(&mut bytes);
    bytes
}

/// A compare-and-set write: every `expect` must hold (`None`: the key is absent), then every
/// put and delete applies and every text is appended to its stream, atomically.
#[derive(Clone, Debug, Default)]
pub struct Write {
    pub expect: Vec<(String, Option<u64>)>,
    pub puts: Vec<(String, Record)>,
    pub deletes: Vec<String>,
    /// (stream, text): appended in order, each given the stream's next sequence number.
    pub appends: Vec<(String, String)>,
}

impl Write {
    pub fn expect(mut self, key: impl Into<String>, version: Option<u64>) -> Write {
        self.expect.push((key.into(), version));
        self
    }

    pub fn put(mut self, key: impl Into<String>, record: Record) -> Write {
        self.puts.push((key.into(), record));
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Write {
        self.deletes.push(key.into());
        self
    }

    pub fn append(mut self, stream: impl Into<String>, text: String) -> Write {
        self.appends.push((stream.into(), text));
        self
    }

    /// Both writes in one transaction.
    pub fn merge(mut self, other: Write) -> Write {
        self.expect.extend(other.expect);
        self.puts.extend(other.puts);
        self.deletes.extend(other.deletes);
        self.appends.extend(other.appends);
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Committed { version: u64 },
    Conflict { key: String, actual: Option<u64> },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ReplicaError {
    /// This node does not lead (any more); the write was not applied.
    #[error("not the leader")]
    NotLeader,
    /// The outcome is unknown or the store cannot take writes now (timeout, overload, no quorum).
    #[error("replicated store unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not decode.
    #[error("replicated store holds a malformed value: {0}")]
    Corrupt(String),
}

/// The replicated store, seen from the domain.
pub trait Replicator: Send + Sync + 'static {
    /// The local replica's value of `key` and its version.
    fn read(&self, key: &str) -> Result<Option<(u64, Record)>, ReplicaError>;

    /// Every live key under `prefix` in the local replica, in key order.
    fn scan(&self, prefix: &str) -> Result<Vec<(String, u64, Record)>, ReplicaError> {
        self.scan_page(prefix, None, usize::MAX)
    }

    /// Up to `limit` live keys under `prefix` that sort after `after`, in key order.
    fn scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, Record)>, ReplicaError>;

    /// Stream entries this replica holds that the durable store may not hold yet (the audit
    /// trail's backlog while the store is unreachable).
    fn stream_backlog(&self) -> usize;

    /// Proposes a compare-and-set write and waits for its outcome.
    fn write(&self, write: Write) -> BoxFuture<'static, Result<WriteOutcome, ReplicaError>>;

    /// Waits until the local replica has applied everything committed anywhere in the
    /// cluster before the call (on a follower: the leader's read index, then a local wait).
    fn catch_up(&self) -> BoxFuture<'static, Result<(), ReplicaError>>;

    /// Confirms this node leads and its replica has applied everything committed before the
    /// call (a read-index round trip). Returns the term it leads in.
    fn confirm_leadership(&self) -> BoxFuture<'static, Result<u64, ReplicaError>>;

    /// The term this node currently believes it leads in, if it believes it leads.
    fn leading_term(&self) -> Option<u64>;

    /// This node leads and holds a leader lease: a quorum acknowledged its leadership so
    /// recently that no other leader can have been elected since. Without it, a node that
    /// was paused or cut off may have been deposed without knowing, and its in-memory actor
    /// state must not answer anything.
    fn holds_lease(&self) -> bool;
}
