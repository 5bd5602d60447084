//! The durable snapshot store for this node: Postgres or SQLite by URL, migrated at start-up.

use std::sync::Arc;

use sqlx::migrate::Migrator;
use tessera_cluster::durable::{DurableStore, PgStore, SqliteStore, StoreError};

static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connects to `url` and brings its schema up to date. Must run on the Raft runtime: the pool
/// is used only there.
pub async fn connect(url: &str, rows_per_statement: usize) -> Result<Arc<dyn DurableStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url, rows_per_statement).await?;
        POSTGRES.run(store.pool()).await?;
        Ok(Arc::new(store))
    } else {
        let store = SqliteStore::connect(url, rows_per_statement).await?;
        SQLITE.run(store.pool()).await?;
        Ok(Arc::new(store))
    }
}
