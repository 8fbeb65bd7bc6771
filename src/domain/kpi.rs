//! KPI buckets and alert rule semantics (SPEC §9): granularities, aggregates, comparison with
//! hysteresis. Pure: the store keeps the rollups, this module says what they mean.
use serde::{Deserialize, Serialize};

/// A bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Granularity {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "hour")]
    Hour,
    #[serde(rename = "day")]
    Day,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 3] = [
        Granularity::FiveMinutes,
        Granularity::Hour,
        Granularity::Day,
    ];

    /// The width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Granularity::FiveMinutes => 300_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::FiveMinutes => "5m",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The start (Unix ms, UTC-aligned) of the bucket holding `ms`.
    pub fn bucket_of(self, ms: i64) -> i64 {
        ms.div_euclid(self.millis()) * self.millis()
    }
}

/// How a rule reduces a bucket to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Avg,
    Min,
    Max,
    Sum,
    Last,
    Count,
}

/// A comparison operator; the rule breaches when `value op threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    /// `value op threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Gte => value >= threshold,
            Op::Lt => value < threshold,
            Op::Lte => value <= threshold,
        }
    }

    /// True when `clear` lies on the non-breaching side of `threshold` (or equals it), as
    /// hysteresis needs: for `gt`/`gte` the clear threshold is not above the threshold.
    pub fn valid_clear(self, threshold: f64, clear: f64) -> bool {
        match self {
            Op::Gt | Op::Gte => clear <= threshold,
            Op::Lt | Op::Lte => clear >= threshold,
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// The aggregate state of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub last_value: f64,
    /// Observation instant of `last_value` (Unix ns); a later or equal instant replaces it, so
    /// among equal instants the snapshot written last wins.
    pub last_at: i64,
}

impl Agg {
    /// A bucket of one snapshot.
    pub fn one(value: f64, at: i64) -> Self {
        Agg {
            count: 1,
            min: value,
            max: value,
            sum: value,
            last_value: value,
            last_at: at,
        }
    }

    /// Folds a newer write into this bucket.
    pub fn merge(&mut self, o: &Agg) {
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        if o.last_at >= self.last_at {
            self.last_value = o.last_value;
            self.last_at = o.last_at;
        }
    }

    /// The mean.
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The value a rule compares.
    pub fn value(&self, a: Aggregate) -> f64 {
        match a {
            Aggregate::Avg => self.avg(),
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Sum => self.sum,
            Aggregate::Last => self.last_value,
            Aggregate::Count => self.count as f64,
        }
    }
}

/// The comparison part of a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub threshold: f64,
    /// Hysteresis: a firing alert resolves only once the value no longer satisfies
    /// `value op clear_threshold`. None = the threshold itself.
    pub clear_threshold: Option<f64>,
}

impl Condition {
    /// Does the value breach (start or continue a pending/firing run)?
    pub fn breaches(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }

    /// Has a firing alert cleared?
    pub fn clears(&self, value: f64) -> bool {
        !self
            .op
            .holds(value, self.clear_threshold.unwrap_or(self.threshold))
    }
}

/// What one evaluation does to a (rule, facility) series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes.
    Stay,
    /// Open a new instance as `pending`.
    Pending,
    /// Open a new instance directly as `firing` (`for_buckets` = 1, or a streak completed).
    OpenFiring,
    /// The pending instance fires.
    Fire,
    /// The open instance resolves (pending: dropped without having fired).
    Resolve,
}

/// The open instance's state, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    None,
    Pending,
    Firing,
}

/// One evaluation of a bucket: `streak` counts consecutive breaching buckets ending at this
/// one (capped at `for_buckets`); `current` is false for a bucket older than the newest bucket
/// already evaluated, which may open or advance an alert but never resolve one.
pub fn step(
    open: Open,
    c: &Condition,
    value: f64,
    streak: u32,
    for_buckets: u32,
    current: bool,
) -> Step {
    let breach = c.breaches(value);
    match open {
        Open::None if breach && streak >= for_buckets => Step::OpenFiring,
        Open::None if breach => Step::Pending,
        Open::None => Step::Stay,
        Open::Pending if breach && streak >= for_buckets => Step::Fire,
        Open::Pending if !breach && current => Step::Resolve,
        Open::Pending => Step::Stay,
        Open::Firing if current && c.clears(value) => Step::Resolve,
        Open::Firing => Step::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_utc() {
        assert_eq!(Granularity::Hour.bucket_of(3_600_000 + 5), 3_600_000);
        assert_eq!(Granularity::FiveMinutes.bucket_of(-1), -300_000);
    }

    #[test]
    fn hysteresis_needs_the_clear_threshold() {
        let c = Condition {
            op: Op::Gt,
            threshold: 90.0,
            clear_threshold: Some(80.0),
        };
        assert_eq!(step(Open::None, &c, 95.0, 1, 1, true), Step::OpenFiring);
        assert_eq!(step(Open::Firing, &c, 85.0, 0, 1, true), Step::Stay);
        assert_eq!(step(Open::Firing, &c, 80.0, 0, 1, true), Step::Resolve);
        assert_eq!(step(Open::Firing, &c, 70.0, 0, 1, false), Step::Stay);
        assert_eq!(step(Open::None, &c, 95.0, 1, 3, true), Step::Pending);
        assert_eq!(step(Open::Pending, &c, 95.0, 3, 3, true), Step::Fire);
    }
}
