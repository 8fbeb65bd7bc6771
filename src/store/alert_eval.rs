//! The backend-neutral part of alert evaluation (docs/kpis.md): which buckets a write makes a
//! (rule, facility) series re-evaluate, the breach streak of each, the state machine step, the
//! alert rows it produces and the effects (events, inbox items) of fired/resolved transitions.
//!
//! A backend reads the series state (`alert_series`, the open alert), the newest bucket and the
//! rollups through a lookup, then writes back the alert rows and the series state, all inside
//! the snapshot write's transaction.
use crate::domain::ids::IdKind;
use crate::domain::kpi::{Agg, Condition, Open, Step, step};
use crate::store::kpis::{AlertEffects, AlertRow, RuleRow, Transition, TransitionKind};
use crate::store::{EventRow, InboxRow};
use std::collections::BTreeSet;

/// Most buckets one rule re-evaluates per write (a batch spanning more evaluates the newest).
pub(crate) const MAX_EVAL_BUCKETS: usize = 2_000;

/// Everything one write produces besides rollups.
pub(crate) struct Effects {
    pub(crate) events: Vec<EventRow>,
    pub(crate) inbox: Vec<InboxRow>,
    pub(crate) transitions: usize,
    /// Monotonic alert ids within one write.
    ids: ulid::Generator,
}

impl Effects {
    pub(crate) fn new() -> Self {
        Self {
            events: Vec::new(),
            inbox: Vec::new(),
            transitions: 0,
            ids: ulid::Generator::new(),
        }
    }
}

/// The stored evaluation state of one series.
pub(crate) struct SeriesState {
    /// The newest bucket evaluated (`i64::MIN` when none).
    pub(crate) last_bucket: i64,
    /// The pending or firing alert, if any.
    pub(crate) open: Option<AlertRow>,
}

/// The buckets to evaluate, ascending: every changed bucket and the `for_buckets - 1` after it
/// (their streaks may have changed) up to `head`, plus `head`; at most [`MAX_EVAL_BUCKETS`]
/// (the newest).
pub(crate) fn candidates(rule: &RuleRow, changed: &BTreeSet<i64>, head: i64) -> Vec<i64> {
    let g = rule.granularity.millis();
    let n = rule.for_buckets.max(1);
    let mut out = BTreeSet::new();
    for b in changed {
        for k in 0..i64::from(n) {
            let x = b + k * g;
            if x <= head {
                out.insert(x);
            }
        }
    }
    out.insert(head);
    let skip = out.len().saturating_sub(MAX_EVAL_BUCKETS);
    out.into_iter().skip(skip).collect()
}

/// Every bucket [`evaluate`] may look up for `candidates` (each and the `for_buckets - 1`
/// before it).
pub(crate) fn lookups(rule: &RuleRow, candidates: &[i64]) -> BTreeSet<i64> {
    let g = rule.granularity.millis();
    let n = rule.for_buckets.max(1);
    let mut out = BTreeSet::new();
    for b in candidates {
        for k in 0..i64::from(n) {
            out.insert(b - k * g);
        }
    }
    out
}

fn push_history(a: &mut AlertRow, state: &str, at: &str, value: f64, bucket: i64) {
    let mut h: Vec<serde_json::Value> = serde_json::from_str(&a.history).unwrap_or_default();
    h.push(serde_json::json!({
        "state": state, "at": at, "value": value,
        "bucket_start": crate::domain::time::format_utc(
            chrono::DateTime::from_timestamp_millis(bucket).unwrap_or_default()),
    }));
    a.history = serde_json::Value::Array(h).to_string();
    a.state = state.to_string();
    a.value = value;
    a.bucket_start = bucket;
}

fn emit(
    effects: &dyn AlertEffects,
    out: &mut Effects,
    kind: TransitionKind,
    a: &AlertRow,
    rule: &RuleRow,
) {
    let (event, inbox) = effects.effects(&Transition {
        kind,
        alert: a.clone(),
        rule: rule.clone(),
    });
    out.events.extend(event);
    out.inbox.extend(inbox);
}

/// Evaluates one (rule, facility `fac`, '' = org-wide) series over `candidates` (from
/// [`candidates`]), reading rollups of the rule's granularity through `lookup`. Updates `state`
/// and returns the alert rows to upsert, in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate<E>(
    rule: &RuleRow,
    fac: &str,
    candidates: &[i64],
    state: &mut SeriesState,
    lookup: &mut dyn FnMut(i64) -> Result<Option<Agg>, E>,
    now: &str,
    effects: &dyn AlertEffects,
    out: &mut Effects,
) -> Result<Vec<AlertRow>, E> {
    let g = rule.granularity.millis();
    let org = rule.org_id.as_str();
    let n = rule.for_buckets.max(1);
    let cond = Condition {
        op: rule.op,
        threshold: rule.threshold,
        clear_threshold: rule.clear_threshold,
    };
    let facility = (!fac.is_empty()).then(|| fac.to_string());
    let mut saves = Vec::new();
    for &b in candidates {
        let Some(agg) = lookup(b)? else {
            continue;
        };
        let value = agg.value(rule.aggregate);
        let mut streak = 0u32;
        while streak < n {
            let at = b - i64::from(streak) * g;
            let v = if streak == 0 { Some(agg) } else { lookup(at)? };
            match v {
                Some(a) if cond.breaches(a.value(rule.aggregate)) => streak += 1,
                _ => break,
            }
        }
        let open_state = match state.open.as_ref().map(|a| a.state.as_str()) {
            Some("pending") => Open::Pending,
            Some("firing") => Open::Firing,
            _ => Open::None,
        };
        let s = step(open_state, &cond, value, streak, n, b >= state.last_bucket);
        state.last_bucket = state.last_bucket.max(b);
        let fresh = |ids: &mut ulid::Generator| AlertRow {
            id: format!(
                "{}{}",
                IdKind::Alert.prefix(),
                ids.generate().unwrap_or_else(|_| ulid::Ulid::generate())
            ),
            org_id: org.to_string(),
            rule_id: rule.id.clone(),
            kpi: rule.kpi.clone(),
            facility_id: facility.clone(),
            state: String::new(),
            value,
            threshold: rule.threshold,
            bucket_start: b,
            started_at: now.to_string(),
            fired_at: None,
            resolved_at: None,
            history: "[]".into(),
        };
        let kind = match s {
            Step::Stay => continue,
            Step::Pending => {
                let mut a = fresh(&mut out.ids);
                push_history(&mut a, "pending", now, value, b);
                saves.push(a.clone());
                state.open = Some(a);
                None
            }
            Step::OpenFiring | Step::Fire => {
                let mut a = match (s, state.open.take()) {
                    (Step::Fire, Some(a)) => a,
                    _ => fresh(&mut out.ids),
                };
                a.fired_at = Some(now.to_string());
                push_history(&mut a, "firing", now, value, b);
                saves.push(a.clone());
                state.open = Some(a);
                Some(TransitionKind::Fired)
            }
            Step::Resolve => {
                let Some(mut a) = state.open.take() else {
                    continue;
                };
                let fired = a.state == "firing";
                a.resolved_at = Some(now.to_string());
                push_history(&mut a, "resolved", now, value, b);
                saves.push(a.clone());
                out.transitions += 1;
                if fired {
                    emit(effects, out, TransitionKind::Resolved, &a, rule);
                }
                continue;
            }
        };
        out.transitions += 1;
        if let (Some(k), Some(a)) = (kind, state.open.as_ref()) {
            emit(effects, out, k, a, rule);
        }
    }
    Ok(saves)
}
