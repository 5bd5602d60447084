//! Tuning of the replicated store. Defaults suit a 3–5 node cluster on a LAN with local SSDs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::proposer::ProposerConfig;

/// Raft timing, log compaction and message sizes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    /// Leader heartbeat; also the AppendEntries timeout.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time in this range calls an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept below the snapshot (and below the durable store's watermark) so a
    /// briefly lagging follower catches up from the log instead of a snapshot.
    pub keep_entries: u64,
    /// Most entries in one AppendEntries request.
    pub max_payload_entries: u64,
    /// Snapshot transfer chunk size.
    pub snapshot_chunk_bytes: u64,
    /// Time allowed to send one snapshot chunk (the last one includes the install).
    pub install_snapshot_timeout_ms: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 150,
            election_timeout_min_ms: 750,
            election_timeout_max_ms: 1_500,
            snapshot_every_entries: 20_000,
            keep_entries: 2_000,
            max_payload_entries: 64,
            snapshot_chunk_bytes: 2 * 1024 * 1024,
            install_snapshot_timeout_ms: 30_000,
        }
    }
}

/// How the leader copies state into the durable snapshot store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    /// Time between flushes.
    pub interval_ms: u64,
    /// Rows per SQL statement within a flush transaction.
    pub rows_per_statement: usize,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig { interval_ms: 1_000, rows_per_statement: 2_000 }
    }
}

/// Everything the store needs besides its identity, data directory and secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreTuning {
    pub raft: RaftTuning,
    pub proposer: ProposerConfig,
    pub flush: FlushConfig,
}

/// Room for headers and framing around a chunk or a batch of entries.
const BODY_SLACK: u64 = 64 * 1024;

impl StoreTuning {
    /// The largest peer request body these settings can produce.
    pub fn peer_body_limit(&self) -> usize {
        let append = self.raft.max_payload_entries * (self.proposer.max_batch_bytes as u64 + 256);
        (append.max(self.raft.snapshot_chunk_bytes) + BODY_SLACK) as usize
    }

    /// Every inconsistency, described for an operator.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let r = &self.raft;
        if r.heartbeat_ms == 0 {
            problems.push("raft.heartbeat_ms must be positive".to_string());
        }
        if r.election_timeout_min_ms < 3 * r.heartbeat_ms {
            problems.push(format!(
                "raft.election_timeout_min_ms ({}) must be at least 3 × raft.heartbeat_ms ({})",
                r.election_timeout_min_ms, r.heartbeat_ms
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            problems.push("raft.election_timeout_max_ms must exceed raft.election_timeout_min_ms".to_string());
        }
        if r.snapshot_every_entries == 0 || r.max_payload_entries == 0 || r.snapshot_chunk_bytes < 4096 {
            problems.push("raft.snapshot_every_entries and raft.max_payload_entries must be positive, raft.snapshot_chunk_bytes ≥ 4096".to_string());
        }
        let p = &self.proposer;
        if p.max_batch_txns == 0
            || p.max_in_flight == 0
            || p.overlap_batch_txns == 0
            || p.queue_capacity == 0
            || p.write_timeout_ms == 0
        {
            problems.push(
                "proposer.max_batch_txns, max_in_flight, overlap_batch_txns, queue_capacity and write_timeout_ms must \
                 be positive"
                    .to_string(),
            );
        }
        if p.max_batch_bytes < 1024 {
            problems.push("proposer.max_batch_bytes must be at least 1024".to_string());
        }
        if self.flush.interval_ms == 0 || self.flush.rows_per_statement == 0 {
            problems.push("flush.interval_ms and flush.rows_per_statement must be positive".to_string());
        }
        problems
    }

    pub(crate) fn openraft_config(&self, cluster_name: &str) -> Result<openraft::Config, openraft::ConfigError> {
        let r = &self.raft;
        openraft::Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            install_snapshot_timeout: r.install_snapshot_timeout_ms,
            max_payload_entries: r.max_payload_entries,
            snapshot_max_chunk_size: r.snapshot_chunk_bytes,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries),
            // Purging is driven by the flusher (never past the durable store's watermark).
            max_in_snapshot_log_to_keep: u64::MAX,
            purge_batch_size: 256,
            ..openraft::Config::default()
        }
        .validate()
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush.interval_ms)
    }
}
