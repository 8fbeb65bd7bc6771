//! Numbered SQL migrations, embedded and applied in order at start.
use rusqlite::Connection;

/// (version, sql) in order. Append only; never edit an applied file.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (100, include_str!("migrations/0100_jobs.sql")),
    (200, include_str!("migrations/0200_webhooks.sql")),
    (300, include_str!("migrations/0300_kpis.sql")),
];

/// Applies every migration not yet applied, each in its own transaction.
pub fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let done: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if done {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, crate::domain::time::now_rfc3339()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The highest migration version this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}
