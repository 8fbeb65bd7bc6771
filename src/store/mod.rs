//! Storage behind capability traits. The SQLite implementation lives in [`sqlite`];
//! every backend must pass the conformance suite in `tests/api/conformance.rs`.
//!
//! Invariant: every query that reads an org's data is scoped by `org_id`.
pub(crate) mod alert_eval;
pub(crate) mod fanout;
pub mod files;
pub mod jobs;
pub mod kpis;
pub mod postgres;
pub mod sqlite;
pub mod webhooks;

pub use webhooks::{
    AttemptRecord, AttemptRow, ClaimSlot, Claimed, Deliveries, DeliveryRow, Inbox, InboxRow,
    NewDelivery, PauseChange, Recorded, WebhookRow, Webhooks,
};

pub use jobs::{JobErrorRow, JobRow, Jobs};

pub use kpis::{Alerts, Kpis};

use crate::domain::filter::EventFilter;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::watch;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, SQL, pool); the message is for logs, not for clients.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A uniqueness rule was violated.
    #[error("conflict: {0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// An event ready to append (validated and rendered by the domain layer).
#[derive(Debug, Clone)]
pub struct EventRow {
    /// IPM's id (`evt_…`).
    pub id: String,
    pub org_id: String,
    pub event_id: String,
    /// Dedupe instant (Unix nanoseconds).
    pub occurred_at: i64,
    pub event_type: String,
    pub service: String,
    pub channel_id: Option<String>,
    pub facility_id: Option<String>,
    pub payload_hash: String,
    /// The producer's envelope, rendered (see `domain::envelope::render_stored`).
    pub rendered: String,
    /// IPM's request context of the write, as JSON.
    pub context: String,
}

/// What happened to one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored with this sequence.
    Accepted { id: String, sequence: i64 },
    /// Already stored under the same dedupe key.
    Duplicate { id: String, payload_mismatch: bool },
}

/// One stored event as the CDC feed serves it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub sequence: i64,
    /// The stored envelope, JSON text.
    pub body: String,
}

/// The append-only event log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends a batch in one transaction; duplicates (same org, event id and instant) are
    /// reported, not stored. Returns once the batch is durable.
    async fn append(&self, rows: Vec<EventRow>) -> StoreResult<Vec<AppendOutcome>>;
    /// Events of `org` matching `filter` with `sequence > after`, ascending, at most `limit`.
    /// Never skips an event that becomes visible later with a smaller sequence.
    async fn page(
        &self,
        org: &str,
        filter: &EventFilter,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// The highest sequence among `org`'s visible events (0 when none). Every event of `org`
    /// that becomes visible later has a larger one, so `head` bounds a gap-free snapshot.
    async fn head(&self, org: &str) -> StoreResult<i64>;
    /// Deletes events ingested before `cutoff_ms` (Unix ms); returns how many.
    async fn purge_ingested_before(&self, cutoff_ms: i64) -> StoreResult<u64>;
    /// The highest sequence ever purged (0 when none); cursors at or below it are expired.
    async fn purged_through(&self) -> StoreResult<i64>;
    /// A channel that changes whenever new events become visible (for long-polls).
    fn commits(&self) -> watch::Receiver<i64>;
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub secret_hash: String,
    pub role: String,
    pub org_id: Option<String>,
    pub services: Vec<String>,
    pub orgs: Vec<String>,
    pub label: Option<String>,
    pub created_at: String,
    pub created_context: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_context: Option<String>,
}

/// API keys.
#[async_trait]
pub trait ApiKeys: Send + Sync {
    /// Stores a new key.
    async fn insert_key(&self, key: KeyRow) -> StoreResult<()>;
    /// One key by id (revoked ones included).
    async fn get_key(&self, id: &str) -> StoreResult<Option<KeyRow>>;
    /// Keys with `id > after`, ascending, at most `limit`.
    async fn list_keys(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRow>>;
    /// Revokes a key; false when it does not exist or is already revoked.
    async fn revoke_key(&self, id: &str, at: &str, context: &str) -> StoreResult<bool>;
    /// How many keys exist (revoked or not).
    async fn count_keys(&self) -> StoreResult<u64>;
}

/// Store-wide operations.
#[async_trait]
pub trait Meta: Send + Sync {
    /// The store answers and its migrations are applied.
    async fn ping(&self) -> StoreResult<()>;
    /// A named 32-byte secret, created on first use and then stable (e.g. the cursor key).
    async fn secret(&self, name: &str) -> StoreResult<[u8; 32]>;
    /// Flushes and closes; further calls fail.
    async fn close(&self) -> StoreResult<()>;
    /// Takes the node id `node` for this process while it lives: false when another live
    /// process of the same store holds it (a copied data dir), and the caller must pick another.
    /// Leases are released by node id ([`Deliveries::release_leases`]), so two live processes
    /// must never share one.
    async fn hold_node(&self, node: &str) -> StoreResult<bool>;
}

/// Everything a backend provides.
pub trait Store:
    EventLog + ApiKeys + Meta + Jobs + Webhooks + Deliveries + Inbox + Kpis + Alerts
{
}
impl<T: EventLog + ApiKeys + Meta + Jobs + Webhooks + Deliveries + Inbox + Kpis + Alerts> Store
    for T
{
}

/// The store as the rest of the program holds it.
pub type DynStore = Arc<dyn Store>;
