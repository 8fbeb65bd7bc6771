//! The catalog's public data model, as served by the HTTP layer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Lifecycle status of an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Still being designed; may change without notice.
    Draft,
    /// Supported; changes only by adding a new schema version.
    Stable,
    /// Still emitted but scheduled for removal; see [`Deprecation`].
    Deprecated,
}

impl Status {
    /// The lower-case name used in files and query filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Stable => "stable",
            Status::Deprecated => "deprecated",
        }
    }
}

/// Deprecation notice of a deprecated event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Deprecation {
    /// Date (`YYYY-MM-DD`) from which the type is deprecated.
    pub since: String,
    /// What consumers should do instead.
    pub message: String,
    /// The event type replacing this one, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// Kind of sensitive data a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Personally identifiable information (names, emails, phones, addresses).
    Pii,
    /// Protected health information.
    Phi,
    /// Credentials, tokens, keys.
    Secret,
    /// Payment card or bank data.
    Financial,
    /// Internal business data not meant for partners.
    Confidential,
}

/// What the producer already did to a sensitive field before publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The field is never present in published payloads.
    Removed,
    /// The value is partially masked (e.g. `j***@example.com`).
    Masked,
    /// The value is replaced by a keyed hash, stable per value.
    Hashed,
    /// The value is replaced by an opaque token resolvable only by the owner.
    Tokenized,
    /// Published as is; consumers must protect it.
    None,
}

/// Field-level redaction metadata: describes what producers already redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RedactionRule {
    /// JSON pointer into the payload; `*` stands for any array index.
    pub pointer: String,
    /// Kind of data.
    pub classification: Classification,
    /// How it was redacted.
    pub strategy: Strategy,
    /// Free-form note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One schema version of an event type.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SchemaVersion {
    /// Positive version number, matched against the envelope's `schema_version`.
    pub version: u32,
    /// The payload's JSON Schema (draft 2020-12), absent when the catalog has none.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    /// Number of specimens for this version.
    pub specimen_count: usize,
    /// What changed compared to the previous version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
}

/// One event type of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventTypeEntry {
    /// `service.entity.action`.
    pub event_type: String,
    /// First segment of the type; equals the catalog folder.
    pub service: String,
    /// Second segment: the entity the event is about.
    pub entity: String,
    /// Third segment: what happened.
    pub action: String,
    /// One-line description.
    pub summary: String,
    /// Owning team of the type (falls back to the service owner when absent in the file).
    pub owner: Option<String>,
    /// Whether the owner comes from the event file (`false`: inherited from the service).
    pub owner_declared: bool,
    /// Draft, stable or deprecated.
    pub status: Status,
    /// Set when `status` is `deprecated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecation: Option<Deprecation>,
    /// Why this type is not part of any lifecycle, when it deliberately is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_lifecycle_bound: Option<String>,
    /// Redaction rules; `redaction_declared` tells an explicit empty list from a missing one.
    pub redaction: Vec<RedactionRule>,
    /// Whether the file declares redaction metadata at all (possibly an empty list).
    pub redaction_declared: bool,
    /// Schema versions, ascending.
    pub versions: Vec<SchemaVersion>,
    /// Highest version number.
    pub latest_version: u32,
}

/// A transition of a lifecycle: the event type that moves the entity from one state to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// Source state.
    pub from: String,
    /// Target state.
    pub to: String,
    /// Event type announcing the transition.
    pub event_type: String,
}

/// An entity's state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Lifecycle {
    /// Service owning the entity.
    pub service: String,
    /// Entity name (unique across the catalog).
    pub entity: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Every state.
    pub states: Vec<String>,
    /// State an entity starts in.
    pub initial: String,
    /// States with no way out.
    pub terminal: Vec<String>,
    /// Event types that create the entity in its initial state.
    pub entered_by: Vec<String>,
    /// Allowed transitions.
    pub transitions: Vec<Transition>,
}

/// A service (one folder of the catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ServiceEntry {
    /// Service name, the first segment of its event types.
    pub service: String,
    /// Description.
    pub summary: String,
    /// Owning team.
    pub owner: Option<String>,
    /// Entities the service owns.
    pub entities: Vec<String>,
    /// Surfaces serving the stream (`cdc`, `webhooks`, `exports`).
    pub surfaces: Vec<String>,
    /// Retention in days for this stream, when the service narrows the server default.
    pub retention_days: Option<u32>,
    /// Free-form contract notes.
    pub contract_notes: Option<String>,
}
