//! Storage capabilities of KPI snapshots and alerts (SPEC §9).
//!
//! Invariants every backend keeps:
//! - a snapshot write updates the raw table, the rollups of every granularity (per facility and
//!   org-wide), the KPI listing and — through [`AlertEffects`] — alert instances, their events
//!   and inbox items, all in one transaction: an acknowledged snapshot has been evaluated;
//! - every query is scoped by org.
use super::{EventRow, InboxRow, StoreResult};
use crate::domain::kpi::{Agg, Aggregate, Granularity, Op, Severity};
use async_trait::async_trait;
use std::sync::Arc;

/// One snapshot to record.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub kpi: String,
    pub facility_id: Option<String>,
    /// Unix nanoseconds.
    pub observed_at: i64,
    pub value: f64,
    pub unit: Option<String>,
}

/// One bucket of a KPI series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRow {
    /// Unix ms.
    pub bucket_start: i64,
    pub agg: Agg,
}

/// A known KPI and its latest value.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiRow {
    pub kpi: String,
    pub unit: Option<String>,
    pub last_value: f64,
    /// Unix ns.
    pub last_at: i64,
    pub last_facility_id: Option<String>,
    pub snapshots: i64,
}

/// A stored alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub id: String,
    pub org_id: String,
    pub kpi: String,
    /// None = org-wide; `each` = every facility separately.
    pub facility_id: Option<String>,
    pub granularity: Granularity,
    pub aggregate: Aggregate,
    pub op: Op,
    pub threshold: f64,
    pub clear_threshold: Option<f64>,
    pub for_buckets: u32,
    pub severity: Severity,
    pub deliver_to_inbox: bool,
    pub created_at: String,
    pub created_context: String,
    pub updated_at: Option<String>,
    pub updated_context: Option<String>,
}

/// An alert instance.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: String,
    pub org_id: String,
    pub rule_id: String,
    pub kpi: String,
    pub facility_id: Option<String>,
    /// `pending` | `firing` | `resolved`.
    pub state: String,
    /// The aggregate at the last transition.
    pub value: f64,
    pub threshold: f64,
    /// The bucket (Unix ms) of the last transition.
    pub bucket_start: i64,
    pub started_at: String,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    /// JSON array of `{state, at, value, bucket_start}`.
    pub history: String,
}

/// Whether an alert fired or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    Fired,
    Resolved,
}

/// A transition that has effects outside the alert (event, inbox item).
#[derive(Debug, Clone)]
pub struct Transition {
    pub kind: TransitionKind,
    pub alert: AlertRow,
    pub rule: RuleRow,
}

/// Builds the event and inbox item of a transition; called inside the write transaction, so it
/// must be pure and quick (the service validates the payload against the catalog).
pub trait AlertEffects: Send + Sync {
    fn effects(&self, t: &Transition) -> (Option<EventRow>, Option<InboxRow>);
}

/// What a snapshot write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub accepted: usize,
    /// Alert transitions (pending, firing, resolved) caused by the write.
    pub transitions: usize,
}

/// KPI snapshots and their buckets.
#[async_trait]
pub trait Kpis: Send + Sync {
    /// Records snapshots of `org` and evaluates the rules they touch, in one transaction.
    async fn record_snapshots(
        &self,
        org: &str,
        rows: Vec<SnapshotRow>,
        effects: Arc<dyn AlertEffects>,
    ) -> StoreResult<Recorded>;
    /// Buckets with `from_ms <= bucket_start < to_ms`, ascending; `facility` None = org-wide.
    async fn buckets(
        &self,
        org: &str,
        kpi: &str,
        facility: Option<&str>,
        granularity: Granularity,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<BucketRow>>;
    /// Known KPIs with `kpi > after`, ascending.
    async fn list_kpis(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<KpiRow>>;
}

/// Alert rules and alert instances.
#[async_trait]
pub trait Alerts: Send + Sync {
    async fn insert_rule(&self, r: RuleRow) -> StoreResult<()>;
    async fn get_rule(&self, org: &str, id: &str) -> StoreResult<Option<RuleRow>>;
    /// `org`'s rules with `id > after`, ascending.
    async fn list_rules(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<RuleRow>>;
    /// Writes every editable field; false when missing.
    async fn update_rule(&self, r: RuleRow) -> StoreResult<bool>;
    /// Deletes a rule and its evaluation state (its alerts stay as history); false when missing.
    async fn delete_rule(&self, org: &str, id: &str) -> StoreResult<bool>;
    /// `org`'s alerts with `id > after`, ascending, optionally in one state.
    async fn list_alerts(
        &self,
        org: &str,
        state: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AlertRow>>;
}

/// Shared handle for effects builders.
pub type DynEffects = Arc<dyn AlertEffects>;

/// (kpi, facility or '' = org-wide, granularity ms, bucket start ms).
pub(crate) type BucketKey = (String, String, i64, i64);

/// A snapshot batch folded the way every backend writes it: one aggregate per touched bucket
/// (per facility and org-wide, every granularity) and per KPI (unit, aggregate, latest facility).
pub(crate) struct Folded<'a> {
    pub buckets: std::collections::BTreeMap<BucketKey, Agg>,
    pub latest: std::collections::BTreeMap<&'a str, (Option<&'a str>, Agg, Option<&'a str>)>,
}

impl<'a> Folded<'a> {
    pub(crate) fn fold(rows: &'a [SnapshotRow]) -> Self {
        let mut f = Folded {
            buckets: std::collections::BTreeMap::new(),
            latest: std::collections::BTreeMap::new(),
        };
        for s in rows {
            let fac = s.facility_id.as_deref().unwrap_or("");
            let one = Agg::one(s.value, s.observed_at);
            let ms = s.observed_at.div_euclid(1_000_000);
            for g in Granularity::ALL {
                let b = g.bucket_of(ms);
                let mut add = |facility: &str| {
                    f.buckets
                        .entry((s.kpi.clone(), facility.to_string(), g.millis(), b))
                        .and_modify(|a| a.merge(&one))
                        .or_insert(one);
                };
                add("");
                if !fac.is_empty() {
                    add(fac);
                }
            }
            match f.latest.get_mut(s.kpi.as_str()) {
                Some(e) => {
                    if one.last_at >= e.1.last_at {
                        e.2 = s.facility_id.as_deref();
                    }
                    e.1.merge(&one);
                    if s.unit.is_some() {
                        e.0 = s.unit.as_deref();
                    }
                }
                None => {
                    f.latest.insert(
                        s.kpi.as_str(),
                        (s.unit.as_deref(), one, s.facility_id.as_deref()),
                    );
                }
            }
        }
        f
    }

    /// The series `rule` evaluates after this batch: facility ('' = org-wide) → changed buckets.
    pub(crate) fn series_of(
        &self,
        rule: &RuleRow,
    ) -> std::collections::BTreeMap<&str, std::collections::BTreeSet<i64>> {
        let g = rule.granularity.millis();
        let mut series: std::collections::BTreeMap<&str, std::collections::BTreeSet<i64>> =
            std::collections::BTreeMap::new();
        for (k, f, gg, b) in self.buckets.keys() {
            if *k != rule.kpi || *gg != g {
                continue;
            }
            let wanted = match rule.facility_id.as_deref() {
                None => f.is_empty(),
                Some("each") => !f.is_empty(),
                Some(x) => f == x,
            };
            if wanted {
                series.entry(f.as_str()).or_default().insert(*b);
            }
        }
        series
    }
}
