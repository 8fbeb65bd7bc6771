//! The delivery queue on PostgreSQL, shared by every node: claims lock the webhook row (so the
//! nodes' claims of one webhook serialize and `max_in_flight` holds across them), pick due
//! deliveries with `FOR UPDATE SKIP LOCKED`, and lease them with a fencing token; attempt
//! records are applied only with the token of the current claim.
//!
//! Lock order (as everywhere in this backend): webhook rows (sorted by id), then delivery rows.
use super::PgStore;
use super::group::Commit;
use super::webhooks::as_u32;
use crate::domain::time::{format_utc, now_rfc3339};
use crate::store::{
    AttemptRecord, AttemptRow, ClaimSlot, Claimed, Deliveries, DeliveryRow, NewDelivery, Recorded,
    StoreResult,
};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Row;

const DCOLS: &str =
    "id, org_id, webhook_id, event_id, event_type, seq, status, attempt_count, next_attempt_at,
    last_status_code, created_at, updated_at";

fn as_u16(v: i64) -> u16 {
    u16::try_from(v.max(0)).unwrap_or(u16::MAX)
}

fn delivery(r: &Row) -> DeliveryRow {
    DeliveryRow {
        id: r.get(0),
        org_id: r.get(1),
        webhook_id: r.get(2),
        event_id: r.get(3),
        event_type: r.get(4),
        sequence: r.get(5),
        status: r.get(6),
        attempt_count: as_u32(r.get(7)),
        next_attempt_at_ms: r.get(8),
        last_status_code: r.get::<_, Option<i64>>(9).map(as_u16),
        created_at: r.get(10),
        updated_at: r.get(11),
    }
}

async fn claim_tx(
    tx: &Transaction<'_>,
    now: i64,
    lease_ms: i64,
    claimer: &str,
    slots: Vec<ClaimSlot>,
) -> StoreResult<Vec<Claimed>> {
    let slots: Vec<ClaimSlot> = slots.into_iter().filter(|s| s.free > 0).collect();
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    // Concurrent webhooks: each node keeps its own `max_in_flight` (the worker's slots), so a
    // lease held by a result still being recorded never stalls the next claim. Ordered webhooks
    // are one in flight across *all* nodes: their rows are locked (in id order, so two claimers
    // never deadlock) and the count of leases below is checked under that lock.
    let mut ordered: Vec<&str> = slots
        .iter()
        .filter(|s| s.ordered)
        .map(|s| s.webhook_id.as_str())
        .collect();
    ordered.sort_unstable();
    // The active ones among them, read on the locked row versions.
    let active: std::collections::HashSet<String> = if ordered.is_empty() {
        Default::default()
    } else {
        tx.query(
            &tx.prepare_cached(
                "SELECT id FROM webhooks WHERE id = ANY($1) AND status = 'active'
                 ORDER BY id FOR UPDATE",
            )
            .await?,
            &[&ordered],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect()
    };
    let mut out = claim_concurrent(tx, now, lease_ms, claimer, &slots).await?;
    if active.is_empty() {
        return Ok(out);
    }
    // Deliveries in flight anywhere: leased and the lease not over (`lease_until >= now` is
    // exactly "not claimable because of its lease").
    let leased = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries WHERE webhook_id = $1 AND lease_until IS NOT NULL
               AND lease_until >= $2 AND status IN ('pending', 'failed')",
        )
        .await?;
    let head = tx
        .prepare_cached(
            "SELECT id FROM deliveries WHERE webhook_id = $1 AND status IN ('pending', 'failed')
             ORDER BY seq, id LIMIT 1",
        )
        .await?;
    // Re-checked on the locked row version; leased with the body fetched (the delivery's own,
    // or the stored event's; NULL when retention purged it).
    let lease_head = tx
        .prepare_cached(&format!(
            "UPDATE deliveries d SET lease_until = $3, claimed_by = $4,
               lease_token = d.lease_token + 1
             FROM (SELECT id FROM deliveries WHERE id = $1 AND status IN ('pending', 'failed')
                     AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
                   FOR UPDATE SKIP LOCKED) h
             WHERE d.id = h.id
             RETURNING {LEASED}"
        ))
        .await?;
    for slot in slots.iter().filter(|s| s.ordered) {
        if !active.contains(&slot.webhook_id) {
            continue;
        }
        // Only the head, and only while nothing of this webhook is in flight on any node.
        let in_flight: i64 = tx
            .query_one(&leased, &[&slot.webhook_id, &now])
            .await?
            .get(0);
        if in_flight > 0 {
            continue;
        }
        let Some(h) = tx.query_opt(&head, &[&slot.webhook_id]).await? else {
            continue;
        };
        let id: String = h.get(0);
        for r in tx
            .query(&lease_head, &[&id, &now, &(now + lease_ms), &claimer])
            .await?
        {
            out.push(claimed(&r));
        }
    }
    Ok(out)
}

/// What a lease statement returns: [`claimed`] reads it.
const LEASED: &str = "d.id, d.org_id, d.webhook_id, d.event_id, d.event_type, d.attempt_count,
    d.lease_token,
    COALESCE(d.body, (SELECT e.body FROM events e WHERE e.seq = d.seq AND e.org_id = d.org_id)),
    d.ingested_at, d.next_attempt_at, d.seq";

fn claimed(r: &Row) -> Claimed {
    Claimed {
        id: r.get(0),
        org_id: r.get(1),
        webhook_id: r.get(2),
        event_id: r.get(3),
        event_type: r.get(4),
        attempt: as_u32(r.get(5)).saturating_add(1),
        lease_token: r.get(6),
        body: r.get(7),
        ingested_at_ms: r.get(8),
    }
}

/// The concurrent webhooks' claims in one statement (one round trip whatever the number of
/// webhooks): each active webhook's due deliveries, up to its free slots (the worker's in-flight
/// capacity plus its claim-ahead queue, as on SQLite), taken with `SKIP LOCKED` and leased. In
/// claim order per webhook (due time, then sequence).
async fn claim_concurrent(
    tx: &Transaction<'_>,
    now: i64,
    lease_ms: i64,
    claimer: &str,
    slots: &[ClaimSlot],
) -> StoreResult<Vec<Claimed>> {
    let (wids, free): (Vec<&str>, Vec<i64>) = slots
        .iter()
        .filter(|s| !s.ordered)
        .map(|s| (s.webhook_id.as_str(), i64::from(s.free)))
        .unzip();
    if wids.is_empty() {
        return Ok(Vec::new());
    }
    let st = tx
        .prepare_cached(&format!(
            "WITH s AS (
               SELECT u.wid, u.n FROM unnest($1::text[], $2::int8[]) AS u(wid, n)
               JOIN webhooks w ON w.id = u.wid AND w.status = 'active'
             ), due AS (
               SELECT x.id FROM s CROSS JOIN LATERAL (
                 SELECT id FROM deliveries
                 WHERE webhook_id = s.wid AND status IN ('pending', 'failed')
                   AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY next_attempt_at, seq LIMIT s.n FOR UPDATE SKIP LOCKED
               ) x
             )
             UPDATE deliveries d SET lease_until = $4, claimed_by = $5,
               lease_token = d.lease_token + 1
             FROM due WHERE d.id = due.id
             RETURNING {LEASED}"
        ))
        .await?;
    let mut rows = tx
        .query(&st, &[&wids, &free, &now, &(now + lease_ms), &claimer])
        .await?;
    rows.sort_by_key(|r| {
        (
            r.get::<_, String>(2),
            r.get::<_, i64>(9),
            r.get::<_, i64>(10),
        )
    });
    Ok(rows.iter().map(claimed).collect())
}

/// Claims and attempt records are answered at commit, before the WAL flush, as on SQLite
/// (`Writer::run_relaxed`): losing one in a database crash only means a delivery is sent again
/// with the same `webhook-id`, which at-least-once allows. Not waiting for the flush keeps the
/// webhook row (locked by claims and records to count in-flight leases) free for the next one.
async fn relaxed(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    Ok(())
}

/// One group of attempt records: one relaxed transaction (the latest `now` of the group).
pub(super) fn record_commit(pool: &Pool) -> Commit<(i64, AttemptRecord), Recorded> {
    let pool = pool.clone();
    Arc::new(move |items| {
        let pool = pool.clone();
        Box::pin(async move {
            let now_ms = items.iter().map(|(n, _)| *n).max().unwrap_or(0);
            let records = items.into_iter().map(|(_, r)| r).collect();
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            relaxed(&tx).await?;
            let out = record_tx(&tx, now_ms, records).await?;
            tx.commit().await?;
            Ok(out)
        })
    })
}

async fn record_tx(
    tx: &Transaction<'_>,
    now_ms: i64,
    records: Vec<AttemptRecord>,
) -> StoreResult<Vec<Recorded>> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(format_utc)
        .unwrap_or_else(now_rfc3339);
    // Set-based, so a group costs the same few round trips whatever its size. Webhook rows are
    // locked first (sorted), as claims do, so the two never deadlock.
    let mut wids: Vec<&str> = records.iter().map(|r| r.webhook_id.as_str()).collect();
    wids.sort_unstable();
    wids.dedup();
    let health: HashMap<String, (String, i64, Option<i64>)> = tx
        .query(
            &tx.prepare_cached(
                "SELECT id, status, consecutive_failures, first_failure_at FROM webhooks
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .await?,
            &[&wids],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    // The delivery rows, fenced by the claim's token; non-terminal results of a webhook that is
    // no longer active become `held` (paused) or `skipped` (revoked or deleted).
    let (mut ids, mut statuses, mut attempts, mut nexts, mut codes, mut tokens) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in &records {
        let status = match (
            r.new_status.as_str(),
            health.get(&r.webhook_id).map(|h| h.0.as_str()),
        ) {
            ("failed" | "pending", Some("active")) => r.new_status.as_str(),
            ("failed" | "pending", Some("paused")) => "held",
            ("failed" | "pending", _) => "skipped",
            (other, _) => other,
        };
        ids.push(r.delivery_id.as_str());
        statuses.push(status);
        attempts.push(i64::from(r.attempt.attempt));
        nexts.push(r.next_attempt_at_ms);
        codes.push(r.attempt.status_code.map(i64::from));
        tokens.push(r.lease_token);
    }
    let applied: std::collections::HashSet<String> = tx
        .query(
            &tx.prepare_cached(
                "UPDATE deliveries d SET status = u.st, attempt_count = u.att,
               next_attempt_at = COALESCE(u.nxt, d.next_attempt_at), lease_until = NULL,
               claimed_by = NULL, last_status_code = u.code, updated_at = $7
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
               AS u(id, st, att, nxt, code, tok)
             WHERE d.id = u.id AND d.lease_token = u.tok
             RETURNING d.id",
            )
            .await?,
            &[&ids, &statuses, &attempts, &nexts, &codes, &tokens, &now],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    // Attempts of the applied records; webhook health replayed in record order.
    let (mut a_id, mut a_no, mut a_at, mut a_dur, mut a_code, mut a_err, mut a_ex) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut running: HashMap<&str, (i64, Option<i64>, bool, bool)> = health
        .iter()
        .map(|(k, v)| (k.as_str(), (v.1, v.2, false, false)))
        .collect();
    let mut failures: HashMap<&str, i64> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let ok = applied.contains(&r.delivery_id);
        if ok {
            let a = &r.attempt;
            a_id.push(r.delivery_id.as_str());
            a_no.push(i64::from(a.attempt));
            a_at.push(a.started_at.as_str());
            a_dur.push(a.duration_ms as i64);
            a_code.push(a.status_code.map(i64::from));
            a_err.push(a.error.as_deref());
            a_ex.push(a.response_body_excerpt.as_deref());
            if let Some(h) = running.get_mut(r.webhook_id.as_str()) {
                if r.success {
                    *h = (0, None, true, h.3);
                } else {
                    *h = (h.0 + 1, h.1.or(Some(r.started_ms)), h.2, true);
                    *failures.entry(r.webhook_id.as_str()).or_default() += 1;
                }
            }
        }
        let (cf, first) = running
            .get(r.webhook_id.as_str())
            .map(|h| (as_u32(h.0), h.1))
            .unwrap_or((0, None));
        out.push(Recorded {
            webhook_id: r.webhook_id.clone(),
            applied: ok,
            consecutive_failures: cf,
            first_failure_at_ms: first,
        });
    }
    if !a_id.is_empty() {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms,
               status_code, error, response_body_excerpt)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[],
                                  $6::text[], $7::text[])
             ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = excluded.started_at,
               duration_ms = excluded.duration_ms, status_code = excluded.status_code,
               error = excluded.error, response_body_excerpt = excluded.response_body_excerpt",
            )
            .await?,
            &[&a_id, &a_no, &a_at, &a_dur, &a_code, &a_err, &a_ex],
        )
        .await?;
    }
    // One update per webhook with its final health (`last_success_at` / `last_failure_at` only
    // when the group had a success / failure).
    let (mut w_id, mut w_cf, mut w_first, mut w_fail, mut w_ok, mut w_bad) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (wid, (cf, first, any_ok, any_bad)) in &running {
        if !any_ok && !any_bad {
            continue;
        }
        w_id.push(*wid);
        w_cf.push(*cf);
        w_first.push(*first);
        w_fail.push(failures.get(wid).copied().unwrap_or(0));
        w_ok.push(*any_ok);
        w_bad.push(*any_bad);
    }
    if !w_id.is_empty() {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE webhooks w SET consecutive_failures = u.cf, first_failure_at = u.ff,
               total_failures = w.total_failures + u.nf,
               last_success_at = CASE WHEN u.ok THEN $7 ELSE w.last_success_at END,
               last_failure_at = CASE WHEN u.bad THEN $7 ELSE w.last_failure_at END
             FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::bool[], $6::bool[])
               AS u(id, cf, ff, nf, ok, bad)
             WHERE w.id = u.id",
            )
            .await?,
            &[&w_id, &w_cf, &w_first, &w_fail, &w_ok, &w_bad, &now],
        )
        .await?;
    }
    Ok(out)
}

#[async_trait]
impl Deliveries for PgStore {
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let now = chrono::Utc::now();
        let (ms, at) = (now.timestamp_millis(), format_utc(now));
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let ins = tx
            .prepare_cached(
                "INSERT INTO deliveries (id, org_id, webhook_id, event_id, event_type, seq, body,
                   status, next_attempt_at, ingested_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $10)",
            )
            .await?;
        let mut n = 0;
        for r in rows {
            n += tx
                .execute(
                    &ins,
                    &[
                        &r.id,
                        &r.org_id,
                        &r.webhook_id,
                        &r.event_id,
                        &r.event_type,
                        &r.sequence,
                        &r.body,
                        &ms,
                        &r.ingested_at_ms,
                        &at,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        claimer: &str,
        slots: Vec<ClaimSlot>,
    ) -> StoreResult<Vec<Claimed>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        relaxed(&tx).await?;
        let out = claim_tx(&tx, now_ms, lease_ms, claimer, slots).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn record(&self, now_ms: i64, records: Vec<AttemptRecord>) -> StoreResult<Vec<Recorded>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Concurrent attempts' results of a webhook share one transaction (see `group.rs`): they
        // would all wait on the webhook row's lock.
        let key = records[0].webhook_id.clone();
        self.inner
            .recorder
            .call(&key, records.into_iter().map(|r| (now_ms, r)).collect())
            .await
    }

    async fn unlease(&self, claims: Vec<(String, i64)>) -> StoreResult<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let (ids, tokens): (Vec<String>, Vec<i64>) = claims.into_iter().unzip();
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        relaxed(&tx).await?;
        let n = tx
            .execute(
                "UPDATE deliveries d SET lease_until = NULL, claimed_by = NULL
                 FROM unnest($1::text[], $2::int8[]) AS u(id, tok)
                 WHERE d.id = u.id AND d.lease_token = u.tok AND d.lease_until IS NOT NULL",
                &[&ids, &tokens],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Drops the leases claimed under `node`, and only while this process holds that id (see
    /// [`crate::store::Meta::hold_node`]): other live nodes hold leases on the same table, and a
    /// lease of theirs must run out instead (claims treat `lease_until < now` as free and
    /// `next_due_ms` reports it).
    async fn release_leases(&self, node: &str) -> StoreResult<u64> {
        if self.held_node().await.as_deref() != Some(node) {
            return Ok(0);
        }
        let c = self.conn().await?;
        Ok(c.execute(
            "UPDATE deliveries SET lease_until = NULL, claimed_by = NULL
             WHERE claimed_by = $1 AND lease_until IS NOT NULL",
            &[&node],
        )
        .await?)
    }

    /// Like SQLite, but a leased delivery counts as due when its lease ends (leases are not
    /// dropped at start here, so a crashed node's leases must still wake a worker).
    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        let c = self.conn().await?;
        Ok(c.query_one(
            "SELECT MIN(GREATEST(d.next_attempt_at, COALESCE(d.lease_until + 1, d.next_attempt_at)))
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE w.status = 'active' AND d.status IN ('pending', 'failed')",
            &[],
        )
        .await?
        .get(0))
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        let c = self.conn().await?;
        Ok(c.query_one(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed', 'held')",
            &[],
        )
        .await?
        .get(0))
    }

    async fn list_deliveries(
        &self,
        org: &str,
        webhook_id: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {DCOLS} FROM deliveries WHERE webhook_id = $1 AND org_id = $2 AND id > $3
                   AND ($4::text IS NULL OR status = $4) ORDER BY id LIMIT $5"
            ))
            .await?;
        let rows = c
            .query(
                &st,
                &[
                    &webhook_id,
                    &org,
                    &after.unwrap_or(""),
                    &status,
                    &(limit as i64),
                ],
            )
            .await?;
        Ok(rows.iter().map(delivery).collect())
    }

    async fn get_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
    ) -> StoreResult<Option<DeliveryRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {DCOLS} FROM deliveries WHERE id = $1 AND org_id = $2 AND webhook_id = $3"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&id, &org, &webhook_id])
            .await?
            .as_ref()
            .map(delivery))
    }

    async fn delivery_attempts(&self, org: &str, id: &str) -> StoreResult<Vec<AttemptRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT a.attempt, a.started_at, a.duration_ms, a.status_code, a.error,
                   a.response_body_excerpt
                 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE a.delivery_id = $1 AND d.org_id = $2 ORDER BY a.attempt",
            )
            .await?;
        let rows = c.query(&st, &[&id, &org]).await?;
        Ok(rows
            .iter()
            .map(|r| AttemptRow {
                attempt: as_u32(r.get(0)),
                started_at: r.get(1),
                duration_ms: r.get::<_, i64>(2).max(0) as u64,
                status_code: r.get::<_, Option<i64>>(3).map(as_u16),
                error: r.get(4),
                response_body_excerpt: r.get(5),
            })
            .collect())
    }

    async fn retry_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
        now_ms: i64,
    ) -> StoreResult<Option<DeliveryRow>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // The webhook row first (lock order), so a concurrent pause cannot slip between reading
        // its status and writing the delivery.
        let active = tx
            .query_opt(
                "SELECT status = 'active' FROM webhooks WHERE id = $1 AND org_id = $2 FOR SHARE",
                &[&webhook_id, &org],
            )
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
        let st = tx
            .prepare_cached(&format!(
                "UPDATE deliveries SET status = CASE WHEN $4 THEN 'pending' ELSE 'held' END,
                   next_attempt_at = $5, updated_at = $6
                 WHERE id = $1 AND org_id = $2 AND webhook_id = $3
                   AND (lease_until IS NULL OR lease_until < $5)
                 RETURNING {DCOLS}"
            ))
            .await?;
        let row = tx
            .query_opt(
                &st,
                &[&id, &org, &webhook_id, &active, &now_ms, &now_rfc3339()],
            )
            .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(delivery))
    }
}
