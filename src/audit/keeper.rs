//! The leader's audit duties: signed checkpoints of the chain, and the retention purge.
//!
//! Checkpoints: every `checkpoint_every` events, or `checkpoint_interval_secs` after the last
//! one if events came since, the head `(seq, hash)` of the audit stream as this replica applied
//! it is signed and appended to `audit-checkpoints` (a replicated write, so it is flushed and
//! verified like any entry). A new leader checkpoints its head at once; a checkpoint repeated
//! for the same `seq` is harmless.
//!
//! Retention: entries are purged a checkpoint span at a time, oldest first, up to the newest
//! checkpoint signed before `now − retention_days` (so everything purged is older than that,
//! and the anchor left behind is itself a signed checkpoint that `tessera audit verify` checks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use tessera_actors::ports::{Clock, Replicator, Write};
use tessera_actors::{Record, audit};
use tessera_cluster::ClusterNode;
use tokio::sync::watch;

use super::checkpoint::{self, Checkpoint};
use super::store::AuditStore;
use crate::config::AuditSettings;

/// How often the keeper looks; how often it purges when there is nothing (left) to purge.
const TICK: Duration = Duration::from_secs(1);
const PURGE_IDLE: Duration = Duration::from_secs(60);

pub struct Keeper {
    pub cluster: ClusterNode<Record>,
    pub replica: Arc<dyn Replicator>,
    pub store: AuditStore,
    pub clock: Arc<dyn Clock>,
    pub key: SigningKey,
    pub settings: AuditSettings,
}

impl Keeper {
    /// Runs on the Raft runtime until `stop` changes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // The last checkpointed seq while leading, and when.
        let mut last: Option<(u64, Instant)> = None;
        let mut next_purge = Instant::now();
        loop {
            if self.cluster.leadership().this_node_leads {
                match self.checkpoint(last).await {
                    Ok(Some(done)) => last = Some(done),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot record an audit checkpoint yet"),
                }
                if Instant::now() >= next_purge {
                    next_purge = Instant::now()
                        + match self.purge().await {
                            Ok(0) => PURGE_IDLE,
                            Ok(gone) => {
                                metrics::counter!("tessera_audit_purged_total").increment(gone);
                                TICK
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "audit retention purge failed");
                                PURGE_IDLE
                            }
                        };
                }
            } else {
                last = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Signs and records the head if a checkpoint is due; returns what it checkpointed.
    async fn checkpoint(&self, last: Option<(u64, Instant)>) -> Result<Option<(u64, Instant)>, String> {
        let head = self.cluster.stream_head(audit::STREAM);
        let every = self.settings.checkpoint_every;
        let interval = Duration::from_secs(self.settings.checkpoint_interval_secs);
        let due = match last {
            _ if head.last == 0 => false,
            None => true,
            Some((seq, when)) => head.last >= seq + every || (head.last > seq && when.elapsed() >= interval),
        };
        if !due {
            return Ok(None);
        }
        let text = Checkpoint::sign(&self.key, head.last, &head.hash, self.clock.now().0).text();
        self.replica.write(Write::default().append(checkpoint::STREAM, text)).await.map_err(|e| e.to_string())?;
        metrics::gauge!("tessera_audit_checkpoint_seq").set(head.last as f64);
        Ok(Some((head.last, Instant::now())))
    }

    /// Purges the oldest checkpoint span older than the retention; returns how many rows went.
    async fn purge(&self) -> Result<u64, String> {
        let retention = Duration::from_secs(self.settings.retention_days.saturating_mul(86_400));
        let cutoff = self.clock.now().0.saturating_sub(retention.as_millis() as u64);
        purge_before(&self.store, &self.key.verifying_key(), cutoff).await
    }
}

/// Purges the oldest span of audit entries that a checkpoint signed before `cutoff` (Unix
/// milliseconds) covers and that is not purged yet; returns how many rows went (0: nothing
/// left to purge).
pub async fn purge_before(store: &AuditStore, key: &VerifyingKey, cutoff: u64) -> Result<u64, String> {
    let entries = store.stream_page(checkpoint::STREAM, 0, usize::MAX).await.map_err(|e| e.to_string())?;
    let purged = store.purged_through().await.map_err(|e| e.to_string())?;
    let next = entries
        .iter()
        .filter_map(|e| Checkpoint::parse(&e.text).ok())
        .filter(|c| c.at < cutoff && c.seq > purged)
        .find_map(|c| Some((c.seq, c.verify(key).ok()?)));
    match next {
        Some((seq, hash)) => store.purge(seq, &hash).await.map_err(|e| e.to_string()),
        None => Ok(0),
    }
}
