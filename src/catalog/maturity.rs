//! The maturity scorecard (SPEC §5): per event type and per service, which quality checks pass,
//! why, and the resulting level.
//!
//! Levels: `gold` = every check passes; `silver` = schema, specimen_validates, owner and
//! not_deprecated pass; `bronze` = schema passes; `unrated` otherwise. A service's level is the
//! lowest level among its event types (`unrated` when it has none).

use serde::Serialize;
use utoipa::ToSchema;

use super::Catalog;
use super::checks::{covers, personal_data_fields};
use super::event::CompiledVersion;
use super::model::{EventTypeEntry, Status};

/// Maturity level, ordered `unrated < bronze < silver < gold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Not even a schema for every version.
    Unrated,
    /// Schemas everywhere.
    Bronze,
    /// Schemas, validating specimens, an owner, not deprecated.
    Silver,
    /// Every check passes.
    Gold,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckOutcome {
    /// Whether the check passes.
    pub pass: bool,
    /// Why, in one sentence.
    pub reason: String,
}

impl CheckOutcome {
    fn pass(reason: impl Into<String>) -> Self {
        Self {
            pass: true,
            reason: reason.into(),
        }
    }
    fn fail(reason: impl Into<String>) -> Self {
        Self {
            pass: false,
            reason: reason.into(),
        }
    }
}

/// The six maturity checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MaturityChecks {
    /// Every version has a JSON Schema.
    pub schema: CheckOutcome,
    /// Every version has at least one specimen, and it validates against the schema.
    pub specimen_validates: CheckOutcome,
    /// The type is used by a lifecycle (transition or `entered_by`) or declared `not_lifecycle_bound`.
    pub lifecycle_coverage: CheckOutcome,
    /// Redaction metadata covers every personal-data-looking field, or is explicitly empty.
    pub redaction_metadata: CheckOutcome,
    /// The type has an owner (own or inherited from the service).
    pub owner: CheckOutcome,
    /// The type is not deprecated.
    pub not_deprecated: CheckOutcome,
}

impl MaturityChecks {
    fn all(&self) -> [(&'static str, &CheckOutcome); 6] {
        [
            ("schema", &self.schema),
            ("specimen_validates", &self.specimen_validates),
            ("lifecycle_coverage", &self.lifecycle_coverage),
            ("redaction_metadata", &self.redaction_metadata),
            ("owner", &self.owner),
            ("not_deprecated", &self.not_deprecated),
        ]
    }

    fn level(&self) -> Level {
        if self.all().iter().all(|(_, c)| c.pass) {
            Level::Gold
        } else if self.schema.pass
            && self.specimen_validates.pass
            && self.owner.pass
            && self.not_deprecated.pass
        {
            Level::Silver
        } else if self.schema.pass {
            Level::Bronze
        } else {
            Level::Unrated
        }
    }
}

/// Maturity of one event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventTypeMaturity {
    /// Event type.
    pub event_type: String,
    /// Its service.
    pub service: String,
    /// Check outcomes.
    pub checks: MaturityChecks,
    /// Number of passing checks (of 6).
    pub passed: usize,
    /// Resulting level.
    pub level: Level,
}

/// Maturity of one service: each check passes when it passes for every event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ServiceMaturity {
    /// Service.
    pub service: String,
    /// Number of event types.
    pub event_types: usize,
    /// Aggregated check outcomes; reasons name the failing types.
    pub checks: MaturityChecks,
    /// Lowest level among its event types.
    pub level: Level,
}

/// The whole scorecard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Scorecard {
    /// Per service, sorted by service.
    pub services: Vec<ServiceMaturity>,
    /// Per event type, sorted by name.
    pub event_types: Vec<EventTypeMaturity>,
}

impl Catalog {
    /// Computes the maturity scorecard.
    pub fn maturity(&self) -> Scorecard {
        let event_types: Vec<EventTypeMaturity> = self
            .types
            .iter()
            .zip(&self.compiled)
            .map(|(t, c)| self.type_maturity(t, c))
            .collect();
        let services = self
            .services
            .iter()
            .map(|s| {
                let mine: Vec<&EventTypeMaturity> = event_types
                    .iter()
                    .filter(|m| m.service == s.service)
                    .collect();
                let agg = |pick: fn(&MaturityChecks) -> &CheckOutcome| {
                    let failing: Vec<&str> = mine
                        .iter()
                        .filter(|m| !pick(&m.checks).pass)
                        .map(|m| m.event_type.as_str())
                        .collect();
                    if mine.is_empty() {
                        CheckOutcome::fail("the service has no event types")
                    } else if failing.is_empty() {
                        CheckOutcome::pass(format!("passes for all {} event types", mine.len()))
                    } else {
                        CheckOutcome::fail(format!("fails for {}", failing.join(", ")))
                    }
                };
                ServiceMaturity {
                    service: s.service.clone(),
                    event_types: mine.len(),
                    checks: MaturityChecks {
                        schema: agg(|c| &c.schema),
                        specimen_validates: agg(|c| &c.specimen_validates),
                        lifecycle_coverage: agg(|c| &c.lifecycle_coverage),
                        redaction_metadata: agg(|c| &c.redaction_metadata),
                        owner: agg(|c| &c.owner),
                        not_deprecated: agg(|c| &c.not_deprecated),
                    },
                    level: mine.iter().map(|m| m.level).min().unwrap_or(Level::Unrated),
                }
            })
            .collect();
        Scorecard {
            services,
            event_types,
        }
    }

    fn type_maturity(&self, t: &EventTypeEntry, compiled: &[CompiledVersion]) -> EventTypeMaturity {
        let checks = MaturityChecks {
            schema: schema_check(t),
            specimen_validates: specimen_check(t, compiled),
            lifecycle_coverage: self.lifecycle_check(t),
            redaction_metadata: redaction_check(t),
            owner: match (&t.owner, t.owner_declared) {
                (Some(o), true) => CheckOutcome::pass(format!("owned by {o}")),
                (Some(o), false) => {
                    CheckOutcome::pass(format!("owned by {o} (inherited from the service)"))
                }
                (None, _) => CheckOutcome::fail("no owner in the event file or in service.toml"),
            },
            not_deprecated: match (&t.status, &t.deprecation) {
                (Status::Deprecated, Some(d)) => {
                    CheckOutcome::fail(format!("deprecated since {}: {}", d.since, d.message))
                }
                (Status::Deprecated, None) => CheckOutcome::fail("deprecated"),
                (s, _) => CheckOutcome::pass(format!("status is {}", s.as_str())),
            },
        };
        EventTypeMaturity {
            event_type: t.event_type.clone(),
            service: t.service.clone(),
            passed: checks.all().iter().filter(|(_, c)| c.pass).count(),
            level: checks.level(),
            checks,
        }
    }

    fn lifecycle_check(&self, t: &EventTypeEntry) -> CheckOutcome {
        for l in &self.lifecycles {
            if let Some(tr) = l
                .transitions
                .iter()
                .find(|tr| tr.event_type == t.event_type)
            {
                return CheckOutcome::pass(format!(
                    "transition {} -> {} of lifecycle `{}`",
                    tr.from, tr.to, l.entity
                ));
            }
            if l.entered_by.contains(&t.event_type) {
                return CheckOutcome::pass(format!(
                    "enters lifecycle `{}` in state {}",
                    l.entity, l.initial
                ));
            }
        }
        match &t.not_lifecycle_bound {
            Some(why) => CheckOutcome::pass(format!("documented as not lifecycle-bound: {why}")),
            None => CheckOutcome::fail(
                "not used by any lifecycle and not documented as not_lifecycle_bound",
            ),
        }
    }
}

fn missing_versions(t: &EventTypeEntry, pred: impl Fn(u32) -> bool) -> String {
    t.versions
        .iter()
        .map(|v| v.version)
        .filter(|&v| pred(v))
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn schema_check(t: &EventTypeEntry) -> CheckOutcome {
    let missing = missing_versions(t, |n| {
        t.versions
            .iter()
            .any(|v| v.version == n && v.schema.is_none())
    });
    if missing.is_empty() {
        CheckOutcome::pass(format!(
            "{} version(s), each with a JSON Schema",
            t.versions.len()
        ))
    } else {
        CheckOutcome::fail(format!("no JSON Schema for {missing}"))
    }
}

fn specimen_check(t: &EventTypeEntry, compiled: &[CompiledVersion]) -> CheckOutcome {
    let no_schema = missing_versions(t, |n| {
        compiled
            .iter()
            .any(|v| v.version == n && v.validator.is_none())
    });
    let no_specimen = missing_versions(t, |n| {
        compiled
            .iter()
            .any(|v| v.version == n && v.specimens.is_empty())
    });
    if !no_specimen.is_empty() {
        CheckOutcome::fail(format!("no specimen for {no_specimen}"))
    } else if !no_schema.is_empty() {
        CheckOutcome::fail(format!(
            "no schema to validate the specimens of {no_schema} against"
        ))
    } else {
        let n: usize = compiled.iter().map(|v| v.specimens.len()).sum();
        CheckOutcome::pass(format!("{n} specimen(s) validate against their schemas"))
    }
}

fn redaction_check(t: &EventTypeEntry) -> CheckOutcome {
    let mut fields: Vec<String> = t
        .versions
        .iter()
        .filter_map(|v| v.schema.as_ref())
        .flat_map(personal_data_fields)
        .collect();
    fields.sort();
    fields.dedup();
    if !t.redaction_declared {
        return if fields.is_empty() {
            CheckOutcome::pass("no personal-data-looking fields")
        } else {
            CheckOutcome::fail(format!(
                "no redaction metadata, but personal-data-looking fields: {}",
                fields.join(", ")
            ))
        };
    }
    if t.redaction.is_empty() {
        return CheckOutcome::pass("explicitly declared empty");
    }
    let uncovered: Vec<&str> = fields
        .iter()
        .filter(|f| !t.redaction.iter().any(|r| covers(&r.pointer, f)))
        .map(String::as_str)
        .collect();
    if uncovered.is_empty() {
        CheckOutcome::pass(format!("{} field(s) described", t.redaction.len()))
    } else {
        CheckOutcome::fail(format!(
            "personal-data-looking fields without redaction metadata: {}",
            uncovered.join(", ")
        ))
    }
}
