//! The event log on SQLite.
use super::SqliteStore;
use crate::domain::envelope::{render_stored, same_payload};
use crate::domain::filter::EventFilter;
use crate::domain::time::format_utc;
use crate::store::{AppendOutcome, EventLog, EventRow, StoreResult, StoredEvent};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

/// Rows deleted per purge call, so the writer is never held for long.
const PURGE_CHUNK: i64 = 10_000;

pub(crate) fn append_rows(
    c: &Connection,
    rows: Vec<EventRow>,
) -> StoreResult<(Vec<AppendOutcome>, i64)> {
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let ingested_at = format_utc(now);
    let mut seq: i64 = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let mut insert = c.prepare_cached(
        "INSERT INTO events (seq, id, org_id, event_id, occurred_at, event_type, service, channel_id,
                             facility_id, payload_hash, ingested_at, body, context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (org_id, event_id, occurred_at) DO NOTHING",
    )?;
    let mut existing =
        c.prepare_cached("SELECT id, payload_hash, body FROM events WHERE org_id = ?1 AND event_id = ?2 AND occurred_at = ?3")?;
    let mut out = Vec::with_capacity(rows.len());
    let mut fan = super::deliveries::FanOut::default();
    for r in rows {
        let next = seq + 1;
        let body = render_stored(&r.id, next, &ingested_at, &r.service, &r.rendered);
        let n = insert.execute(params![
            next,
            r.id,
            r.org_id,
            r.event_id,
            r.occurred_at,
            r.event_type,
            r.service,
            r.channel_id,
            r.facility_id,
            r.payload_hash,
            now_ms,
            body,
            r.context
        ])?;
        if n == 1 {
            seq = next;
            fan.add(c, &r, next, now_ms)?;
            out.push(AppendOutcome::Accepted {
                id: r.id,
                sequence: next,
            });
        } else {
            let (id, hash, body): (String, String, String) = existing
                .query_row(params![r.org_id, r.event_id, r.occurred_at], |x| {
                    Ok((x.get(0)?, x.get(1)?, x.get(2)?))
                })?;
            let payload_mismatch = hash != r.payload_hash && !same_payload(&body, &r.rendered);
            out.push(AppendOutcome::Duplicate {
                id,
                payload_mismatch,
            });
        }
    }
    Ok((out, seq))
}

/// Builds the CDC page query for a filter; parameters follow the SQL text.
pub(crate) fn page_query(
    org: &str,
    f: &EventFilter,
    after: i64,
    limit: usize,
) -> (String, Vec<Value>) {
    let mut sql = String::from("SELECT seq, body FROM events WHERE org_id = ?1 AND seq > ?2");
    let mut args: Vec<Value> = vec![Value::Text(org.to_string()), Value::Integer(after)];
    let mut push = |v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    if !f.services.is_empty() {
        let ps: Vec<String> = f
            .services
            .iter()
            .map(|s| push(Value::Text(s.clone())))
            .collect();
        sql.push_str(&format!(" AND service IN ({})", ps.join(",")));
    }
    if !f.event_types.is_empty() || !f.type_prefixes.is_empty() {
        let mut ors: Vec<String> = Vec::new();
        if !f.event_types.is_empty() {
            let ps: Vec<String> = f
                .event_types
                .iter()
                .map(|s| push(Value::Text(s.clone())))
                .collect();
            ors.push(format!("event_type IN ({})", ps.join(",")));
        }
        for p in &f.type_prefixes {
            // Prefixes are validated `[a-z0-9_.]`, but `_` is a LIKE wildcard: use a range instead.
            let lo = push(Value::Text(p.clone()));
            let hi = push(Value::Text(format!("{}\u{10FFFF}", p)));
            ors.push(format!("(event_type >= {lo} AND event_type < {hi})"));
        }
        sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
    }
    if let Some(c) = &f.channel_id {
        let p = push(Value::Text(c.clone()));
        sql.push_str(&format!(" AND channel_id = {p}"));
    }
    if let Some(c) = &f.facility_id {
        let p = push(Value::Text(c.clone()));
        sql.push_str(&format!(" AND facility_id = {p}"));
    }
    if let Some(s) = f.since {
        let p = push(Value::Integer(s));
        sql.push_str(&format!(" AND occurred_at >= {p}"));
    }
    if let Some(u) = f.until {
        let p = push(Value::Integer(u));
        sql.push_str(&format!(" AND occurred_at < {p}"));
    }
    let p = push(Value::Integer(limit as i64));
    sql.push_str(&format!(" ORDER BY seq LIMIT {p}"));
    (sql, args)
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, rows: Vec<EventRow>) -> StoreResult<Vec<AppendOutcome>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (out, last) = self.writer().run(move |c| append_rows(c, rows)).await?;
        self.inner.commits.send_if_modified(|v| {
            let changed = last > *v;
            *v = (*v).max(last);
            changed
        });
        Ok(out)
    }

    async fn page(
        &self,
        org: &str,
        filter: &EventFilter,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let (sql, args) = page_query(org, filter, after, limit);
        self.read(move |c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
                Ok(StoredEvent {
                    sequence: r.get(0)?,
                    body: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn head(&self, org: &str) -> StoreResult<i64> {
        let org = org.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE org_id = ?1")?
                    .query_row([org], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn purge_ingested_before(&self, cutoff_ms: i64) -> StoreResult<u64> {
        self.writer()
            .run(move |c| {
                // `ingested_at` grows with `seq`, so the purgeable rows are a prefix of the log:
                // walk the oldest rows in primary-key order (no extra index on the hot insert
                // path) and stop at the first one that is young enough to keep.
                let mut st = c.prepare_cached("SELECT seq, ingested_at FROM events ORDER BY seq LIMIT ?1")?;
                let rows = st.query_map([PURGE_CHUNK], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
                let mut max = None;
                for row in rows {
                    let (seq, at) = row?;
                    if at >= cutoff_ms {
                        break;
                    }
                    max = Some(seq);
                }
                let Some(max) = max else { return Ok(0) };
                let n = c.execute("DELETE FROM events WHERE seq <= ?1", [max])?;
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ('purged_through', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                    [max],
                )?;
                Ok(n as u64)
            })
            .await
    }

    async fn purged_through(&self) -> StoreResult<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'purged_through'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
        })
        .await
    }

    fn commits(&self) -> watch::Receiver<i64> {
        self.inner.commits.subscribe()
    }
}
