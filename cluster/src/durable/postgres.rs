//! The snapshot store on Postgres: values as `jsonb`, batched with `UNNEST` arrays.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::{
    Batch, DurableStore, FlushOutcome, Row, StoreError, StoreMeta, StoredRow, hash_from, meta_from_json, meta_to_json,
};
use crate::kv::StreamHead;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    rows_per_statement: usize,
}

impl PgStore {
    pub async fn connect(url: &str, rows_per_statement: usize) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(PgStore::from_pool(pool, rows_per_statement))
    }

    pub fn from_pool(pool: PgPool, rows_per_statement: usize) -> PgStore {
        PgStore { pool, rows_per_statement: rows_per_statement.max(1) }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn flush_rows(&self, batch: Batch, meta: StoreMeta) -> Result<FlushOutcome, StoreError> {
        let Batch { rows, entries, heads } = batch;
        let mut tx = self.pool.begin().await?;
        // The row lock serializes flushers; a deposed leader that wakes up late finds a newer
        // watermark here and writes nothing.
        let stored: i64 = sqlx::query_scalar("SELECT applied_index FROM snapshot_meta WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        if stored as u64 >= meta.applied.index {
            tx.rollback().await?;
            return Ok(FlushOutcome::AlreadyAhead { stored: stored as u64 });
        }
        let (puts, deletes): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| r.json.is_some());
        for chunk in puts.chunks(self.rows_per_statement) {
            let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
            let versions: Vec<i64> = chunk.iter().map(|r| r.version as i64).collect();
            let values: Vec<&str> = chunk.iter().map(|r| r.json.as_deref().unwrap_or("null")).collect();
            sqlx::query(
                "INSERT INTO kv_store (key, version, value) \
                 SELECT k, v, j::jsonb FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS t(k, v, j) \
                 ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value \
                 WHERE kv_store.version < EXCLUDED.version",
            )
            .bind(&keys)
            .bind(&versions)
            .bind(&values)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in deletes.chunks(self.rows_per_statement) {
            let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
            let versions: Vec<i64> = chunk.iter().map(|r| r.version as i64).collect();
            sqlx::query(
                "DELETE FROM kv_store AS s USING UNNEST($1::text[], $2::int8[]) AS d(k, v) \
                 WHERE s.key = d.k AND s.version < d.v",
            )
            .bind(&keys)
            .bind(&versions)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in entries.chunks(self.rows_per_statement) {
            let streams: Vec<&str> = chunk.iter().map(|(s, _)| s.as_str()).collect();
            let seqs: Vec<i64> = chunk.iter().map(|(_, e)| e.seq as i64).collect();
            let versions: Vec<i64> = chunk.iter().map(|(_, e)| e.version as i64).collect();
            let prevs: Vec<&[u8]> = chunk.iter().map(|(_, e)| e.prev.as_slice()).collect();
            let hashes: Vec<&[u8]> = chunk.iter().map(|(_, e)| e.hash.as_slice()).collect();
            let texts: Vec<&str> = chunk.iter().map(|(_, e)| e.text.as_str()).collect();
            sqlx::query(
                "INSERT INTO stream_entries (stream, seq, version, prev_hash, hash, text) \
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::bytea[], $5::bytea[], $6::text[]) \
                 ON CONFLICT (stream, seq) DO NOTHING",
            )
            .bind(&streams)
            .bind(&seqs)
            .bind(&versions)
            .bind(&prevs)
            .bind(&hashes)
            .bind(&texts)
            .execute(&mut *tx)
            .await?;
        }
        for (stream, head) in &heads {
            sqlx::query(
                "INSERT INTO stream_heads (stream, last_seq, hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream) DO UPDATE SET last_seq = EXCLUDED.last_seq, hash = EXCLUDED.hash \
                 WHERE stream_heads.last_seq < EXCLUDED.last_seq",
            )
            .bind(stream.as_str())
            .bind(head.last as i64)
            .bind(head.hash.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE snapshot_meta SET applied_index = $1, meta = $2::jsonb, flushed_at = now() WHERE id = 1")
            .bind(meta.applied.index as i64)
            .bind(meta_to_json(&meta))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(FlushOutcome::Written)
    }
}

impl DurableStore for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
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
                sqlx::query_as("SELECT applied_index, meta::text FROM snapshot_meta WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
            match row {
                Some((index, Some(json))) if index > 0 => meta_from_json(index, &json).map(Some),
                _ => Ok(None),
            }
        })
    }

    fn load_rows(&self) -> BoxStream<'_, Result<StoredRow, StoreError>> {
        sqlx::query_as::<_, (String, i64, String)>("SELECT key, version, value::text FROM kv_store")
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
