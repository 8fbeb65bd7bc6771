//! Storage capabilities of webhooks (SPEC §6) and the inbox (SPEC §9).
//!
//! Invariants every backend keeps:
//! - fan-out is durable: the transaction that appends an event inserts one delivery per matching
//!   active webhook of its org (see `EventLog::append`);
//! - a claim leases a delivery (`lease_until`, `claimed_by`) and bumps its `lease_token`; an
//!   attempt is recorded only with the token of the current claim, so a stale worker can never
//!   overwrite a newer claim's result;
//! - every query is scoped by org (the worker's cross-org claim is the one exception).
use super::{EventRow, StoreResult};
use async_trait::async_trait;

/// A stored webhook. `secret_sealed` is the encrypted signing secret (never returned by the API).
/// `Default` is for fixtures; the service fills every field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookRow {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub description: Option<String>,
    /// `domain::webhook::WebhookFilters` as JSON.
    pub filters: String,
    /// `concurrent` | `ordered`.
    pub mode: String,
    pub max_in_flight: u32,
    /// Per-webhook overrides of the auto-pause thresholds.
    pub pause_after: Option<u32>,
    pub pause_min_secs: Option<u64>,
    /// `active` | `paused` | `revoked`.
    pub status: String,
    pub secret_sealed: Vec<u8>,
    pub secret_last4: String,
    pub consecutive_failures: u32,
    /// When the first attempt of the current failing run started (Unix ms).
    pub first_failure_at_ms: Option<i64>,
    pub total_failures: u64,
    pub paused_at: Option<String>,
    pub pause_reason: Option<String>,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    pub created_at: String,
    pub created_context: String,
    pub updated_context: Option<String>,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: String,
    pub org_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub sequence: i64,
    pub status: String,
    pub attempt_count: u32,
    pub next_attempt_at_ms: Option<i64>,
    pub last_status_code: Option<u16>,
    pub created_at: String,
    pub updated_at: String,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub attempt: u32,
    pub started_at: String,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_body_excerpt: Option<String>,
}

/// A delivery to enqueue outside ingest (replay, test ping).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub org_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub sequence: i64,
    /// The body when it is not a stored event (test pings); else the event's `body` is sent.
    pub body: Option<String>,
    /// Ingest time of the event (Unix ms), for the latency histogram.
    pub ingested_at_ms: i64,
}

/// A webhook's free capacity, as the worker asks to claim.
#[derive(Debug, Clone)]
pub struct ClaimSlot {
    pub webhook_id: String,
    /// Ordered webhooks get at most one, and only their head delivery.
    pub ordered: bool,
    pub free: u32,
}

/// A claimed delivery, ready to attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub org_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The number of this attempt (1-based).
    pub attempt: u32,
    /// The fencing token of this claim.
    pub lease_token: i64,
    /// The stored envelope, byte for byte; `None` when retention purged the event.
    pub body: Option<String>,
    pub ingested_at_ms: i64,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub webhook_id: String,
    pub lease_token: i64,
    pub attempt: AttemptRow,
    pub started_ms: i64,
    pub success: bool,
    /// The delivery's new status (`succeeded`, `failed`, `exhausted` or `held`); non-terminal
    /// statuses become `held` when the webhook is paused meanwhile, `skipped` when it was
    /// revoked or deleted (an attempt still under way when that happened).
    pub new_status: String,
    pub next_attempt_at_ms: Option<i64>,
}

/// The webhook's health after recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub webhook_id: String,
    /// False when the claim was stale (its token superseded): nothing was written.
    pub applied: bool,
    pub consecutive_failures: u32,
    pub first_failure_at_ms: Option<i64>,
}

/// A pause: the webhook row changes, its backlog is held, and (for automatic pauses) an event and
/// an inbox item are written in the same transaction.
#[derive(Debug, Clone)]
pub struct PauseChange {
    pub reason: String,
    pub paused_at: String,
    pub context: Option<String>,
    pub event: Option<EventRow>,
    pub inbox: Option<InboxRow>,
}

/// An inbox item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub id: String,
    pub org_id: String,
    pub kind: String,
    pub severity: String,
    pub title: String,
    pub body: String,
    pub ref_type: String,
    pub ref_id: String,
    pub created_at: String,
    pub acked_at: Option<String>,
    pub acked_context: Option<String>,
}

/// Webhook subscriptions.
#[async_trait]
pub trait Webhooks: Send + Sync {
    async fn insert_webhook(&self, w: WebhookRow) -> StoreResult<()>;
    /// One webhook of `org` (revoked ones included).
    async fn get_webhook(&self, org: &str, id: &str) -> StoreResult<Option<WebhookRow>>;
    /// `org`'s webhooks with `id > after`, ascending.
    async fn list_webhooks(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<WebhookRow>>;
    /// Writes the editable fields (url, description, filters, mode, max_in_flight, pause
    /// overrides, updated_context); false when missing or revoked.
    async fn update_webhook(&self, w: WebhookRow) -> StoreResult<bool>;
    /// Every active webhook of every org (the worker's view).
    async fn active_webhooks(&self) -> StoreResult<Vec<WebhookRow>>;
    /// Pauses an active webhook (see [`PauseChange`]); false when it was not active.
    async fn pause_webhook(&self, org: &str, id: &str, change: PauseChange) -> StoreResult<bool>;
    /// Re-enables a paused webhook: counters reset, held backlog `pending` (or `skipped`), and
    /// `event` appended. Returns the number of held deliveries, or None when it was not paused.
    async fn enable_webhook(
        &self,
        org: &str,
        id: &str,
        skip_backlog: bool,
        context: String,
        event: Option<EventRow>,
    ) -> StoreResult<Option<u64>>;
    /// Revokes; its undelivered backlog becomes `skipped`. False when missing or already revoked.
    async fn revoke_webhook(&self, org: &str, id: &str, context: String) -> StoreResult<bool>;
}

/// The delivery queue.
#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Enqueues deliveries (replay, test ping); returns how many.
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> StoreResult<u64>;
    /// Claims due deliveries within each slot's free capacity, leasing them to `claimer` until
    /// `now_ms + lease_ms`.
    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        claimer: &str,
        slots: Vec<ClaimSlot>,
    ) -> StoreResult<Vec<Claimed>>;
    /// Records attempts (one transaction for the batch).
    async fn record(&self, now_ms: i64, records: Vec<AttemptRecord>) -> StoreResult<Vec<Recorded>>;
    /// Gives back claims that were never attempted (`(delivery id, lease token)`): each lease
    /// ends if the delivery still carries that token, so it can be claimed again at once instead
    /// of when the lease lapses. Returns how many leases ended.
    async fn unlease(&self, claims: Vec<(String, i64)>) -> StoreResult<u64>;
    /// At a node's start, drops the delivery leases of its previous incarnation (`node`, held
    /// with [`super::Meta::hold_node`]): they belong to a dead process. On SQLite, the only
    /// process of its file, that is every lease.
    async fn release_leases(&self, node: &str) -> StoreResult<u64>;
    /// The earliest `next_attempt_at` of a claimable delivery of an active webhook.
    async fn next_due_ms(&self) -> StoreResult<Option<i64>>;
    /// Deliveries waiting (pending, failed, held).
    async fn queue_depth(&self) -> StoreResult<i64>;
    async fn list_deliveries(
        &self,
        org: &str,
        webhook_id: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRow>>;
    async fn get_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
    ) -> StoreResult<Option<DeliveryRow>>;
    async fn delivery_attempts(&self, org: &str, id: &str) -> StoreResult<Vec<AttemptRow>>;
    /// Schedules one more attempt now (`held` if the webhook is paused); None when missing or
    /// when an attempt is in flight.
    async fn retry_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
        now_ms: i64,
    ) -> StoreResult<Option<DeliveryRow>>;
}

/// The operator inbox.
#[async_trait]
pub trait Inbox: Send + Sync {
    async fn insert_inbox(&self, item: InboxRow) -> StoreResult<()>;
    /// `org`'s items, newest first (`id < before`), optionally only unacknowledged ones.
    async fn list_inbox(
        &self,
        org: &str,
        unread: bool,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<InboxRow>>;
    /// Acknowledges an item (idempotent); None when missing.
    async fn ack_inbox(
        &self,
        org: &str,
        id: &str,
        at: &str,
        context: &str,
    ) -> StoreResult<Option<InboxRow>>;
}
