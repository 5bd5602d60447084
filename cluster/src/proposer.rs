//! The proposer: one task in front of `Raft::client_write` that batches transactions.
//!
//! openraft 0.9 awaits the leader's log flush inline for every `client_write`, and drains up
//! to a thousand API messages before it looks at timers or replication acks. One entry per
//! request therefore turns a burst of writes into a burst of fsyncs that starves heartbeats
//! until followers call an election. Instead, callers queue transactions here; the task packs
//! everything queued (bounded by count and bytes) into one `Command::Txns` entry, keeps at most
//! `max_in_flight` entries outstanding, and hands every caller its own outcome.
//!
//! ```text
//!  caller ─try_send─►[ bounded queue ]──► batch ≤ N txns / B bytes ──► client_write ──► outcomes
//!     ▲   full? → Overloaded at once                      (≤ max_in_flight entries)        │
//!     └──────────────────────────── oneshot, or Timeout after write_timeout ◄──────────────┘
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::types::{Applied, Command, NodeId, NodeInfo, Raft, RawOp, RawTxn, TxnOutcome};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProposerConfig {
    /// Most transactions packed into one log entry.
    pub max_batch_txns: usize,
    /// Most encoded bytes in one log entry (bounds peer request bodies).
    pub max_batch_bytes: usize,
    /// Entries proposed but not yet applied.
    pub max_in_flight: usize,
    /// Transactions that must be waiting before an entry is proposed while another is in
    /// flight (1: propose whenever a slot is free).
    pub overlap_batch_txns: usize,
    /// Transactions waiting for a batch; beyond it callers get `Overloaded` at once.
    pub queue_capacity: usize,
    /// How long a caller waits for its outcome before giving up with `Timeout`.
    pub write_timeout_ms: u64,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            max_batch_txns: 512,
            max_batch_bytes: 256 * 1024,
            max_in_flight: 2,
            overlap_batch_txns: 64,
            queue_capacity: 8192,
            write_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// The queue is full: retry later (503 + Retry-After at the edge).
    #[error("the proposer queue is full")]
    Overloaded,
    /// This node is not the leader; `leader` is who is, if known.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    /// No outcome within the write timeout: the transaction may or may not commit.
    #[error("no outcome within the write timeout")]
    Timeout,
    /// The transaction alone exceeds the entry size limit.
    #[error("transaction of {size} bytes exceeds the {limit}-byte entry limit")]
    TooLarge { size: usize, limit: usize },
    /// Raft is shutting down or has stopped.
    #[error("raft is not running: {0}")]
    Stopped(String),
}

struct Pending {
    txn: RawTxn,
    size: usize,
    reply: oneshot::Sender<Result<TxnOutcome, ProposeError>>,
}

/// Counters for the operator view.
#[derive(Default)]
pub struct ProposerStats {
    entries: AtomicU64,
    txns: AtomicU64,
    recent: Mutex<VecDeque<usize>>,
}

const RECENT_BATCHES: usize = 32;

impl ProposerStats {
    fn record(&self, batch: usize) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.txns.fetch_add(batch as u64, Ordering::Relaxed);
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_BATCHES {
            recent.pop_front();
        }
        recent.push_back(batch);
    }

    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn txns(&self) -> u64 {
        self.txns.load(Ordering::Relaxed)
    }

    /// Sizes of the most recent batches, oldest first.
    pub fn recent_batches(&self) -> Vec<usize> {
        self.recent.lock().iter().copied().collect()
    }
}

/// A pause on new log entries while a leadership transfer lets its target catch up, shared by
/// the proposer and the flusher's compaction entries. It lapses by itself.
#[derive(Clone, Default)]
pub struct Pause(Arc<parking_lot::Mutex<Option<Instant>>>);

impl Pause {
    pub fn set(&self, duration: Duration) {
        *self.0.lock() = (!duration.is_zero()).then(|| Instant::now() + duration);
    }

    pub fn active(&self) -> bool {
        self.0.lock().is_some_and(|until| until > Instant::now())
    }
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    stats: Arc<ProposerStats>,
    /// While active, no new entry is proposed; queued transactions wait.
    pause: Pause,
    /// One permit per entry in flight.
    slots: Arc<Semaphore>,
    /// Signalled by callers once `overlap_batch_txns` transactions are queued.
    backlog: Arc<Notify>,
    overlap: usize,
    max_in_flight: u32,
    max_bytes: usize,
    write_timeout: Duration,
}

/// Approximate encoded size; exact enough to bound entry bodies.
fn txn_size(txn: &RawTxn) -> usize {
    let compares: usize = txn.compares.iter().map(|c| c.key.len() + 12).sum();
    let ops: usize = txn
        .ops
        .iter()
        .map(|op| match op {
            RawOp::Put { key, value } => key.len() + value.len() + 12,
            RawOp::Delete { key } => key.len() + 4,
            RawOp::Append { stream, text } => stream.len() + text.len() + 12,
        })
        .sum();
    compares + ops + 8
}

impl Proposer {
    /// Spawns the proposer task on the current tokio runtime (the Raft runtime).
    pub fn spawn(raft: Raft, config: &ProposerConfig) -> Proposer {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(ProposerStats::default());
        let pause = Pause::default();
        let max_in_flight = config.max_in_flight.max(1);
        let slots = Arc::new(Semaphore::new(max_in_flight));
        let backlog = Arc::new(Notify::new());
        let signals = Signals { slots: Arc::clone(&slots), backlog: Arc::clone(&backlog) };
        tokio::spawn(run(raft, rx, config.clone(), Arc::clone(&stats), pause.clone(), signals));
        Proposer {
            tx,
            stats,
            pause,
            slots,
            backlog,
            overlap: config.overlap_batch_txns.max(1),
            max_in_flight: max_in_flight as u32,
            max_bytes: config.max_batch_bytes,
            write_timeout: Duration::from_millis(config.write_timeout_ms),
        }
    }

    /// Queues `txn` and waits for its outcome.
    pub async fn propose(&self, txn: RawTxn) -> Result<TxnOutcome, ProposeError> {
        let size = txn_size(&txn);
        if size > self.max_bytes {
            return Err(ProposeError::TooLarge { size, limit: self.max_bytes });
        }
        let (reply, outcome) = oneshot::channel();
        self.tx.try_send(Pending { txn, size, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped("proposer stopped".into()),
        })?;
        // Enough queued for a second entry to be worth its flush (see the module docs).
        if self.queue_depth() >= self.overlap {
            self.backlog.notify_one();
        }
        match tokio::time::timeout(self.write_timeout, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Stopped("proposer dropped the request".into())),
            Err(_) => Err(ProposeError::Timeout),
        }
    }

    /// Stops proposing new entries for `duration` (zero: resumes now) and waits, at most that
    /// long, until the entries already proposed have been appended and answered; returns
    /// whether they were. New transactions queue (and time out as usual if the pause outlasts
    /// their write timeout).
    pub async fn pause(&self, duration: Duration) -> bool {
        self.pause.set(duration);
        if duration.is_zero() {
            return true;
        }
        matches!(tokio::time::timeout(duration, self.slots.acquire_many(self.max_in_flight)).await, Ok(Ok(_)))
    }

    /// The pause, for other writers that must respect it.
    pub fn pause_handle(&self) -> Pause {
        self.pause.clone()
    }

    /// Transactions waiting for a batch.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn stats(&self) -> &ProposerStats {
        &self.stats
    }
}

/// What wakes the proposer while an entry is in flight.
struct Signals {
    /// One permit per entry in flight.
    slots: Arc<Semaphore>,
    /// Callers signal when enough is queued for another entry.
    backlog: Arc<Notify>,
}

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    config: ProposerConfig,
    stats: Arc<ProposerStats>,
    pause: Pause,
    Signals { slots, backlog }: Signals,
) {
    // Taken from the queue, not proposed yet (in arrival order).
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    // Signalled whenever an entry in flight finishes.
    let done = Arc::new(Notify::new());
    let max_in_flight = config.max_in_flight.max(1);
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(pending) => waiting.push_back(pending),
                None => return,
            }
        }
        while pause.active() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let in_flight = max_in_flight - slots.available_permits().min(max_in_flight);
        if in_flight > 0 && waiting.len() + rx.len() < config.overlap_batch_txns {
            tokio::select! {
                _ = done.notified() => {}
                _ = backlog.notified() => {}
            }
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // A pause that began while waiting for the slot (it drains every slot) wins.
        if pause.active() {
            drop(slot);
            continue;
        }
        let mut bytes = 0;
        let mut batch = Vec::new();
        while batch.len() < config.max_batch_txns {
            let Some(next) = waiting.pop_front().or_else(|| rx.try_recv().ok()) else { break };
            if !batch.is_empty() && bytes + next.size > config.max_batch_bytes {
                waiting.push_front(next);
                break;
            }
            bytes += next.size;
            batch.push(next);
        }
        // Callers that gave up already reported "unknown outcome"; proposing their
        // transaction anyway would be correct, skipping it is cheaper.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        stats.record(batch.len());
        let (raft, done) = (raft.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let _slot = slot;
            let (txns, replies): (Vec<RawTxn>, Vec<_>) = batch.into_iter().map(|p| (p.txn, p.reply)).unzip();
            let count = txns.len();
            match raft.client_write(Command::Txns(txns)).await {
                Ok(response) => match response.data {
                    Applied::Txns(outcomes) if outcomes.len() == count => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    other => {
                        tracing::error!(?other, "state machine answered a batch with the wrong shape");
                        fail_all(replies, ProposeError::Stopped("unexpected apply result".into()));
                    }
                },
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    let leader = forward.leader_id.zip(forward.leader_node);
                    fail_all(replies, ProposeError::NotLeader { leader });
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    fail_all(replies, ProposeError::Stopped(e.to_string()));
                }
                Err(RaftError::Fatal(fatal)) => fail_all(replies, ProposeError::Stopped(fatal.to_string())),
            }
            drop(_slot);
            done.notify_one();
        });
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<TxnOutcome, ProposeError>>>, error: ProposeError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}
