//! The event log on PostgreSQL: appends under the org lock (gap-free CDC), fan-out in the same
//! transaction, keyset pages.
use super::{COMMIT_CHANNEL, PgStore, lock_orgs};
use crate::domain::envelope::{render_stored, same_payload};
use crate::domain::filter::EventFilter;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::time::format_utc;
use crate::store::fanout::Subscription;
use crate::store::{AppendOutcome, EventLog, EventRow, StoreResult, StoredEvent};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;

/// Rows deleted per purge call, so no transaction holds locks for long.
const PURGE_CHUNK: i64 = 10_000;

/// Appends `rows` inside `tx` (which must commit for them to exist): takes the org locks, skips
/// duplicates of stored (or earlier in-batch) events, draws sequences, inserts the events and
/// their deliveries, and announces the commit. Returns the outcomes in order and the highest
/// sequence drawn (0 when nothing was accepted).
pub(crate) async fn append_rows(
    tx: &Transaction<'_>,
    rows: Vec<EventRow>,
) -> StoreResult<(Vec<AppendOutcome>, i64)> {
    if rows.is_empty() {
        return Ok((Vec::new(), 0));
    }
    lock_orgs(tx, rows.iter().map(|r| r.org_id.as_str())).await?;
    // Stored events with the same dedupe keys (the org lock keeps them from changing now).
    let orgs: Vec<&str> = rows.iter().map(|r| r.org_id.as_str()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let ats: Vec<i64> = rows.iter().map(|r| r.occurred_at).collect();
    // Prepared (cached per connection): every statement here runs under the org lock, so each
    // saved round trip shortens the time other appenders of the org wait.
    let lookup = tx
        .prepare_cached(
            "SELECT e.org_id, e.event_id, e.occurred_at, e.id, e.payload_hash, e.body
             FROM unnest($1::text[], $2::text[], $3::int8[]) AS k(org_id, event_id, occurred_at)
             JOIN events e ON e.org_id = k.org_id AND e.event_id = k.event_id
                          AND e.occurred_at = k.occurred_at",
        )
        .await?;
    let found = tx.query(&lookup, &[&orgs, &ids, &ats]).await?;
    // key -> (id, payload hash, rendered or stored body)
    let mut known: HashMap<(String, String, i64), (String, String, String)> = found
        .into_iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2)),
                (r.get(3), r.get(4), r.get(5)),
            )
        })
        .collect();
    let fresh = rows
        .iter()
        .filter(|r| !known.contains_key(&(r.org_id.clone(), r.event_id.clone(), r.occurred_at)))
        .count();
    let mut seqs: Vec<i64> = if fresh == 0 {
        Vec::new()
    } else {
        let draw = tx
            .prepare_cached("SELECT nextval('events_seq') FROM generate_series(1, $1::int8)")
            .await?;
        tx.query(&draw, &[&(fresh as i64)])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    seqs.sort_unstable();
    let mut seqs = seqs.into_iter();

    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let ingested_at = format_utc(now);
    let mut out = Vec::with_capacity(rows.len());
    let mut ins = Inserts::default();
    let mut accepted: Vec<(EventRow, i64)> = Vec::new();
    for r in rows {
        let key = (r.org_id.clone(), r.event_id.clone(), r.occurred_at);
        if let Some((id, hash, body)) = known.get(&key) {
            let payload_mismatch = *hash != r.payload_hash && !same_payload(body, &r.rendered);
            out.push(AppendOutcome::Duplicate {
                id: id.clone(),
                payload_mismatch,
            });
            continue;
        }
        // A duplicate inside the batch was counted as fresh above; it leaves a sequence unused,
        // which is allowed (sequences are increasing, not dense).
        let Some(seq) = seqs.next() else {
            return Err(crate::store::StoreError::Backend(
                "fewer sequences drawn than events".into(),
            ));
        };
        let body = render_stored(&r.id, seq, &ingested_at, &r.service, &r.rendered);
        known.insert(
            key,
            (r.id.clone(), r.payload_hash.clone(), r.rendered.clone()),
        );
        ins.push(&r, seq, body);
        out.push(AppendOutcome::Accepted {
            id: r.id.clone(),
            sequence: seq,
        });
        accepted.push((r, seq));
    }
    if accepted.is_empty() {
        return Ok((out, 0));
    }
    ins.execute(tx, now_ms).await?;
    fan_out(tx, &accepted, now_ms, &ingested_at).await?;
    let last = accepted.iter().map(|(_, s)| *s).max().unwrap_or(0);
    let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&notify, &[&COMMIT_CHANNEL, &last.to_string()])
        .await?;
    Ok((out, last))
}

/// Column arrays for one multi-row insert.
#[derive(Default)]
struct Inserts {
    seq: Vec<i64>,
    id: Vec<String>,
    org: Vec<String>,
    event_id: Vec<String>,
    occurred_at: Vec<i64>,
    event_type: Vec<String>,
    service: Vec<String>,
    channel: Vec<Option<String>>,
    facility: Vec<Option<String>>,
    hash: Vec<String>,
    body: Vec<String>,
    context: Vec<String>,
}

impl Inserts {
    fn push(&mut self, r: &EventRow, seq: i64, body: String) {
        self.seq.push(seq);
        self.id.push(r.id.clone());
        self.org.push(r.org_id.clone());
        self.event_id.push(r.event_id.clone());
        self.occurred_at.push(r.occurred_at);
        self.event_type.push(r.event_type.clone());
        self.service.push(r.service.clone());
        self.channel.push(r.channel_id.clone());
        self.facility.push(r.facility_id.clone());
        self.hash.push(r.payload_hash.clone());
        self.body.push(body);
        self.context.push(r.context.clone());
    }

    async fn execute(&self, tx: &Transaction<'_>, now_ms: i64) -> StoreResult<()> {
        let st = tx
            .prepare_cached(
                "INSERT INTO events (seq, id, org_id, event_id, occurred_at, event_type, service,
                   channel_id, facility_id, payload_hash, ingested_at, body, context)
                 SELECT s, i, o, e, oa, t, sv, ch, fa, h, $11, b, cx
                 FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[],
                             $7::text[], $8::text[], $9::text[], $10::text[], $12::text[], $13::text[])
                   AS u(s, i, o, e, oa, t, sv, ch, fa, h, b, cx)",
            )
            .await?;
        let params: [&(dyn ToSql + Sync); 13] = [
            &self.seq,
            &self.id,
            &self.org,
            &self.event_id,
            &self.occurred_at,
            &self.event_type,
            &self.service,
            &self.channel,
            &self.facility,
            &self.hash,
            &now_ms,
            &self.body,
            &self.context,
        ];
        tx.execute(&st, &params).await?;
        Ok(())
    }
}

/// Inserts one delivery per (accepted event, matching active or paused webhook of its org).
async fn fan_out(
    tx: &Transaction<'_>,
    accepted: &[(EventRow, i64)],
    now_ms: i64,
    created_at: &str,
) -> StoreResult<()> {
    let mut orgs: Vec<&str> = accepted.iter().map(|(r, _)| r.org_id.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let subscribed = tx
        .prepare_cached(
            "SELECT org_id, id, filters, status = 'paused' FROM webhooks
             WHERE org_id = ANY($1) AND status IN ('active', 'paused') ORDER BY id",
        )
        .await?;
    let rows = tx.query(&subscribed, &[&orgs]).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut subs: HashMap<String, Vec<Subscription>> = HashMap::new();
    for r in rows {
        let org: String = r.get(0);
        let filters: String = r.get(2);
        if let Some(s) = Subscription::parse(r.get(1), &filters, r.get(3)) {
            subs.entry(org).or_default().push(s);
        }
    }
    let (mut id, mut org, mut wid, mut eid, mut ety, mut seq, mut status) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (r, s) in accepted {
        for sub in subs.get(&r.org_id).into_iter().flatten() {
            if sub.matches(r) {
                id.push(new_id(IdKind::Delivery));
                org.push(r.org_id.as_str());
                wid.push(sub.id.as_str());
                eid.push(r.id.as_str());
                ety.push(r.event_type.as_str());
                seq.push(*s);
                status.push(sub.initial_status());
            }
        }
    }
    if id.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, org_id, webhook_id, event_id, event_type, seq, status,
               next_attempt_at, ingested_at, created_at, updated_at)
             SELECT i, o, w, e, t, s, st, $8, $8, $9, $9
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                         $7::text[]) AS u(i, o, w, e, t, s, st)",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &id,
            &org,
            &wid,
            &eid,
            &ety,
            &seq,
            &status,
            &now_ms,
            &created_at,
        ],
    )
    .await?;
    Ok(())
}

/// Builds the CDC page query for a filter; parameters follow the SQL text.
fn page_query(
    org: &str,
    f: &EventFilter,
    after: i64,
    limit: usize,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut sql = String::from("SELECT seq, body FROM events WHERE org_id = $1 AND seq > $2");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(org.to_string()), Box::new(after)];
    let mut push = |v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        format!("${}", args.len())
    };
    if !f.services.is_empty() {
        let p = push(Box::new(f.services.clone()));
        sql.push_str(&format!(" AND service = ANY({p})"));
    }
    if !f.event_types.is_empty() || !f.type_prefixes.is_empty() {
        let mut ors: Vec<String> = Vec::new();
        if !f.event_types.is_empty() {
            let p = push(Box::new(f.event_types.clone()));
            ors.push(format!("event_type = ANY({p})"));
        }
        for prefix in &f.type_prefixes {
            // `_` is a LIKE wildcard: compare a range instead (collation-independent via COLLATE "C").
            let lo = push(Box::new(prefix.clone()));
            let hi = push(Box::new(format!("{prefix}\u{10FFFF}")));
            ors.push(format!(
                "(event_type COLLATE \"C\" >= {lo} AND event_type COLLATE \"C\" < {hi})"
            ));
        }
        sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
    }
    if let Some(c) = &f.channel_id {
        let p = push(Box::new(c.clone()));
        sql.push_str(&format!(" AND channel_id = {p}"));
    }
    if let Some(c) = &f.facility_id {
        let p = push(Box::new(c.clone()));
        sql.push_str(&format!(" AND facility_id = {p}"));
    }
    if let Some(s) = f.since {
        let p = push(Box::new(s));
        sql.push_str(&format!(" AND occurred_at >= {p}"));
    }
    if let Some(u) = f.until {
        let p = push(Box::new(u));
        sql.push_str(&format!(" AND occurred_at < {p}"));
    }
    let p = push(Box::new(limit as i64));
    sql.push_str(&format!(" ORDER BY seq LIMIT {p}"));
    (sql, args)
}

#[async_trait]
impl EventLog for PgStore {
    async fn append(&self, rows: Vec<EventRow>) -> StoreResult<Vec<AppendOutcome>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // One org's appends serialize on its lock anyway: one shard gathers them.
        let org = rows[0].org_id.clone();
        self.inner.appender.call(&org, rows).await
    }

    async fn page(
        &self,
        org: &str,
        filter: &EventFilter,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let (sql, args) = page_query(org, filter, after, limit);
        let c = self.conn().await?;
        let st = c.prepare_cached(&sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c.query(&st, &params).await?;
        Ok(rows
            .iter()
            .map(|r| StoredEvent {
                sequence: r.get(0),
                body: r.get(1),
            })
            .collect())
    }

    async fn head(&self, org: &str) -> StoreResult<i64> {
        let c = self.conn().await?;
        Ok(c.query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE org_id = $1",
            &[&org],
        )
        .await?
        .get(0))
    }

    async fn purge_ingested_before(&self, cutoff_ms: i64) -> StoreResult<u64> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // The purgeable rows are a prefix of the log: walk the oldest rows in sequence order and
        // stop at the first one young enough to keep, so no cursor position is left half-purged.
        let rows = tx
            .query(
                "SELECT seq, ingested_at FROM events ORDER BY seq LIMIT $1",
                &[&PURGE_CHUNK],
            )
            .await?;
        let mut max = None;
        for r in rows {
            let (seq, at): (i64, i64) = (r.get(0), r.get(1));
            if at >= cutoff_ms {
                break;
            }
            max = Some(seq);
        }
        let Some(max) = max else { return Ok(0) };
        let n = tx
            .execute("DELETE FROM events WHERE seq <= $1", &[&max])
            .await?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('purged_through', $1)
             ON CONFLICT (key) DO UPDATE SET value = CASE
               WHEN convert_from(meta.value, 'UTF8')::int8 < $2 THEN excluded.value ELSE meta.value END",
            &[&max.to_string().into_bytes(), &max],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn purged_through(&self) -> StoreResult<i64> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT convert_from(value, 'UTF8')::bigint FROM meta WHERE key = 'purged_through'",
                &[],
            )
            .await?;
        Ok(row.map(|r| r.get(0)).unwrap_or(0))
    }

    fn commits(&self) -> watch::Receiver<i64> {
        self.inner.commits.subscribe()
    }
}
