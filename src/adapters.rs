//! The actors' ports, implemented over the real world: the system clock, the OS CSPRNG and
//! the replicated store. This module and `startup` are the only places that know both the
//! domain (`tessera-actors`) and replication (`tessera-cluster`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use rand::RngCore;
use tessera_actors::Record;
use tessera_actors::domain::Millis;
use tessera_actors::ports::{Clock, Entropy, ReplicaError, Replicator, Write, WriteOutcome};
use tessera_cluster::{ClusterNode, ConfirmError, ProposeError, Txn, TxnOutcome};

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
    }
}

/// A CSPRNG per thread (`rand`'s `ThreadRng`: ChaCha12, seeded from the operating system and
/// reseeded from it every 64 KiB of output and after a fork), so ids, salts and keys cost no
/// system call each.
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, dest: &mut [u8]) {
        rand::thread_rng().fill_bytes(dest);
    }
}

/// Longest wait for this replica to catch up with the leader (a strong read, or a token this
/// replica has not seen yet).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// The replicated store as the actors see it.
pub struct ClusterReplicator {
    node: ClusterNode<Record>,
    /// Bound on a read-index round trip.
    confirm_timeout: Duration,
    /// How recent the quorum's acknowledgement must be for the lease to hold
    /// (`max_staleness`, at most openraft's own lease of `election_timeout_max`).
    lease: Duration,
}

impl ClusterReplicator {
    pub fn new(node: ClusterNode<Record>, confirm_timeout: Duration, lease: Duration) -> ClusterReplicator {
        ClusterReplicator { node, confirm_timeout, lease }
    }
}

fn corrupt(e: impl std::fmt::Display) -> ReplicaError {
    ReplicaError::Corrupt(e.to_string())
}

impl Replicator for ClusterReplicator {
    fn read(&self, key: &str) -> Result<Option<(u64, Record)>, ReplicaError> {
        Ok(self.node.get(key).map_err(corrupt)?.map(|v| (v.version, v.value)))
    }

    fn scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, Record)>, ReplicaError> {
        let page = self.node.scan_prefix_page(prefix, after, limit).map_err(corrupt)?;
        Ok(page.into_iter().map(|(k, v)| (k, v.version, v.value)).collect())
    }

    fn stream_backlog(&self) -> usize {
        self.node.stream_backlog()
    }

    fn write(&self, write: Write) -> BoxFuture<'static, Result<WriteOutcome, ReplicaError>> {
        let node = self.node.clone();
        async move {
            let mut txn = Txn::<Record>::new();
            for (key, version) in write.expect {
                txn = txn.expect(key, version);
            }
            for (key, record) in &write.puts {
                txn = txn.put(key.clone(), record).map_err(corrupt)?;
            }
            for key in write.deletes {
                txn = txn.delete(key);
            }
            for (stream, text) in write.appends {
                txn = txn.append(stream, text);
            }
            match node.propose(txn).await {
                Ok(TxnOutcome::Committed { version }) => Ok(WriteOutcome::Committed { version }),
                Ok(TxnOutcome::Conflict { key, actual }) => Ok(WriteOutcome::Conflict { key, actual }),
                Err(ProposeError::NotLeader { .. }) => Err(ReplicaError::NotLeader),
                Err(e @ (ProposeError::Overloaded | ProposeError::Timeout | ProposeError::Stopped(_))) => {
                    Err(ReplicaError::Unavailable(e.to_string()))
                }
                Err(e @ ProposeError::TooLarge { .. }) => Err(ReplicaError::Corrupt(e.to_string())),
            }
        }
        .boxed()
    }

    fn catch_up(&self) -> BoxFuture<'static, Result<(), ReplicaError>> {
        let node = self.node.clone();
        async move {
            node.linearize(CATCH_UP_TIMEOUT).await.map_err(|e| match e {
                ConfirmError::NotLeader => ReplicaError::NotLeader,
                ConfirmError::Unavailable(reason) => ReplicaError::Unavailable(reason),
            })
        }
        .boxed()
    }

    fn confirm_leadership(&self) -> BoxFuture<'static, Result<u64, ReplicaError>> {
        let node = self.node.clone();
        let timeout = self.confirm_timeout;
        async move {
            node.confirm_leadership(timeout).await.map_err(|e| match e {
                ConfirmError::NotLeader => ReplicaError::NotLeader,
                ConfirmError::Unavailable(reason) => ReplicaError::Unavailable(reason),
            })
        }
        .boxed()
    }

    fn leading_term(&self) -> Option<u64> {
        self.node.leading_term()
    }

    fn holds_lease(&self) -> bool {
        self.node.leading_term().is_some() && self.node.staleness().is_some_and(|age| age <= self.lease)
    }
}
