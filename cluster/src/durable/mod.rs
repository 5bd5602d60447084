//! The durable snapshot store: a relational copy of the replicated map, written by the leader
//! off the request path and read when a node (or a whole cluster) has lost its local disks.
//!
//! One row per live key (`kv_store`: key, version, JSON value) and one metadata row
//! (`snapshot_meta`: the watermark index with its log id and the membership at that point).
//! A flush writes every change above the watermark and advances the watermark in the same
//! transaction. Two guards keep a deposed leader from regressing the store: the transaction
//! locks the metadata row and gives up if the stored watermark is already at or above its own,
//! and every upsert only replaces a row with a lower version.
//!
//! The streams' entries (`stream_entries`) and heads (`stream_heads`) are written in the same
//! transaction, so a restore at a watermark finds every entry appended up to it and the head the
//! chain continues from.
//!
//! The schema lives in `migrations/postgres` and `migrations/sqlite`; the server runs them at
//! start-up.

mod postgres;
mod sqlite;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::kv::{StreamEntry, StreamHead};
use crate::types::{LogId, StoredMembership, Version};

/// Where the store's contents stand in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// Every change up to and including this entry is in the store.
    pub applied: LogId,
    pub membership: StoredMembership,
}

/// One change to write: `json: None` deletes the key.
#[derive(Clone, Debug)]
pub struct Row {
    pub key: String,
    pub version: Version,
    pub json: Option<String>,
}

/// A stored row as read back for a restore.
#[derive(Clone, Debug)]
pub struct StoredRow {
    pub key: String,
    pub version: Version,
    pub json: String,
}

/// Everything one flush writes, atomically with the new watermark.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub rows: Vec<Row>,
    /// Stream entries the store may not hold yet (already held ones are left as they are).
    pub entries: Vec<(String, StreamEntry)>,
    /// Where every stream stands.
    pub heads: Vec<(String, StreamHead)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushOutcome {
    Written,
    /// The store already holds this watermark or a later one; nothing was written.
    AlreadyAhead {
        stored: Version,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("snapshot store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("snapshot store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("snapshot store holds malformed data: {0}")]
    Malformed(String),
}

pub trait DurableStore: Send + Sync + 'static {
    /// `postgres` or `sqlite`, for the operator view.
    fn kind(&self) -> &'static str;

    /// A cheap round trip, for readiness.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The watermark, or `None` if nothing was ever flushed.
    fn load_meta(&self) -> BoxFuture<'_, Result<Option<StoreMeta>, StoreError>>;

    /// Every stored row, in no particular order.
    fn load_rows(&self) -> BoxStream<'_, Result<StoredRow, StoreError>>;

    /// The heads of every stream, as of the watermark.
    fn load_heads(&self) -> BoxFuture<'_, Result<Vec<(String, StreamHead)>, StoreError>>;

    /// Writes `batch` and advances the watermark to `meta`, atomically.
    fn flush_batch(&self, batch: Batch, meta: StoreMeta) -> BoxFuture<'_, Result<FlushOutcome, StoreError>>;

    /// Writes `rows` (and no stream entries) and advances the watermark to `meta`, atomically.
    fn flush(&self, rows: Vec<Row>, meta: StoreMeta) -> BoxFuture<'_, Result<FlushOutcome, StoreError>> {
        self.flush_batch(Batch { rows, ..Batch::default() }, meta)
    }
}

/// A stored hash, which must be 32 bytes.
fn hash_from(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Malformed("a stream hash is not 32 bytes".into()))
}

fn meta_from_json(applied_index: i64, json: &str) -> Result<StoreMeta, StoreError> {
    let meta: StoreMeta = serde_json::from_str(json).map_err(|e| StoreError::Malformed(e.to_string()))?;
    if meta.applied.index as i64 != applied_index {
        return Err(StoreError::Malformed(format!(
            "snapshot_meta.applied_index {applied_index} disagrees with its log id {}",
            meta.applied
        )));
    }
    Ok(meta)
}

fn meta_to_json(meta: &StoreMeta) -> String {
    serde_json::to_string(meta).expect("store metadata always serializes")
}
