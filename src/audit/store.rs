//! The audit trail in the snapshot store: the flushed entries of the `audit` stream
//! (`stream_entries`, read as the `audit_events` view), the checkpoints, the heads and the purge
//! anchor. Reads for the admin query and `tessera audit verify`, and the retention purge.
//!
//! One SQL text serves Postgres and SQLite where they agree (both bind `$1`); the JSON field
//! expressions differ and match the indexes of the `create_audit_views` migration exactly.
//! Must run on the runtime that opened it (the Raft runtime in a node).

use std::str::FromStr;

use futures::TryStreamExt;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tessera_cluster::durable::StoreError;

use super::checkpoint;

/// One stored entry of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    pub text: String,
}

impl From<tessera_cluster::StreamEntry> for Entry {
    /// An entry the replica still holds, as the store will hold it.
    fn from(e: tessera_cluster::StreamEntry) -> Entry {
        Entry { seq: e.seq, prev: e.prev, hash: e.hash, text: e.text }
    }
}

/// Which events a page holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub user_id: Option<String>,
    pub action: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<u64>,
    /// Only entries after this `seq`.
    pub after: u64,
    pub limit: usize,
}

impl Filter {
    /// Whether an entry's parsed record passes the filter (for entries not in the store yet).
    pub fn admits(&self, seq: u64, record: &serde_json::Value) -> bool {
        let text = |name: &str| record.get(name).and_then(serde_json::Value::as_str);
        let at = record.get("at").and_then(serde_json::Value::as_u64).unwrap_or(0);
        seq > self.after
            && self.user_id.as_deref().is_none_or(|u| text("user_id") == Some(u))
            && self.action.as_deref().is_none_or(|a| text("action") == Some(a))
            && self.since.is_none_or(|s| at >= s)
            && self.until.is_none_or(|u| at < u)
    }
}

/// Everything `tessera audit verify` reads, from one consistent snapshot of the store.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Where the kept part of the audit stream begins: `(first_seq, prev_hash)`.
    pub anchor: Option<(u64, [u8; 32])>,
    pub checkpoints: Vec<Entry>,
    /// `(last_seq, hash)` of the audit stream and of the checkpoint stream, as last flushed.
    pub audit_head: Option<(u64, [u8; 32])>,
    pub checkpoints_head: Option<(u64, [u8; 32])>,
}

#[derive(Clone, Copy)]
enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The expression for a top-level text field of the record (`name` is one of ours).
    fn field(self, name: &'static str) -> String {
        match self {
            Dialect::Postgres => format!("((text::jsonb)->>'{name}')"),
            Dialect::Sqlite => format!("json_extract(text, '$.{name}')"),
        }
    }

    fn at(self) -> &'static str {
        match self {
            Dialect::Postgres => "((text::jsonb)->>'at')::bigint",
            Dialect::Sqlite => "json_extract(text, '$.at')",
        }
    }
}

#[derive(Clone)]
enum Pools {
    Postgres(PgPool),
    /// Readers on their own connections, so a long read never holds the one writer.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
}

/// The same code over whichever pool: `$pool` is bound to the concrete pool in each arm.
macro_rules! on {
    ($pools:expr, read $pool:ident => $body:expr) => {
        match $pools {
            Pools::Postgres($pool) => $body,
            Pools::Sqlite { read: $pool, .. } => $body,
        }
    };
    ($pools:expr, write $pool:ident => $body:expr) => {
        match $pools {
            Pools::Postgres($pool) => $body,
            Pools::Sqlite { write: $pool, .. } => $body,
        }
    };
}

/// The audit trail's tables.
#[derive(Clone)]
pub struct AuditStore {
    pools: Pools,
}

fn hash(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Malformed("a stream hash is not 32 bytes".into()))
}

fn entry((seq, prev, hash_bytes, text): (i64, Vec<u8>, Vec<u8>, String)) -> Result<Entry, StoreError> {
    Ok(Entry { seq: seq as u64, prev: hash(prev)?, hash: hash(hash_bytes)?, text })
}

fn head(row: Option<(i64, Vec<u8>)>) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    row.map(|(seq, bytes)| Ok((seq as u64, hash(bytes)?))).transpose()
}

const ENTRIES: &str =
    "SELECT seq, prev_hash, hash, text FROM stream_entries WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const HEAD: &str = "SELECT last_seq, hash FROM stream_heads WHERE stream = $1";
const ANCHOR: &str = "SELECT first_seq, prev_hash FROM stream_anchors WHERE stream = $1";

impl AuditStore {
    /// Over a node's own snapshot-store pool (Postgres: shared; SQLite: `write` is the store's
    /// one writer, and readers get their own connections).
    pub fn over_postgres(pool: PgPool) -> AuditStore {
        AuditStore { pools: Pools::Postgres(pool) }
    }

    pub async fn over_sqlite(url: &str, write: SqlitePool) -> Result<AuditStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?.read_only(true);
        let read = SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        Ok(AuditStore { pools: Pools::Sqlite { read, write } })
    }

    /// Opens the store at `url` for reading and purging (the command line; no migration).
    pub async fn connect(url: &str) -> Result<AuditStore, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AuditStore { pools: Pools::Postgres(PgPoolOptions::new().max_connections(2).connect(url).await?) })
        } else {
            let write =
                SqlitePoolOptions::new().max_connections(1).connect_with(SqliteConnectOptions::from_str(url)?).await?;
            AuditStore::over_sqlite(url, write).await
        }
    }

    fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Postgres(_) => Dialect::Postgres,
            Pools::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// Up to `filter.limit` flushed audit entries that pass `filter`, in `seq` order, and the
    /// last `seq` the store holds (entries after it are still only in the replicas).
    ///
    /// The head is read first and the entries are bounded by it: a flush commits its entries
    /// and the head together, so every entry up to that head is there to read, and a flush
    /// committed between the two reads adds nothing past the head returned. (Read the other
    /// way round, a flush in between would return a head past entries that were not read —
    /// the caller would then skip them.)
    pub async fn page(&self, filter: &Filter) -> Result<(Vec<Entry>, u64), StoreError> {
        let dialect = self.dialect();
        let mut sql =
            String::from("SELECT seq, prev_hash, hash, text FROM stream_entries WHERE stream = 'audit' AND seq > $1");
        let mut n = 1;
        let mut next = |sql: &mut String, condition: String| {
            n += 1;
            sql.push_str(&format!(" AND {condition} ${n}"));
        };
        if filter.user_id.is_some() {
            next(&mut sql, format!("{} =", dialect.field("user_id")));
        }
        if filter.action.is_some() {
            next(&mut sql, format!("{} =", dialect.field("action")));
        }
        if filter.since.is_some() {
            next(&mut sql, format!("{} >=", dialect.at()));
        }
        if filter.until.is_some() {
            next(&mut sql, format!("{} <", dialect.at()));
        }
        sql.push_str(&format!(" AND seq <= ${} ORDER BY seq LIMIT ${}", n + 1, n + 2));
        on!(&self.pools, read pool => {
            let stored: Option<(i64, Vec<u8>)> = sqlx::query_as(HEAD).bind("audit").fetch_optional(pool).await?;
            let stored = head(stored)?.map_or(0, |(seq, _)| seq);
            let mut query = sqlx::query_as::<_, (i64, Vec<u8>, Vec<u8>, String)>(&sql).bind(filter.after as i64);
            for text in [&filter.user_id, &filter.action].into_iter().flatten() {
                query = query.bind(text.clone());
            }
            for at in [filter.since, filter.until].into_iter().flatten() {
                query = query.bind(at as i64);
            }
            let rows = query.bind(stored as i64).bind(filter.limit as i64).fetch_all(pool).await?;
            let entries = rows.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
            Ok((entries, stored))
        })
    }

    /// Reads the anchor, the checkpoints and both heads, then hands every audit entry to
    /// `visit` in `seq` order, all in one read-only transaction (a consistent snapshot while
    /// the leader keeps flushing).
    pub async fn scan<E>(
        &self,
        mut visit: impl FnMut(&Snapshot, Entry) -> Result<(), E>,
    ) -> Result<Result<Snapshot, E>, StoreError> {
        on!(&self.pools, read pool => {
            let mut tx = pool.begin().await?;
            if matches!(self.pools, Pools::Postgres(_)) {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
            }
            let anchor: Option<(i64, Vec<u8>)> = sqlx::query_as(ANCHOR).bind("audit").fetch_optional(&mut *tx).await?;
            let audit_head: Option<(i64, Vec<u8>)> = sqlx::query_as(HEAD).bind("audit").fetch_optional(&mut *tx).await?;
            let checkpoints_head: Option<(i64, Vec<u8>)> =
                sqlx::query_as(HEAD).bind(checkpoint::STREAM).fetch_optional(&mut *tx).await?;
            let checkpoints: Vec<(i64, Vec<u8>, Vec<u8>, String)> = sqlx::query_as(ENTRIES)
                .bind(checkpoint::STREAM)
                .bind(0i64)
                .bind(i64::MAX)
                .fetch_all(&mut *tx)
                .await?;
            let snapshot = Snapshot {
                anchor: head(anchor)?,
                checkpoints: checkpoints.into_iter().map(entry).collect::<Result<_, _>>()?,
                audit_head: head(audit_head)?,
                checkpoints_head: head(checkpoints_head)?,
            };
            let mut rows = sqlx::query_as::<_, (i64, Vec<u8>, Vec<u8>, String)>(ENTRIES)
                .bind("audit")
                .bind(0i64)
                .bind(i64::MAX)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                if let Err(bad) = visit(&snapshot, entry(row)?) {
                    return Ok(Err(bad));
                }
            }
            drop(rows);
            tx.rollback().await?;
            Ok(Ok(snapshot))
        })
    }

    /// Up to `limit` stored entries of `stream` after `after`, in order.
    pub async fn stream_page(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        on!(&self.pools, read pool => {
            let rows: Vec<(i64, Vec<u8>, Vec<u8>, String)> =
                sqlx::query_as(ENTRIES).bind(stream).bind(after as i64).bind(limit.min(i64::MAX as usize) as i64).fetch_all(pool).await?;
            rows.into_iter().map(entry).collect()
        })
    }

    /// The last `seq` purged (0: none).
    pub async fn purged_through(&self) -> Result<u64, StoreError> {
        on!(&self.pools, read pool => {
            let anchor: Option<(i64, Vec<u8>)> = sqlx::query_as(ANCHOR).bind("audit").fetch_optional(pool).await?;
            Ok(anchor.map_or(0, |(first, _)| first as u64 - 1))
        })
    }

    /// Deletes the audit entries up to and including `upto` (a checkpointed `seq` whose hash
    /// is `hash`) and records the anchor `(upto + 1, hash)`, in one transaction. Returns how
    /// many rows went. Does nothing past what the store holds.
    pub async fn purge(&self, upto: u64, hash: &[u8; 32]) -> Result<u64, StoreError> {
        on!(&self.pools, write pool => {
            let mut tx = pool.begin().await?;
            let stored: Option<(i64, Vec<u8>)> = sqlx::query_as(HEAD).bind("audit").fetch_optional(&mut *tx).await?;
            if head(stored)?.is_none_or(|(last, _)| last < upto) {
                return Ok(0);
            }
            let gone = sqlx::query("DELETE FROM stream_entries WHERE stream = 'audit' AND seq <= $1")
                .bind(upto as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "INSERT INTO stream_anchors (stream, first_seq, prev_hash) VALUES ('audit', $1, $2) \
                 ON CONFLICT (stream) DO UPDATE SET first_seq = excluded.first_seq, prev_hash = excluded.prev_hash",
            )
            .bind(upto as i64 + 1)
            .bind(hash.to_vec())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(gone)
        })
    }
}

/// The store with the runtime its pools belong to, for callers on another runtime (the HTTP
/// workers).
#[derive(Clone)]
pub struct AuditReader {
    pub store: AuditStore,
    pub runtime: tokio::runtime::Handle,
}

impl AuditReader {
    pub async fn stream_page(&self, stream: &'static str, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let store = self.store.clone();
        self.runtime
            .spawn(async move { store.stream_page(stream, after, limit).await })
            .await
            .map_err(|e| StoreError::Malformed(format!("the query was cancelled: {e}")))?
    }

    pub async fn page(&self, filter: Filter) -> Result<(Vec<Entry>, u64), StoreError> {
        let store = self.store.clone();
        self.runtime
            .spawn(async move { store.page(&filter).await })
            .await
            .map_err(|e| StoreError::Malformed(format!("the audit query was cancelled: {e}")))?
    }
}
