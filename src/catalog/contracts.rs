//! Export contracts (SPEC §5): per service, what a consumer of its stream can rely on.

use serde::Serialize;
use utoipa::ToSchema;

use super::Catalog;
use super::model::{ServiceEntry, Status};

/// Schema versions of one event type in a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TypeVersions {
    /// Event type.
    pub event_type: String,
    /// Status of the type.
    pub status: Status,
    /// Every schema version, ascending.
    pub versions: Vec<u32>,
    /// Highest version.
    pub latest_version: u32,
}

/// Delivery guarantees per surface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeliverySemantics {
    /// Webhooks: `at-least-once` (stable `webhook-id`; dedupe on it or on the dedupe key).
    pub webhooks: String,
    /// CDC paging: `exactly-once-in-order` when following `next_cursor`.
    pub cdc: String,
    /// Export files: `exactly-once-in-order` across incremental exports chained by `from_cursor`.
    pub exports: String,
}

/// The export contract of one service's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExportContract {
    /// Service whose stream this is.
    pub service: String,
    /// Description of the service.
    pub summary: String,
    /// Owning team.
    pub owner: Option<String>,
    /// Event types in the stream, sorted, with their schema versions.
    pub event_types: Vec<TypeVersions>,
    /// Serialization of bulk surfaces: always `ndjson` (one stored envelope per line).
    pub format: String,
    /// Ordering: `sequence ascending` (commit order of the store).
    pub ordering: String,
    /// Delivery semantics per surface.
    pub delivery: DeliverySemantics,
    /// Fields of the dedupe key: `org_id`, `event_id`, `occurred_at` (as an instant).
    pub dedupe_key: Vec<String>,
    /// How cursors behave.
    pub cursor: String,
    /// Retention statement.
    pub retention: String,
    /// Retention in days when the service narrows the server default.
    pub retention_days: Option<u32>,
    /// Surfaces serving this stream: a subset of `cdc`, `webhooks`, `exports`.
    pub surfaces: Vec<String>,
    /// Free-form notes from the service's `[contract]` table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl Catalog {
    /// Every service's export contract, sorted by service.
    pub fn contracts(&self) -> Vec<ExportContract> {
        self.services.iter().map(|s| self.contract_of(s)).collect()
    }

    /// The export contract of `service`, if the catalog has it.
    pub fn contract(&self, service: &str) -> Option<ExportContract> {
        self.services
            .iter()
            .find(|s| s.service == service)
            .map(|s| self.contract_of(s))
    }

    fn contract_of(&self, s: &ServiceEntry) -> ExportContract {
        let event_types = self
            .types
            .iter()
            .filter(|t| t.service == s.service)
            .map(|t| TypeVersions {
                event_type: t.event_type.clone(),
                status: t.status,
                versions: t.versions.iter().map(|v| v.version).collect(),
                latest_version: t.latest_version,
            })
            .collect();
        let retention = match s.retention_days {
            Some(d) => format!("events are kept at least {d} days; older events may be purged (cursor before the retained range: 410 cursor_expired)"),
            None => "server setting retention.days (default: keep all); a cursor before the retained range answers 410 cursor_expired".into(),
        };
        ExportContract {
            service: s.service.clone(),
            summary: s.summary.clone(),
            owner: s.owner.clone(),
            event_types,
            format: "ndjson".into(),
            ordering: "sequence ascending".into(),
            delivery: DeliverySemantics {
                webhooks: "at-least-once".into(),
                cdc: "exactly-once-in-order".into(),
                exports: "exactly-once-in-order".into(),
            },
            dedupe_key: vec!["org_id".into(), "event_id".into(), "occurred_at".into()],
            cursor: "opaque keyset position after the last returned event, bound to the filters it was issued for; resume with it to continue without gaps or overlap (CDC next_cursor, export from_cursor, replay cursor)".into(),
            retention,
            retention_days: s.retention_days,
            surfaces: s.surfaces.clone(),
            notes: s.contract_notes.clone(),
        }
    }
}
