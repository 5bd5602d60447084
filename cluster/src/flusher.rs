//! The background task that keeps the durable snapshot store and the Raft log in step.
//!
//! Every `flush.interval_ms`, on every node:
//! - the leader writes every change above the store's watermark (values converted to JSON) in
//!   one transaction that advances the watermark, then proposes `Compact { upto }` so every
//!   replica can drop the tombstones the store now reflects;
//! - followers only check that the store answers (readiness);
//! - every node purges its Raft log below `min(local snapshot, store watermark) − keep`, so a
//!   log entry disappears only once both the local snapshot and the store hold its effect.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::durable::{Batch, DurableStore, FlushOutcome, Row, StoreMeta};
use crate::kv::DirtyRow;
use crate::proposer::Pause;
use crate::state_machine::Shared;
use crate::store::StoreValue;
use crate::types::{Command, NodeId, Raft, Version};
use crate::{codec, durable};

/// What the operator view shows about the durable store.
#[derive(Clone, Debug)]
pub(crate) struct FlushState {
    /// Highest index this node knows the store holds.
    pub flushed: Version,
    pub last_flush: Option<Instant>,
    /// When the store last held everything this node had applied.
    pub caught_up_at: Instant,
    /// On a follower: the watermark at `caught_up_at`.
    pub followed_watermark: Version,
    pub reachable: bool,
    pub last_error: Option<String>,
}

/// What a flush achieved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flushed {
    /// Highest index the store now holds.
    pub held: Version,
    /// Whether rows were written (then a compaction is worth proposing).
    pub wrote_rows: bool,
}

const COMPACT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Flusher<V> {
    node_id: NodeId,
    raft: Raft,
    sm: Arc<Shared>,
    store: Arc<dyn DurableStore>,
    keep_entries: u64,
    /// A leadership transfer's pause on new entries: no compaction entry meanwhile.
    pause: Pause,
    pub state: Mutex<FlushState>,
    /// Serializes periodic and on-demand flushes.
    running: tokio::sync::Mutex<()>,
    stop: Notify,
    stopping: std::sync::atomic::AtomicBool,
    _value: PhantomData<fn() -> V>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Store(#[from] durable::StoreError),
    #[error("value of {key} cannot be converted to JSON: {reason}")]
    Convert { key: String, reason: String },
    #[error("conversion task failed: {0}")]
    Task(String),
}

impl<V: StoreValue> Flusher<V> {
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        sm: Arc<Shared>,
        store: Arc<dyn DurableStore>,
        keep_entries: u64,
        pause: Pause,
    ) -> Self {
        let flushed = sm.state.read().watermark();
        Flusher {
            node_id,
            raft,
            sm,
            store,
            keep_entries,
            pause,
            state: Mutex::new(FlushState {
                flushed,
                last_flush: None,
                caught_up_at: Instant::now(),
                followed_watermark: flushed,
                reachable: true,
                last_error: None,
            }),
            running: tokio::sync::Mutex::new(()),
            stop: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            _value: PhantomData,
        }
    }

    /// Ends the loop; a tick in progress skips its remaining Raft calls.
    pub fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.notify_one();
    }

    /// Runs until `stop` is called.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.stop.notified() => return,
            }
            self.tick().await;
        }
    }

    async fn tick(&self) {
        let leading = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
        };
        let result = if leading {
            self.flush().await
        } else {
            self.follow();
            self.store.ping().await.map(|()| Flushed::default()).map_err(FlushError::from)
        };
        {
            let mut state = self.state.lock();
            state.reachable = result.is_ok();
            state.last_error = result.as_ref().err().map(|e| e.to_string());
        }
        match result {
            // After this tick's rows, or when the replicas still hold what a flush made outside
            // the loop (`ClusterNode::flush`) already stored. (Not after every flush: the
            // compaction is an entry of its own, which the next flush would store again.)
            Ok(Flushed { held, wrote_rows }) if wrote_rows || self.sm.state.read().compactable(held) => {
                self.compact(held).await
            }
            Ok(Flushed { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "snapshot store flush failed; will retry"),
        }
        self.purge_log().await;
    }

    /// On a follower, which flushes nothing: the store is caught up with this replica when the
    /// leader's compaction entries say it holds more than before, or when nothing waits for it
    /// (no dirty key, no pending stream entry).
    fn follow(&self) {
        let (watermark, clean) = {
            let state = self.sm.state.read();
            (state.watermark(), state.nothing_to_flush())
        };
        let mut state = self.state.lock();
        if clean || watermark > state.followed_watermark {
            state.followed_watermark = watermark;
            state.caught_up_at = Instant::now();
        }
    }

    /// Writes everything applied so far to the store (no Raft write, so it also works without
    /// a quorum, e.g. during shutdown).
    pub async fn flush(&self) -> Result<Flushed, FlushError> {
        let _running = self.running.lock().await;
        let flushed = self.state.lock().flushed;
        let (applied, membership, dirty, entries, heads) = {
            let state = self.sm.state.read();
            (
                state.last_applied(),
                state.membership().clone(),
                state.dirty_rows(flushed),
                state.stream_rows(flushed),
                state.stream_heads(),
            )
        };
        let Some(applied) = applied else {
            return Ok(Flushed { held: flushed, wrote_rows: false });
        };
        if applied.index <= flushed {
            self.state.lock().caught_up_at = Instant::now();
            return Ok(Flushed { held: flushed, wrote_rows: false });
        }
        let had_rows = !dirty.is_empty() || !entries.is_empty();
        let rows = tokio::task::spawn_blocking(move || to_rows::<V>(dirty))
            .await
            .map_err(|e| FlushError::Task(e.to_string()))??;
        let count = rows.len() + entries.len();
        let batch = Batch { rows, entries, heads };
        let outcome = self.store.flush_batch(batch, StoreMeta { applied, membership }).await?;
        let now_held = match outcome {
            FlushOutcome::Written => applied.index,
            FlushOutcome::AlreadyAhead { stored } => stored.max(applied.index),
        };
        {
            let mut state = self.state.lock();
            state.flushed = now_held;
            state.last_flush = Some(Instant::now());
            state.caught_up_at = Instant::now();
        }
        tracing::debug!(rows = count, upto = applied.index, ?outcome, "flushed to the snapshot store");
        Ok(Flushed { held: now_held, wrote_rows: had_rows })
    }

    /// Lets every replica drop the tombstones the store now reflects and trim its dirty set.
    /// One small entry per flush, straight to Raft rather than through the proposer (whose
    /// queue and overload signal are for client transactions). Best effort and bounded in
    /// time: without a quorum or during a leadership transfer it gives up, and the next flush
    /// proposes it again.
    async fn compact(&self, upto: Version) {
        if self.pause.active() {
            return;
        }
        let write = self.raft.client_write(Command::Compact { upto });
        match tokio::time::timeout(COMPACT_TIMEOUT, write).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "compact proposal failed"),
            Err(_) => tracing::debug!("compact proposal timed out"),
        }
    }

    async fn purge_log(&self) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (watermark, snapshot) = {
            let state = self.sm.state.read();
            (state.watermark(), self.sm.current_snapshot().and_then(|m| m.last_log_id).map(|l| l.index))
        };
        let Some(snapshot) = snapshot else { return };
        let upto = watermark.min(snapshot).saturating_sub(self.keep_entries);
        if upto > 0
            && let Err(e) = self.raft.trigger().purge_log(upto).await
        {
            tracing::debug!(error = %e, "log purge not scheduled");
        }
    }
}

fn to_rows<V: StoreValue>(dirty: Vec<DirtyRow>) -> Result<Vec<Row>, FlushError> {
    dirty
        .into_iter()
        .map(|row| {
            let json = match &row.value {
                None => None,
                Some(bytes) => {
                    let value: V = codec::decode(bytes)
                        .map_err(|e| FlushError::Convert { key: row.key.clone(), reason: e.to_string() })?;
                    Some(
                        serde_json::to_string(&value)
                            .map_err(|e| FlushError::Convert { key: row.key.clone(), reason: e.to_string() })?,
                    )
                }
            };
            Ok(Row { key: row.key, version: row.version, json })
        })
        .collect()
}
