//! Webhook rules (SPEC §6): statuses, filters, the retry schedule and the auto-pause decision.
//! Pure functions; the worker and the store apply them.
use super::FieldError;
use super::filter::{EventAttrs, EventFilter, FilterInput};
use super::names;
use serde::{Deserialize, Serialize};

/// A webhook's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Active,
    Paused,
    Revoked,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "paused" => Self::Paused,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

/// A delivery's status. `pending` waits for its first attempt, `failed` for a retry;
/// `exhausted` ran out of retries; `held` waits for its paused webhook; `skipped` was dropped by
/// `enable {"skip_backlog": true}` (still replayable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
    Exhausted,
    Held,
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Exhausted => "exhausted",
            Self::Held => "held",
            Self::Skipped => "skipped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "exhausted" => Self::Exhausted,
            "held" => Self::Held,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }
}

/// Delivery mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Up to `max_in_flight` attempts at once, in no particular order.
    #[default]
    Concurrent,
    /// One at a time in `sequence` order; a failing event blocks the ones after it.
    Ordered,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Concurrent => "concurrent",
            Self::Ordered => "ordered",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "concurrent" => Self::Concurrent,
            "ordered" => Self::Ordered,
            _ => return None,
        })
    }
}

/// Filters as the API takes and shows them. Empty or absent list = all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilters {
    /// Exact types or the prefix form `orders.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facility_ids: Vec<String>,
}

/// Most entries per filter list.
pub const MAX_FILTER_ENTRIES: usize = 100;

/// A validated webhook filter: the CDC filter semantics (services, types, `orders.*`) plus
/// lists of channels and facilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilter {
    /// Services and event types, exactly as the CDC feed filters them.
    pub base: EventFilter,
    pub channel_ids: Vec<String>,
    pub facility_ids: Vec<String>,
}

impl WebhookFilter {
    /// Validates the API form, collecting every problem.
    pub fn parse(f: &WebhookFilters) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        for (name, list) in [
            ("filters.event_types", &f.event_types),
            ("filters.services", &f.services),
            ("filters.channel_ids", &f.channel_ids),
            ("filters.facility_ids", &f.facility_ids),
        ] {
            if list.len() > MAX_FILTER_ENTRIES {
                errors.push(FieldError::new(
                    name,
                    format!("at most {MAX_FILTER_ENTRIES} entries"),
                ));
            }
        }
        let base = EventFilter::parse(FilterInput {
            services: &f.services,
            event_types: &f.event_types,
            ..Default::default()
        })
        .unwrap_or_else(|es| {
            errors.extend(
                es.into_iter()
                    .map(|e| FieldError::new(format!("filters.{}s", e.field), e.message)),
            );
            EventFilter::default()
        });
        for (name, list) in [
            ("filters.channel_ids", &f.channel_ids),
            ("filters.facility_ids", &f.facility_ids),
        ] {
            for v in list {
                if let Err(m) = names::check_scope_id(v) {
                    errors.push(FieldError::new(name, m));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut channel_ids = f.channel_ids.clone();
        channel_ids.sort();
        channel_ids.dedup();
        let mut facility_ids = f.facility_ids.clone();
        facility_ids.sort();
        facility_ids.dedup();
        Ok(Self {
            base,
            channel_ids,
            facility_ids,
        })
    }

    /// Does the event match?
    pub fn matches(&self, e: &EventAttrs<'_>) -> bool {
        self.base.matches(e)
            && (self.channel_ids.is_empty()
                || e.channel_id
                    .is_some_and(|c| self.channel_ids.iter().any(|x| x == c)))
            && (self.facility_ids.is_empty()
                || e.facility_id
                    .is_some_and(|c| self.facility_ids.iter().any(|x| x == c)))
    }
}

/// The default retry schedule (seconds after each failed attempt).
pub const DEFAULT_RETRY_SCHEDULE: [u64; 9] = [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200];
/// `Retry-After` is honoured between these bounds (seconds).
pub const RETRY_AFTER_MIN_SECS: u64 = 1;
pub const RETRY_AFTER_MAX_SECS: u64 = 3600;

/// What one attempt produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Any 2xx within the timeout.
    Success,
    /// Anything else: a status code (with `Retry-After` seconds when given), or no answer.
    Failure {
        status: Option<u16>,
        retry_after_secs: Option<u64>,
    },
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    /// Retry in this many milliseconds.
    RetryIn(u64),
    /// No retries left.
    Exhausted,
    /// `410 Gone`: pause the webhook at once (the delivery is held).
    PauseGone,
}

/// Decides the next step after attempt number `attempt` (1-based). `jitter` in [0, 1) picks the
/// point in the ±20 % band. `Retry-After` on 429/503 replaces the scheduled delay, clamped to
/// [`RETRY_AFTER_MIN_SECS`, `RETRY_AFTER_MAX_SECS`]; it never adds attempts.
pub fn next_step(attempt: u32, schedule: &[u64], outcome: AttemptOutcome, jitter: f64) -> NextStep {
    let (status, retry_after) = match outcome {
        AttemptOutcome::Success => return NextStep::Succeeded,
        AttemptOutcome::Failure {
            status,
            retry_after_secs,
        } => (status, retry_after_secs),
    };
    if status == Some(410) {
        return NextStep::PauseGone;
    }
    let Some(base) = schedule.get(attempt.saturating_sub(1) as usize) else {
        return NextStep::Exhausted;
    };
    if matches!(status, Some(429) | Some(503))
        && let Some(ra) = retry_after
    {
        return NextStep::RetryIn(ra.clamp(RETRY_AFTER_MIN_SECS, RETRY_AFTER_MAX_SECS) * 1000);
    }
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    NextStep::RetryIn(((*base as f64) * 1000.0 * factor).round() as u64)
}

/// Auto-pause (SPEC §6): at least `after` attempts in a row failed AND the first of them started
/// at least `min_failing_secs` before `now_ms`.
pub fn should_auto_pause(
    consecutive_failures: u32,
    first_failure_ms: Option<i64>,
    now_ms: i64,
    after: u32,
    min_failing_secs: u64,
) -> bool {
    consecutive_failures >= after.max(1)
        && first_failure_ms.is_some_and(|f| now_ms - f >= (min_failing_secs as i64) * 1000)
}

/// Parses a `Retry-After` header: delta seconds (HTTP dates are rare for webhooks and ignored).
pub fn parse_retry_after(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(s: u16) -> AttemptOutcome {
        AttemptOutcome::Failure {
            status: Some(s),
            retry_after_secs: None,
        }
    }

    #[test]
    fn schedule_jitter_and_exhaustion() {
        let s = DEFAULT_RETRY_SCHEDULE;
        assert_eq!(
            next_step(1, &s, AttemptOutcome::Success, 0.5),
            NextStep::Succeeded
        );
        assert_eq!(next_step(1, &s, fail(500), 0.0), NextStep::RetryIn(4000));
        assert_eq!(next_step(1, &s, fail(500), 1.0), NextStep::RetryIn(6000));
        assert_eq!(next_step(2, &s, fail(500), 0.5), NextStep::RetryIn(30000));
        assert_eq!(
            next_step(9, &s, fail(500), 0.5),
            NextStep::RetryIn(43200 * 1000)
        );
        assert_eq!(next_step(10, &s, fail(500), 0.5), NextStep::Exhausted);
        assert_eq!(next_step(1, &s, fail(410), 0.5), NextStep::PauseGone);
        let ra = |st, secs| AttemptOutcome::Failure {
            status: Some(st),
            retry_after_secs: Some(secs),
        };
        assert_eq!(next_step(1, &s, ra(429, 7), 0.5), NextStep::RetryIn(7000));
        assert_eq!(next_step(1, &s, ra(503, 0), 0.5), NextStep::RetryIn(1000));
        assert_eq!(
            next_step(1, &s, ra(503, 999_999), 0.5),
            NextStep::RetryIn(3_600_000)
        );
        assert_eq!(next_step(1, &s, ra(500, 7), 0.5), NextStep::RetryIn(5000));
        assert_eq!(next_step(10, &s, ra(429, 7), 0.5), NextStep::Exhausted);
    }

    #[test]
    fn auto_pause_needs_both_thresholds() {
        assert!(!should_auto_pause(19, Some(0), 10_000_000, 20, 3600));
        assert!(!should_auto_pause(20, Some(0), 3_599_999, 20, 3600));
        assert!(should_auto_pause(20, Some(0), 3_600_000, 20, 3600));
        assert!(!should_auto_pause(20, None, 3_600_000, 20, 3600));
    }

    #[test]
    fn filters_match_like_cdc() {
        let f = WebhookFilter::parse(&WebhookFilters {
            event_types: vec!["orders.*".into()],
            facility_ids: vec!["fac_1".into(), "fac_2".into()],
            ..Default::default()
        })
        .unwrap();
        let e = EventAttrs {
            service: "orders",
            event_type: "orders.order.created",
            channel_id: None,
            facility_id: Some("fac_2"),
            occurred_at: 0,
        };
        assert!(f.matches(&e));
        assert!(!f.matches(&EventAttrs {
            facility_id: None,
            ..e
        }));
        assert!(!f.matches(&EventAttrs {
            event_type: "billing.x.y",
            service: "billing",
            ..e
        }));
        assert!(
            WebhookFilter::parse(&WebhookFilters {
                services: vec!["Bad".into()],
                ..Default::default()
            })
            .is_err()
        );
    }
}
