//! Numbered SQL migrations for PostgreSQL, embedded and applied at start.
use crate::store::StoreResult;
use deadpool_postgres::Object;

/// (version, sql) in order. Append only; never edit an applied file.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("migrations/0001_init.sql"))];

/// Serializes migrations of nodes that start at the same time.
const MIGRATION_LOCK: i64 = 0x0069_706d_5f6d_6967; // "ipm_mig"

/// Applies every migration not yet applied, all in one transaction under an advisory lock.
pub async fn apply(client: &mut Object) -> StoreResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .await?;
    for (version, sql) in MIGRATIONS {
        let done: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[version],
            )
            .await?
            .get(0);
        if done {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::domain::time::now_rfc3339()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The highest migration version this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}
