//! Alert rules (CRUD with request context), alert instances, and the events and inbox items
//! of their transitions (SPEC §9). Evaluation itself runs inside the snapshot write; see
//! `docs/kpis.md` for the semantics.
use super::kpis::{check_kpi, ms_to_rfc3339};
use super::webhooks::Listed;
use super::{EventValidator, ServiceError, Services};
use crate::domain::FieldError;
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::envelope::NewEvent;
use crate::domain::ids::{IdKind, is_id, new_id};
use crate::domain::kpi::{Aggregate, Granularity, Op, Severity};
use crate::domain::names::check_scope_id;
use crate::domain::time::now_rfc3339;
use crate::store::kpis::{AlertEffects, AlertRow, RuleRow, Transition, TransitionKind};
use crate::store::{EventRow, InboxRow};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Longest `for_buckets`.
pub const MAX_FOR_BUCKETS: u32 = 100;

/// `POST …/alert-rules`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleIn {
    #[schema(pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length = 128)]
    pub kpi: String,
    /// A facility id, `each` (every facility separately), or absent (org-wide).
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub facility_id: Option<String>,
    pub granularity: Granularity,
    pub aggregate: Aggregate,
    pub op: Op,
    pub threshold: f64,
    /// Hysteresis: a firing alert resolves only when the value no longer satisfies
    /// `value op clear_threshold`; on the non-breaching side of `threshold` (or equal).
    pub clear_threshold: Option<f64>,
    /// Consecutive breaching buckets before firing (pending until then). Default 1.
    #[schema(minimum = 1, maximum = 100)]
    pub for_buckets: Option<u32>,
    pub severity: Severity,
    /// Also create an inbox item on firing and resolving.
    #[serde(default)]
    pub deliver_to_inbox: bool,
}

fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH …/alert-rules/{id}`: absent fields keep their value; `null` clears `facility_id`
/// (org-wide) or `clear_threshold`. The KPI cannot change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub facility_id: Option<Option<String>>,
    pub granularity: Option<Granularity>,
    pub aggregate: Option<Aggregate>,
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<f64>)]
    pub clear_threshold: Option<Option<f64>>,
    #[schema(minimum = 1, maximum = 100)]
    pub for_buckets: Option<u32>,
    pub severity: Option<Severity>,
    pub deliver_to_inbox: Option<bool>,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleOut {
    pub id: String,
    pub org_id: String,
    pub kpi: String,
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
    #[schema(value_type = Object)]
    pub created_context: Value,
    pub updated_at: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub updated_context: Option<Value>,
}

/// One transition of an alert.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    pub at: String,
    /// The aggregate that caused the transition.
    pub value: f64,
    /// The bucket evaluated.
    pub bucket_start: String,
}

/// An alert instance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertOut {
    pub id: String,
    pub rule_id: String,
    pub kpi: String,
    pub facility_id: Option<String>,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    pub value: f64,
    pub threshold: f64,
    pub bucket_start: String,
    pub started_at: String,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    pub history: Vec<HistoryEntry>,
}

/// Alert states, as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

fn ctx_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn rule_out(r: RuleRow) -> RuleOut {
    RuleOut {
        id: r.id,
        org_id: r.org_id,
        kpi: r.kpi,
        facility_id: r.facility_id,
        granularity: r.granularity,
        aggregate: r.aggregate,
        op: r.op,
        threshold: r.threshold,
        clear_threshold: r.clear_threshold,
        for_buckets: r.for_buckets,
        severity: r.severity,
        deliver_to_inbox: r.deliver_to_inbox,
        created_at: r.created_at,
        created_context: ctx_json(&r.created_context),
        updated_at: r.updated_at,
        updated_context: r.updated_context.as_deref().map(ctx_json),
    }
}

fn alert_out(a: AlertRow) -> AlertOut {
    AlertOut {
        history: serde_json::from_str(&a.history).unwrap_or_default(),
        bucket_start: ms_to_rfc3339(a.bucket_start),
        id: a.id,
        rule_id: a.rule_id,
        kpi: a.kpi,
        facility_id: a.facility_id,
        state: a.state,
        value: a.value,
        threshold: a.threshold,
        started_at: a.started_at,
        fired_at: a.fired_at,
        resolved_at: a.resolved_at,
    }
}

/// Checks a rule's fields together.
fn check_rule(r: &RuleRow) -> Result<(), ServiceError> {
    let mut e = Vec::new();
    if let Err(m) = check_kpi(&r.kpi) {
        e.push(FieldError::new("kpi", m));
    }
    if let Some(Err(m)) = r.facility_id.as_deref().map(check_scope_id) {
        e.push(FieldError::new("facility_id", m));
    }
    if !r.threshold.is_finite() {
        e.push(FieldError::new("threshold", "must be a finite number"));
    }
    if let Some(c) = r.clear_threshold {
        if !c.is_finite() {
            e.push(FieldError::new(
                "clear_threshold",
                "must be a finite number",
            ));
        } else if !r.op.valid_clear(r.threshold, c) {
            e.push(FieldError::new(
                "clear_threshold",
                "must lie on the non-breaching side of `threshold` (<= for gt/gte, >= for lt/lte)",
            ));
        }
    }
    if !(1..=MAX_FOR_BUCKETS).contains(&r.for_buckets) {
        e.push(FieldError::new(
            "for_buckets",
            format!("must be between 1 and {MAX_FOR_BUCKETS}"),
        ));
    }
    if e.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(e))
    }
}

impl Services {
    async fn load_rule(&self, org: &str, id: &str) -> Result<RuleRow, ServiceError> {
        if !is_id(IdKind::Rule, id) {
            return Err(ServiceError::NotFound("alert rule"));
        }
        self.store
            .get_rule(org, id)
            .await?
            .ok_or(ServiceError::NotFound("alert rule"))
    }

    /// Creates a rule; it evaluates from the next snapshot of its KPI on.
    pub async fn create_rule(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        i: RuleIn,
    ) -> Result<RuleOut, ServiceError> {
        who.can_manage_org(org)?;
        let r = RuleRow {
            id: new_id(IdKind::Rule),
            org_id: org.to_string(),
            kpi: i.kpi,
            facility_id: i.facility_id,
            granularity: i.granularity,
            aggregate: i.aggregate,
            op: i.op,
            threshold: i.threshold,
            clear_threshold: i.clear_threshold,
            for_buckets: i.for_buckets.unwrap_or(1),
            severity: i.severity,
            deliver_to_inbox: i.deliver_to_inbox,
            created_at: ctx.at.clone(),
            created_context: ctx.to_json(),
            updated_at: None,
            updated_context: None,
        };
        check_rule(&r)?;
        self.store.insert_rule(r.clone()).await?;
        Ok(rule_out(r))
    }

    pub async fn get_rule(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
    ) -> Result<RuleOut, ServiceError> {
        who.can_read_org(org)?;
        Ok(rule_out(self.load_rule(org, id).await?))
    }

    pub async fn list_rules(
        &self,
        who: &Principal,
        org: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listed<RuleOut>, ServiceError> {
        who.can_read_org(org)?;
        let after = self.decode_cursor("alert-rules", org, cursor)?;
        let mut rows = self
            .store
            .list_rules(org, after.as_deref(), limit + 1)
            .await?;
        let next_cursor = self.next_cursor("alert-rules", org, &mut rows, limit, |r| &r.id);
        Ok(Listed {
            items: rows.into_iter().map(rule_out).collect(),
            next_cursor,
        })
    }

    pub async fn patch_rule(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
        p: RulePatch,
    ) -> Result<RuleOut, ServiceError> {
        who.can_manage_org(org)?;
        let mut r = self.load_rule(org, id).await?;
        if let Some(f) = p.facility_id {
            r.facility_id = f;
        }
        if let Some(g) = p.granularity {
            r.granularity = g;
        }
        if let Some(a) = p.aggregate {
            r.aggregate = a;
        }
        if let Some(o) = p.op {
            r.op = o;
        }
        if let Some(t) = p.threshold {
            r.threshold = t;
        }
        if let Some(c) = p.clear_threshold {
            r.clear_threshold = c;
        }
        if let Some(n) = p.for_buckets {
            r.for_buckets = n;
        }
        if let Some(s) = p.severity {
            r.severity = s;
        }
        if let Some(d) = p.deliver_to_inbox {
            r.deliver_to_inbox = d;
        }
        r.updated_at = Some(ctx.at.clone());
        r.updated_context = Some(ctx.to_json());
        check_rule(&r)?;
        if !self.store.update_rule(r.clone()).await? {
            return Err(ServiceError::NotFound("alert rule"));
        }
        Ok(rule_out(r))
    }

    pub async fn delete_rule(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        who.can_manage_org(org)?;
        let _ = self.load_rule(org, id).await?;
        if !self.store.delete_rule(org, id).await? {
            return Err(ServiceError::NotFound("alert rule"));
        }
        Ok(())
    }

    /// The org's alert instances, oldest first, with their history.
    pub async fn list_alerts(
        &self,
        who: &Principal,
        org: &str,
        state: Option<AlertState>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listed<AlertOut>, ServiceError> {
        who.can_read_org(org)?;
        let st = state.map(AlertState::as_str);
        let scope = format!("alerts:{}", st.unwrap_or(""));
        let after = self.decode_cursor(&scope, org, cursor)?;
        let mut rows = self
            .store
            .list_alerts(org, st, after.as_deref(), limit + 1)
            .await?;
        let next_cursor = self.next_cursor(&scope, org, &mut rows, limit, |a| &a.id);
        Ok(Listed {
            items: rows.into_iter().map(alert_out).collect(),
            next_cursor,
        })
    }

    fn decode_cursor(
        &self,
        scope: &str,
        org: &str,
        cursor: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        cursor
            .map(|c| {
                self.cursors
                    .decode(scope, org.as_bytes(), c)
                    .map_err(|_| ServiceError::InvalidCursor)
            })
            .transpose()
    }

    fn next_cursor<T>(
        &self,
        scope: &str,
        org: &str,
        rows: &mut Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> &String,
    ) -> Option<String> {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        if has_more {
            rows.last()
                .map(|r| self.cursors.encode(scope, org.as_bytes(), key(r)))
        } else {
            None
        }
    }
}

/// Builds `ipm.kpi.alert_fired` / `ipm.kpi.alert_resolved` events and inbox items; runs
/// inside the snapshot write transaction.
pub struct AlertEventBuilder {
    pub validator: Arc<dyn EventValidator>,
    /// The request context of the snapshot write that caused the transitions.
    pub context: String,
    /// Monotonic ids, so the items of one write list in transition order.
    pub ids: std::sync::Mutex<ulid::Generator>,
}

impl AlertEventBuilder {
    /// A builder for one write.
    pub fn new(validator: Arc<dyn EventValidator>, context: String) -> Self {
        Self {
            validator,
            context,
            ids: std::sync::Mutex::new(ulid::Generator::new()),
        }
    }

    fn next_id(&self, kind: IdKind) -> String {
        let u = self
            .ids
            .lock()
            .ok()
            .and_then(|mut g| g.generate().ok())
            .unwrap_or_else(ulid::Ulid::generate);
        format!("{}{u}", kind.prefix())
    }
}

impl AlertEventBuilder {
    fn payload(&self, t: &Transition) -> Value {
        let (a, r) = (&t.alert, &t.rule);
        let mut p = json!({
            "alert_id": a.id, "rule_id": r.id, "kpi": r.kpi, "facility_id": a.facility_id,
            "severity": r.severity, "granularity": r.granularity, "aggregate": r.aggregate,
            "op": r.op, "value": a.value, "threshold": r.threshold,
            "bucket_start": ms_to_rfc3339(a.bucket_start), "fired_at": a.fired_at,
        });
        match t.kind {
            TransitionKind::Fired => {
                p["state"] = json!("firing");
                p["started_at"] = json!(a.started_at);
            }
            TransitionKind::Resolved => {
                p["state"] = json!("resolved");
                p["resolved_at"] = json!(a.resolved_at);
                if let Some(c) = r.clear_threshold {
                    p["clear_threshold"] = json!(c);
                }
            }
        }
        p
    }
}

impl AlertEffects for AlertEventBuilder {
    fn effects(&self, t: &Transition) -> (Option<EventRow>, Option<InboxRow>) {
        let (a, r) = (&t.alert, &t.rule);
        let (event_type, state, kind) = match t.kind {
            TransitionKind::Fired => ("ipm.kpi.alert_fired", "firing", "alert_fired"),
            TransitionKind::Resolved => ("ipm.kpi.alert_resolved", "resolved", "alert_resolved"),
        };
        let payload = self.payload(t);
        if let Some(Err(rej)) = serde_json::value::to_raw_value(&payload)
            .ok()
            .as_deref()
            .map(|p| self.validator.check(event_type, 1, p))
        {
            tracing::error!(event_type, errors = ?rej.errors, "an alert event does not match its schema");
        }
        let mut env = json!({
            "event_id": format!("ipm:{}:{state}", a.id),
            "event_type": event_type,
            "org_id": a.org_id,
            "occurred_at": now_rfc3339(),
            "payload": payload,
        });
        if let Some(f) = &a.facility_id {
            env["facility_id"] = json!(f);
        }
        let event = match NewEvent::parse(&env.to_string()) {
            Ok(e) => Some(EventRow {
                id: self.next_id(IdKind::Event),
                org_id: e.org_id,
                event_id: e.event_id,
                occurred_at: e.occurred_at,
                event_type: e.event_type,
                service: e.service,
                channel_id: e.channel_id,
                facility_id: e.facility_id,
                payload_hash: e.payload_hash,
                rendered: e.rendered,
                context: self.context.clone(),
            }),
            Err(rej) => {
                tracing::error!(event_type, errors = ?rej.errors, "cannot build an alert event");
                None
            }
        };
        let inbox = r.deliver_to_inbox.then(|| {
            let scope = a.facility_id.as_deref().unwrap_or("the org");
            InboxRow {
                id: self.next_id(IdKind::Inbox),
                org_id: a.org_id.clone(),
                kind: kind.into(),
                severity: match t.kind {
                    TransitionKind::Fired => serde_json::to_value(r.severity)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "warning".into()),
                    TransitionKind::Resolved => "info".into(),
                },
                title: format!("{} {state} for {scope}", r.kpi),
                body: format!(
                    "{} of {} per {} is {} (threshold {} {}).",
                    serde_json::to_value(r.aggregate)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    r.kpi,
                    r.granularity.as_str(),
                    a.value,
                    serde_json::to_value(r.op)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    r.threshold
                ),
                ref_type: "alert".into(),
                ref_id: a.id.clone(),
                created_at: now_rfc3339(),
                acked_at: None,
                acked_context: None,
            }
        });
        (event, inbox)
    }
}
