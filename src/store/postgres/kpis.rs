//! KPI snapshots, rollups and alert evaluation on PostgreSQL.
//!
//! A snapshot batch is one transaction that first takes the org's advisory lock, so writes
//! (and alert evaluation) of one org are serialized across nodes: raw rows, rollups
//! (pre-aggregated per bucket in memory, then one multi-row upsert), the KPI listing, and the
//! evaluation of every rule of the touched KPIs ([`alert_eval`]), whose transitions append
//! events and inbox items in the same transaction.
use super::events::append_rows;
use super::{PgStore, lock_orgs};
use crate::domain::kpi::{Agg, Granularity};
use crate::domain::time::now_rfc3339;
use crate::store::alert_eval::{self, Effects, SeriesState};
use crate::store::kpis::{
    AlertEffects, AlertRow, Alerts, BucketRow, Folded, KpiRow, Kpis, Recorded, RuleRow, SnapshotRow,
};
use crate::store::{StoreError, StoreResult};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio_postgres::Row;

fn enum_of<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| StoreError::Backend(format!("bad stored value {s:?}: {e}")))
}

fn name_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

const RULE_COLUMNS: &str = "id, org_id, kpi, facility_id, granularity, aggregate, op, threshold, clear_threshold, for_buckets, severity, deliver_to_inbox, created_at, created_context, updated_at, updated_context";

fn rule_from(r: &Row) -> StoreResult<RuleRow> {
    let for_buckets: i64 = r.get(9);
    Ok(RuleRow {
        id: r.get(0),
        org_id: r.get(1),
        kpi: r.get(2),
        facility_id: r.get(3),
        granularity: enum_of(r.get(4))?,
        aggregate: enum_of(r.get(5))?,
        op: enum_of(r.get(6))?,
        threshold: r.get(7),
        clear_threshold: r.get(8),
        for_buckets: u32::try_from(for_buckets)
            .map_err(|_| StoreError::Backend(format!("bad for_buckets {for_buckets}")))?,
        severity: enum_of(r.get(10))?,
        deliver_to_inbox: r.get(11),
        created_at: r.get(12),
        created_context: r.get(13),
        updated_at: r.get(14),
        updated_context: r.get(15),
    })
}

const ALERT_COLUMNS: &str = "id, org_id, rule_id, kpi, facility_id, state, value, threshold, bucket_start, started_at, fired_at, resolved_at, history";

fn alert_from(r: &Row) -> AlertRow {
    AlertRow {
        id: r.get(0),
        org_id: r.get(1),
        rule_id: r.get(2),
        kpi: r.get(3),
        facility_id: r.get(4),
        state: r.get(5),
        value: r.get(6),
        threshold: r.get(7),
        bucket_start: r.get(8),
        started_at: r.get(9),
        fired_at: r.get(10),
        resolved_at: r.get(11),
        history: r.get(12),
    }
}

fn agg_from(r: &Row, i: usize) -> Agg {
    Agg {
        count: r.get(i),
        min: r.get(i + 1),
        max: r.get(i + 2),
        sum: r.get(i + 3),
        last_value: r.get(i + 4),
        last_at: r.get(i + 5),
    }
}

async fn save_alert(tx: &Transaction<'_>, a: &AlertRow) -> StoreResult<()> {
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, value = excluded.value,
               bucket_start = excluded.bucket_start, fired_at = excluded.fired_at,
               resolved_at = excluded.resolved_at, history = excluded.history"
        ))
        .await?;
    tx.execute(
        &st,
        &[
            &a.id,
            &a.org_id,
            &a.rule_id,
            &a.kpi,
            &a.facility_id,
            &a.state,
            &a.value,
            &a.threshold,
            &a.bucket_start,
            &a.started_at,
            &a.fired_at,
            &a.resolved_at,
            &a.history,
        ],
    )
    .await?;
    Ok(())
}

/// Evaluates one (rule, facility) series over the buckets a write changed; the rollups it
/// needs are read with one query.
async fn evaluate_series(
    tx: &Transaction<'_>,
    rule: &RuleRow,
    fac: &str,
    changed: &BTreeSet<i64>,
    now: &str,
    effects: &dyn AlertEffects,
    out: &mut Effects,
) -> StoreResult<()> {
    let g = rule.granularity.millis();
    let org = rule.org_id.as_str();
    let (last_bucket, open_id): (i64, Option<String>) = tx
        .query_opt(
            "SELECT last_bucket, open_alert FROM alert_series WHERE rule_id = $1 AND facility_id = $2",
            &[&rule.id, &fac],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or((i64::MIN, None));
    let open = match open_id {
        Some(id) => tx
            .query_opt(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(alert_from),
        None => None,
    };
    let head: Option<i64> = tx
        .query_one(
            "SELECT MAX(bucket) FROM kpi_rollups WHERE org_id = $1 AND kpi = $2 AND facility_id = $3 AND gran = $4",
            &[&org, &rule.kpi, &fac, &g],
        )
        .await?
        .get(0);
    let Some(head) = head else { return Ok(()) };
    let candidates = alert_eval::candidates(rule, changed, head);
    let wanted: Vec<i64> = alert_eval::lookups(rule, &candidates).into_iter().collect();
    let aggs: HashMap<i64, Agg> = tx
        .query(
            "SELECT bucket, count, min, max, sum, last_value, last_at FROM kpi_rollups
             WHERE org_id = $1 AND kpi = $2 AND facility_id = $3 AND gran = $4
               AND bucket = ANY($5::int8[])",
            &[&org, &rule.kpi, &fac, &g, &wanted],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), agg_from(r, 1)))
        .collect();
    let mut state = SeriesState { last_bucket, open };
    let mut lookup = |b: i64| Ok::<_, StoreError>(aggs.get(&b).copied());
    let saves = alert_eval::evaluate(
        rule,
        fac,
        &candidates,
        &mut state,
        &mut lookup,
        now,
        effects,
        out,
    )?;
    for a in &saves {
        save_alert(tx, a).await?;
    }
    tx.execute(
        "INSERT INTO alert_series (rule_id, facility_id, last_bucket, open_alert) VALUES ($1, $2, $3, $4)
         ON CONFLICT (rule_id, facility_id) DO UPDATE SET last_bucket = excluded.last_bucket, open_alert = excluded.open_alert",
        &[&rule.id, &fac, &state.last_bucket, &state.open.map(|a| a.id)],
    )
    .await?;
    Ok(())
}

/// Column arrays of one multi-row rollup upsert.
#[derive(Default)]
struct RollupColumns<'a> {
    kpi: Vec<&'a str>,
    fac: Vec<&'a str>,
    gran: Vec<i64>,
    bucket: Vec<i64>,
    count: Vec<i64>,
    min: Vec<f64>,
    max: Vec<f64>,
    sum: Vec<f64>,
    last_value: Vec<f64>,
    last_at: Vec<i64>,
}

async fn record(
    tx: &Transaction<'_>,
    org: &str,
    rows: &[SnapshotRow],
    effects: &dyn AlertEffects,
) -> StoreResult<(Recorded, i64)> {
    // Writes and evaluations of one org run one at a time, across nodes.
    lock_orgs(tx, [org]).await?;
    let (mut r_kpi, mut r_fac, mut r_at, mut r_val, mut r_unit) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in rows {
        r_kpi.push(s.kpi.as_str());
        r_fac.push(s.facility_id.as_deref().unwrap_or(""));
        r_at.push(s.observed_at);
        r_val.push(s.value);
        r_unit.push(s.unit.as_deref());
    }
    let folded = Folded::fold(rows);
    let (buckets, latest) = (&folded.buckets, &folded.latest);
    tx.execute(
        "INSERT INTO kpi_snapshots (org_id, kpi, facility_id, observed_at, value, unit)
         SELECT $1, k, f, a, v, u FROM unnest($2::text[], $3::text[], $4::int8[], $5::float8[], $6::text[])
           AS t(k, f, a, v, u)",
        &[&org, &r_kpi, &r_fac, &r_at, &r_val, &r_unit],
    )
    .await?;
    let mut cols = RollupColumns::default();
    for ((kpi, fac, g, b), a) in buckets {
        cols.kpi.push(kpi);
        cols.fac.push(fac);
        cols.gran.push(*g);
        cols.bucket.push(*b);
        cols.count.push(a.count);
        cols.min.push(a.min);
        cols.max.push(a.max);
        cols.sum.push(a.sum);
        cols.last_value.push(a.last_value);
        cols.last_at.push(a.last_at);
    }
    // The same merge as `Agg::merge` (and SQLite's upsert).
    tx.execute(
        "INSERT INTO kpi_rollups AS r (org_id, kpi, facility_id, gran, bucket, count, min, max, sum, last_value, last_at)
         SELECT $1, k, f, g, b, c, mn, mx, s, lv, la
         FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::float8[],
                     $8::float8[], $9::float8[], $10::float8[], $11::int8[])
           AS t(k, f, g, b, c, mn, mx, s, lv, la)
         ON CONFLICT (org_id, kpi, facility_id, gran, bucket) DO UPDATE SET
           count = r.count + excluded.count, min = LEAST(r.min, excluded.min),
           max = GREATEST(r.max, excluded.max), sum = r.sum + excluded.sum,
           last_value = CASE WHEN excluded.last_at >= r.last_at THEN excluded.last_value ELSE r.last_value END,
           last_at = GREATEST(r.last_at, excluded.last_at)",
        &[
            &org,
            &cols.kpi,
            &cols.fac,
            &cols.gran,
            &cols.bucket,
            &cols.count,
            &cols.min,
            &cols.max,
            &cols.sum,
            &cols.last_value,
            &cols.last_at,
        ],
    )
    .await?;
    let kp = tx
        .prepare_cached(
            "INSERT INTO kpis AS p (org_id, kpi, unit, last_value, last_at, last_facility_id, snapshots)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (org_id, kpi) DO UPDATE SET
               unit = COALESCE(excluded.unit, p.unit),
               last_value = CASE WHEN excluded.last_at >= p.last_at THEN excluded.last_value ELSE p.last_value END,
               last_facility_id = CASE WHEN excluded.last_at >= p.last_at THEN excluded.last_facility_id ELSE p.last_facility_id END,
               last_at = GREATEST(p.last_at, excluded.last_at),
               snapshots = p.snapshots + excluded.snapshots",
        )
        .await?;
    for (kpi, (unit, a, fac)) in latest {
        tx.execute(
            &kp,
            &[&org, kpi, unit, &a.last_value, &a.last_at, fac, &a.count],
        )
        .await?;
    }
    // Evaluate every rule of the touched KPIs, in a fixed order (rule id, facility, bucket).
    let now = now_rfc3339();
    let mut out = Effects::new();
    let rules_of = tx
        .prepare_cached(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 AND kpi = $2 ORDER BY id"
        ))
        .await?;
    for kpi in latest.keys() {
        let rules = tx
            .query(&rules_of, &[&org, kpi])
            .await?
            .iter()
            .map(rule_from)
            .collect::<StoreResult<Vec<_>>>()?;
        for rule in &rules {
            let series = folded.series_of(rule);
            for (fac, changed) in &series {
                evaluate_series(tx, rule, fac, changed, &now, effects, &mut out).await?;
            }
        }
    }
    let mut last = 0;
    if !out.events.is_empty() {
        let (_, seq) = append_rows(tx, std::mem::take(&mut out.events)).await?;
        last = seq;
    }
    for i in &out.inbox {
        super::inbox::insert(tx, i).await?;
    }
    Ok((
        Recorded {
            accepted: rows.len(),
            transitions: out.transitions,
        },
        last,
    ))
}

#[async_trait]
impl Kpis for PgStore {
    async fn record_snapshots(
        &self,
        org: &str,
        rows: Vec<SnapshotRow>,
        effects: Arc<dyn AlertEffects>,
    ) -> StoreResult<Recorded> {
        if rows.is_empty() {
            return Ok(Recorded::default());
        }
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let (rec, last) = record(&tx, org, &rows, effects.as_ref()).await?;
        tx.commit().await?;
        if last > 0 {
            self.notify_commit(last);
        }
        Ok(rec)
    }

    async fn buckets(
        &self,
        org: &str,
        kpi: &str,
        facility: Option<&str>,
        granularity: Granularity,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<BucketRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT bucket, count, min, max, sum, last_value, last_at FROM kpi_rollups
                 WHERE org_id = $1 AND kpi = $2 AND facility_id = $3 AND gran = $4
                   AND bucket >= $5 AND bucket < $6 ORDER BY bucket",
            )
            .await?;
        let fac = facility.unwrap_or("");
        let rows = c
            .query(
                &st,
                &[&org, &kpi, &fac, &granularity.millis(), &from_ms, &to_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BucketRow {
                bucket_start: r.get(0),
                agg: agg_from(r, 1),
            })
            .collect())
    }

    async fn list_kpis(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<KpiRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT kpi, unit, last_value, last_at, last_facility_id, snapshots FROM kpis
                 WHERE org_id = $1 AND ($2::text IS NULL OR kpi > $2::text) ORDER BY kpi LIMIT $3",
            )
            .await?;
        let rows = c.query(&st, &[&org, &after, &(limit as i64)]).await?;
        Ok(rows
            .iter()
            .map(|r| KpiRow {
                kpi: r.get(0),
                unit: r.get(1),
                last_value: r.get(2),
                last_at: r.get(3),
                last_facility_id: r.get(4),
                snapshots: r.get(5),
            })
            .collect())
    }
}

#[async_trait]
impl Alerts for PgStore {
    async fn insert_rule(&self, r: RuleRow) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            &format!(
                "INSERT INTO alert_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            &[
                &r.id,
                &r.org_id,
                &r.kpi,
                &r.facility_id,
                &r.granularity.as_str(),
                &name_of(&r.aggregate),
                &name_of(&r.op),
                &r.threshold,
                &r.clear_threshold,
                &i64::from(r.for_buckets),
                &name_of(&r.severity),
                &r.deliver_to_inbox,
                &r.created_at,
                &r.created_context,
                &r.updated_at,
                &r.updated_context,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_rule(&self, org: &str, id: &str) -> StoreResult<Option<RuleRow>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 AND id = $2"),
            &[&org, &id],
        )
        .await?
        .as_ref()
        .map(rule_from)
        .transpose()
    }

    async fn list_rules(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<RuleRow>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 AND ($2::text IS NULL OR id > $2::text) ORDER BY id LIMIT $3"
            ),
            &[&org, &after, &(limit as i64)],
        )
        .await?
        .iter()
        .map(rule_from)
        .collect()
    }

    async fn update_rule(&self, r: RuleRow) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE alert_rules SET facility_id = $3, granularity = $4, aggregate = $5, op = $6,
                   threshold = $7, clear_threshold = $8, for_buckets = $9, severity = $10,
                   deliver_to_inbox = $11, updated_at = $12, updated_context = $13
                 WHERE org_id = $1 AND id = $2",
                &[
                    &r.org_id,
                    &r.id,
                    &r.facility_id,
                    &r.granularity.as_str(),
                    &name_of(&r.aggregate),
                    &name_of(&r.op),
                    &r.threshold,
                    &r.clear_threshold,
                    &i64::from(r.for_buckets),
                    &name_of(&r.severity),
                    &r.deliver_to_inbox,
                    &r.updated_at,
                    &r.updated_context,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_rule(&self, org: &str, id: &str) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM alert_rules WHERE org_id = $1 AND id = $2",
                &[&org, &id],
            )
            .await?;
        if n == 1 {
            tx.execute("DELETE FROM alert_series WHERE rule_id = $1", &[&id])
                .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn list_alerts(
        &self,
        org: &str,
        state: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AlertRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE org_id = $1
                   AND ($2::text IS NULL OR state = $2::text)
                   AND ($3::text IS NULL OR id > $3::text) ORDER BY id LIMIT $4"
            ))
            .await?;
        let rows = c
            .query(&st, &[&org, &state, &after, &(limit as i64)])
            .await?;
        Ok(rows.iter().map(alert_from).collect())
    }
}
