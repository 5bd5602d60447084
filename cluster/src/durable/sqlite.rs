//! The snapshot store on SQLite, the embedded default for a single node: WAL journal with
//! `synchronous = FULL`, so a committed flush survives power loss, not just a process crash.

use std::str::FromStr;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{
    Batch, DurableStore, FlushOutcome, Row, StoreError, StoreMeta, StoredRow, hash_from, meta_from_json, meta_to_json,
};
use crate::kv::StreamHead;

/// SQLite allows 32766 bound parameters per statement; three per row.
const MAX_ROWS_PER_STATEMENT: usize = 10_000;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    rows_per_statement: usize,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite:path`).
    pub async fn connect(url: &str, rows_per_statement: usize) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        // One connection: SQLite has one writer anyway, and it keeps flushes strictly ordered.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        Ok(SqliteStore::from_pool(pool, rows_per_statement))
    }

    pub fn from_pool(pool: SqlitePool, rows_per_statement: usize) -> SqliteStore {
        SqliteStore { pool, rows_per_statement: rows_per_statement.clamp(1, MAX_ROWS_PER_STATEMENT) }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn flush_rows(&self, batch: Batch, meta: StoreMeta) -> Result<FlushOutcome, StoreError> {
        let Batch { rows, entries, heads } = batch;
        let mut tx = self.pool.begin().await?;
        let stored: i64 =
            sqlx::query_scalar("SELECT applied_index FROM snapshot_meta WHERE id = 1").fetch_one(&mut *tx).await?;
        if stored as u64 >= meta.applied.index {
            tx.rollback().await?;
            return Ok(FlushOutcome::AlreadyAhead { stored: stored as u64 });
        }
        let (puts, deletes): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| r.json.is_some());
        for chunk in puts.chunks(self.rows_per_statement) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT INTO kv_store (key, version, value) ");
            insert.push_values(chunk, |mut b, row| {
                b.push_bind(row.key.as_str())
                    .push_bind(row.version as i64)
                    .push_bind(row.json.as_deref().unwrap_or("null"));
            });
            insert.push(
                " ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value \
                 WHERE kv_store.version < excluded.version",
            );
            insert.build().execute(&mut *tx).await?;
        }
        for row in &deletes {
            sqlx::query("DELETE FROM kv_store WHERE key = ?1 AND version < ?2")
                .bind(row.key.as_str())
                .bind(row.version as i64)
                .execute(&mut *tx)
                .await?;
        }
        // Six parameters per entry.
        for chunk in entries.chunks((self.rows_per_statement / 2).max(1)) {
            let mut insert: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO stream_entries (stream, seq, version, prev_hash, hash, text) ");
            insert.push_values(chunk, |mut b, (stream, entry)| {
                b.push_bind(stream.as_str())
                    .push_bind(entry.seq as i64)
                    .push_bind(entry.version as i64)
                    .push_bind(entry.prev.as_slice())
                    .push_bind(entry.hash.as_slice())
                    .push_bind(entry.text.as_str());
            });
            insert.push(" ON CONFLICT (stream, seq) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        for (stream, head) in &heads {
            sqlx::query(
                "INSERT INTO stream_heads (stream, last_seq, hash) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq, hash = excluded.hash \
                 WHERE stream_heads.last_seq < excluded.last_seq",
            )
            .bind(stream.as_str())
            .bind(head.last as i64)
            .bind(head.hash.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE snapshot_meta SET applied_index = ?1, meta = ?2, flushed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 1")
            .bind(meta.applied.index as i64)
            .bind(meta_to_json(&meta))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(FlushOutcome::Written)
    }
}

impl DurableStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn load_meta(&self) -> BoxFuture<'_, Result<Option<StoreMeta>, StoreError>> {
        Box::pin(async move {
            let row: Option<(i64, Option<String>)> =
                sqlx::query_as("SELECT applied_index, meta FROM snapshot_meta WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
            match row {
                Some((index, Some(json))) if index > 0 => meta_from_json(index, &json).map(Some),
                _ => Ok(None),
            }
        })
    }

    fn load_rows(&self) -> BoxStream<'_, Result<StoredRow, StoreError>> {
        sqlx::query_as::<_, (String, i64, String)>("SELECT key, version, value FROM kv_store")
            .fetch(&self.pool)
            .map_ok(|(key, version, json)| StoredRow { key, version: version as u64, json })
            .map_err(StoreError::from)
            .boxed()
    }

    fn load_heads(&self) -> BoxFuture<'_, Result<Vec<(String, StreamHead)>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64, Vec<u8>)> =
                sqlx::query_as("SELECT stream, last_seq, hash FROM stream_heads").fetch_all(&self.pool).await?;
            rows.into_iter()
                .map(|(stream, last, hash)| Ok((stream, StreamHead { last: last as u64, hash: hash_from(hash)? })))
                .collect()
        })
    }

    fn flush_batch(&self, batch: Batch, meta: StoreMeta) -> BoxFuture<'_, Result<FlushOutcome, StoreError>> {
        Box::pin(self.flush_rows(batch, meta))
    }
}
