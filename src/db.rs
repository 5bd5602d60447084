//! The durable snapshot store for this node: Postgres or SQLite by URL, migrated at start-up.

use std::sync::Arc;

use sqlx::migrate::Migrator;
use tessera_cluster::durable::{DurableStore, PgStore, SqliteStore, StoreError};

use crate::audit::store::AuditStore;

static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connects to `url` and brings its schema up to date; also returns the audit trail's view of
/// the same database. Must run on the Raft runtime: the pools are used only there.
pub async fn connect(url: &str, rows_per_statement: usize) -> Result<(Arc<dyn DurableStore>, AuditStore), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url, rows_per_statement).await?;
        POSTGRES.run(store.pool()).await?;
        let audit = AuditStore::over_postgres(store.pool().clone());
        Ok((Arc::new(store), audit))
    } else {
        let store = SqliteStore::connect(url, rows_per_statement).await?;
        SQLITE.run(store.pool()).await?;
        let audit = AuditStore::over_sqlite(url, store.pool().clone()).await?;
        Ok((Arc::new(store), audit))
    }
}
