//! Webhook use cases (SPEC §6): CRUD with a secret shown once, pause/enable, test pings,
//! deliveries, replay. Targets are SSRF-checked here (create/patch) and again on connect.
use super::dispatch::{Dispatcher, GuardedResolver, Lookup, SystemLookup};
use super::{ServiceError, Services};
use crate::config::WebhooksConfig;
use crate::domain::FieldError;
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::envelope::NewEvent;
use crate::domain::filter::{EventAttrs, EventFilter, FilterInput};
use crate::domain::ids::{IdKind, is_id, new_id};
use crate::domain::sealing::Sealer;
use crate::domain::signature::generate_secret;
use crate::domain::ssrf::AllowList;
use crate::domain::time::{format_utc, now_millis, now_rfc3339};
use crate::domain::webhook::{
    DeliveryMode, DeliveryStatus, WebhookFilter, WebhookFilters, WebhookStatus,
};
use crate::store::{
    AttemptRow, DeliveryRow, EventRow, InboxRow, NewDelivery, PauseChange, WebhookRow,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Name of the key file in the data dir.
pub const KEY_FILE: &str = "webhook-secrets.key";
/// Longest webhook URL.
pub const MAX_URL_LEN: usize = 2048;
/// Largest replay page.
pub const MAX_REPLAY: usize = 10_000;

/// Everything webhooks need beyond the store: config, SSRF allow-list, the sealing key and the
/// delivery HTTP client.
pub struct WebhookKit {
    pub config: WebhooksConfig,
    pub allow: AllowList,
    pub sealer: Sealer,
    pub dispatcher: Dispatcher,
    pub resolver: GuardedResolver,
}

impl WebhookKit {
    /// Builds the kit; the sealing key comes from config or from `data_dir/webhook-secrets.key`
    /// (created 0600 on first start).
    pub fn new(config: &WebhooksConfig, data_dir: &Path) -> Result<Self, String> {
        let sealer = match &config.encryption_key {
            Some(k) => Sealer::from_base64(k).map_err(|e| e.to_string())?,
            None => Sealer::from_base64(&load_or_create_key(&data_dir.join(KEY_FILE))?)
                .map_err(|e| e.to_string())?,
        };
        Self::with_sealer(config, sealer, Arc::new(SystemLookup))
    }

    /// A kit over an explicit sealer and name resolver (tests, embedding).
    pub fn with_sealer(
        config: &WebhooksConfig,
        sealer: Sealer,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, String> {
        let allow = AllowList::parse(&config.allow_private_targets)?;
        let dispatcher = Dispatcher::new(
            allow.clone(),
            Duration::from_secs(config.attempt_timeout_secs.max(1)),
            lookup.clone(),
        )?;
        Ok(Self {
            config: config.clone(),
            resolver: GuardedResolver::new(allow.clone(), lookup),
            allow,
            sealer,
            dispatcher,
        })
    }

    /// Default config with a random in-memory key: secrets sealed with it die with the process.
    /// `App::build` always replaces it with a durable key.
    pub fn ephemeral() -> Result<Self, String> {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).map_err(|e| e.to_string())?;
        Self::with_sealer(&WebhooksConfig::default(), sealer, Arc::new(SystemLookup))
    }
}

fn load_or_create_key(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(k) => return Ok(k.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot read {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key = Sealer::generate_key();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(key.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)
            .map(|k| k.trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// Delivery settings as the API takes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryIn {
    /// `concurrent` (default) or `ordered` (one at a time, `sequence` order, head-of-line blocking).
    pub mode: Option<DeliveryMode>,
    /// Attempts in flight at once (concurrent mode), 1..=256; default `webhooks.max_in_flight`.
    #[schema(minimum = 1, maximum = 256)]
    pub max_in_flight: Option<u32>,
}

/// Delivery settings as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryOut {
    pub mode: DeliveryMode,
    pub max_in_flight: u32,
}

/// `POST /v1/orgs/{org_id}/webhooks`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// `https://` or `http://`; must resolve to global addresses unless allow-listed.
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    #[serde(default)]
    pub filters: Option<WebhookFilters>,
    #[serde(default)]
    pub delivery: Option<DeliveryIn>,
    /// Overrides `webhooks.pause_after_consecutive_failures` for this webhook.
    #[schema(minimum = 1)]
    pub pause_after_consecutive_failures: Option<u32>,
    /// Overrides `webhooks.pause_min_failing_secs` for this webhook.
    pub pause_min_failing_secs: Option<u64>,
}

/// `PATCH …/webhooks/{id}`: absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    pub filters: Option<WebhookFilters>,
    pub delivery: Option<DeliveryIn>,
    #[schema(minimum = 1)]
    pub pause_after_consecutive_failures: Option<u32>,
    pub pause_min_failing_secs: Option<u64>,
}

/// A webhook as the API shows it: never the secret, only its last four characters.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookOut {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub description: Option<String>,
    pub filters: WebhookFilters,
    pub delivery: DeliveryOut,
    pub status: WebhookStatus,
    pub consecutive_failures: u32,
    pub total_failures: u64,
    pub paused_at: Option<String>,
    pub pause_reason: Option<String>,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    pub secret_last4: String,
    /// Effective auto-pause thresholds (per-webhook override or the global default).
    pub pause_after_consecutive_failures: u32,
    pub pause_min_failing_secs: u64,
    pub created_at: String,
    #[schema(value_type = Object)]
    pub created_context: Value,
    #[schema(value_type = Option<Object>)]
    pub updated_context: Option<Value>,
}

/// The create response: the webhook plus `signing_secret`, shown only this once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookOut,
    /// `whsec_` + base64 of 32 bytes. Store it now: it is never shown again.
    pub signing_secret: String,
}

/// One attempt as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptOut {
    pub attempt: u32,
    pub started_at: String,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// At most 4 KiB of the answer.
    pub response_body_excerpt: Option<String>,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryInfo {
    pub id: String,
    pub webhook_id: String,
    /// The event's `id` (`evt_…`, or `evt_…` of a synthetic test event); the `webhook-id` header.
    pub event_id: String,
    pub event_type: String,
    pub sequence: i64,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    /// When the next attempt is due (pending and failed deliveries only).
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<u16>,
    pub created_at: String,
    pub updated_at: String,
    /// Present when the delivery is fetched alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptOut>>,
}

/// `POST …/replay`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// `occurred_at >= since` (RFC 3339).
    pub since: Option<String>,
    /// `occurred_at < until` (RFC 3339).
    pub until: Option<String>,
    /// `next_cursor` of the previous call.
    pub cursor: Option<String>,
    /// Events to enqueue in this call, 1..=10000 (default 1000).
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// The answer to a replay call.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayOut {
    pub enqueued: u64,
    /// Pass as `cursor` to continue; null when nothing is left.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// The answer to a test ping.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestOut {
    pub delivery_id: String,
    pub event_id: String,
}

/// A page of some list.
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

const LIST_SCOPE: &str = "webhooks";

fn ctx_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(format_utc)
        .unwrap_or_default()
}

impl Services {
    fn kit(&self) -> &WebhookKit {
        &self.webhooks
    }

    /// The effective auto-pause thresholds of a webhook.
    pub fn pause_thresholds(&self, w: &WebhookRow) -> (u32, u64) {
        let c = &self.kit().config;
        (
            w.pause_after.unwrap_or(c.pause_after_consecutive_failures),
            w.pause_min_secs.unwrap_or(c.pause_min_failing_secs),
        )
    }

    fn webhook_out(&self, w: &WebhookRow) -> WebhookOut {
        let (after, secs) = self.pause_thresholds(w);
        WebhookOut {
            id: w.id.clone(),
            org_id: w.org_id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            filters: serde_json::from_str(&w.filters).unwrap_or_default(),
            delivery: DeliveryOut {
                mode: DeliveryMode::parse(&w.mode).unwrap_or_default(),
                max_in_flight: w.max_in_flight,
            },
            status: WebhookStatus::parse(&w.status).unwrap_or(WebhookStatus::Paused),
            consecutive_failures: w.consecutive_failures,
            total_failures: w.total_failures,
            paused_at: w.paused_at.clone(),
            pause_reason: w.pause_reason.clone(),
            last_success_at: w.last_success_at.clone(),
            last_failure_at: w.last_failure_at.clone(),
            secret_last4: w.secret_last4.clone(),
            pause_after_consecutive_failures: after,
            pause_min_failing_secs: secs,
            created_at: w.created_at.clone(),
            created_context: ctx_json(&w.created_context),
            updated_context: w.updated_context.as_deref().map(ctx_json),
        }
    }

    /// Checks a target URL: scheme, shape, and (SSRF) every address it resolves to now.
    pub async fn check_target(&self, raw: &str) -> Result<(), FieldError> {
        let bad = |m: String| FieldError::new("url", m);
        if raw.len() > MAX_URL_LEN {
            return Err(bad(format!("at most {MAX_URL_LEN} characters")));
        }
        let url = url::Url::parse(raw).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be http:// or https://".into()));
        }
        let ips: Vec<std::net::IpAddr> = match url.host() {
            Some(url::Host::Ipv4(v4)) => vec![v4.into()],
            Some(url::Host::Ipv6(v6)) => vec![v6.into()],
            Some(url::Host::Domain(d)) => {
                let d = d.to_string();
                let all = tokio::time::timeout(Duration::from_secs(5), async {
                    tokio::net::lookup_host((d.as_str(), 0))
                        .await
                        .map(|a| a.map(|s| s.ip()).collect::<Vec<_>>())
                })
                .await;
                match all {
                    Ok(Ok(v)) if !v.is_empty() => v,
                    _ => return Err(bad(format!("the host `{d}` does not resolve"))),
                }
            }
            None => return Err(bad("has no host".into())),
        };
        if let Some(ip) = ips.iter().find(|ip| !self.kit().allow.permits(**ip)) {
            return Err(bad(format!(
                "targets a non-global address ({ip}); allow it with webhooks.allow_private_targets"
            )));
        }
        Ok(())
    }

    fn delivery_settings(
        &self,
        d: Option<&DeliveryIn>,
        current: Option<(DeliveryMode, u32)>,
    ) -> Result<(DeliveryMode, u32), FieldError> {
        let (mut mode, mut max) =
            current.unwrap_or((DeliveryMode::Concurrent, self.kit().config.max_in_flight));
        if let Some(d) = d {
            if let Some(m) = d.mode {
                mode = m;
            }
            if let Some(n) = d.max_in_flight {
                if !(1..=256).contains(&n) {
                    return Err(FieldError::new(
                        "delivery.max_in_flight",
                        "must be between 1 and 256",
                    ));
                }
                max = n;
            }
        }
        Ok((mode, max))
    }

    fn check_description(d: &Option<String>) -> Result<(), FieldError> {
        match d {
            Some(s) if s.chars().count() > 1000 => {
                Err(FieldError::new("description", "at most 1000 characters"))
            }
            _ => Ok(()),
        }
    }

    /// Creates a webhook; the only response that carries `signing_secret`.
    pub async fn create_webhook(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        input: WebhookIn,
    ) -> Result<WebhookCreated, ServiceError> {
        who.can_manage_org(org)?;
        let mut errors = Vec::new();
        let filters = input.filters.clone().unwrap_or_default();
        if let Err(es) = WebhookFilter::parse(&filters) {
            errors.extend(es);
        }
        if let Err(e) = Self::check_description(&input.description) {
            errors.push(e);
        }
        let settings = self.delivery_settings(input.delivery.as_ref(), None);
        if let Err(e) = &settings {
            errors.push(e.clone());
        }
        if input.pause_after_consecutive_failures == Some(0) {
            errors.push(FieldError::new(
                "pause_after_consecutive_failures",
                "must be at least 1",
            ));
        }
        if errors.is_empty()
            && let Err(e) = self.check_target(&input.url).await
        {
            errors.push(e);
        }
        let (mode, max_in_flight) = match (errors.is_empty(), settings) {
            (true, Ok(s)) => s,
            _ => return Err(ServiceError::Validation(errors)),
        };
        let id = new_id(IdKind::Webhook);
        let secret = generate_secret();
        let sealed =
            self.kit().sealer.seal(&secret, &id).map_err(|e| {
                ServiceError::Store(crate::store::StoreError::Backend(e.to_string()))
            })?;
        let row = WebhookRow {
            id: id.clone(),
            org_id: org.to_string(),
            url: input.url,
            description: input.description,
            filters: serde_json::to_string(&filters).unwrap_or_else(|_| "{}".into()),
            mode: mode.as_str().into(),
            max_in_flight,
            pause_after: input.pause_after_consecutive_failures,
            pause_min_secs: input.pause_min_failing_secs,
            status: "active".into(),
            secret_sealed: sealed,
            secret_last4: secret.last4(),
            consecutive_failures: 0,
            first_failure_at_ms: None,
            total_failures: 0,
            paused_at: None,
            pause_reason: None,
            last_success_at: None,
            last_failure_at: None,
            created_at: now_rfc3339(),
            created_context: ctx.to_json(),
            updated_context: None,
        };
        self.store.insert_webhook(row.clone()).await?;
        Ok(WebhookCreated {
            webhook: self.webhook_out(&row),
            signing_secret: secret.expose().to_string(),
        })
    }

    async fn load_webhook(&self, org: &str, id: &str) -> Result<WebhookRow, ServiceError> {
        if !is_id(IdKind::Webhook, id) {
            return Err(ServiceError::NotFound("webhook"));
        }
        self.store
            .get_webhook(org, id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))
    }

    /// One webhook (readers of the org may look).
    pub async fn get_webhook(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
    ) -> Result<WebhookOut, ServiceError> {
        who.can_read_org(org)?;
        Ok(self.webhook_out(&self.load_webhook(org, id).await?))
    }

    /// The org's webhooks, by id.
    pub async fn list_webhooks(
        &self,
        who: &Principal,
        org: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listed<WebhookOut>, ServiceError> {
        who.can_read_org(org)?;
        let binding = format!("org:{org}");
        let after = match cursor {
            Some(c) => Some(
                self.cursors
                    .decode(LIST_SCOPE, binding.as_bytes(), c)
                    .map_err(|_| ServiceError::InvalidCursor)?,
            ),
            None => None,
        };
        let mut rows = self
            .store
            .list_webhooks(org, after.as_deref(), limit + 1)
            .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last()
                .map(|r| self.cursors.encode(LIST_SCOPE, binding.as_bytes(), &r.id))
        } else {
            None
        };
        Ok(Listed {
            items: rows.iter().map(|w| self.webhook_out(w)).collect(),
            next_cursor,
        })
    }

    /// Updates url/description/filters/delivery/thresholds.
    pub async fn update_webhook(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
        p: WebhookPatch,
    ) -> Result<WebhookOut, ServiceError> {
        who.can_manage_org(org)?;
        let mut w = self.load_webhook(org, id).await?;
        if w.status == "revoked" {
            return Err(ServiceError::Conflict("the webhook is revoked".into()));
        }
        let mut errors = Vec::new();
        if let Some(f) = &p.filters {
            match WebhookFilter::parse(f) {
                Ok(_) => w.filters = serde_json::to_string(f).unwrap_or_else(|_| "{}".into()),
                Err(es) => errors.extend(es),
            }
        }
        if let Err(e) = Self::check_description(&p.description) {
            errors.push(e);
        }
        let current = (
            DeliveryMode::parse(&w.mode).unwrap_or_default(),
            w.max_in_flight,
        );
        match self.delivery_settings(p.delivery.as_ref(), Some(current)) {
            Ok((m, n)) => {
                w.mode = m.as_str().into();
                w.max_in_flight = n;
            }
            Err(e) => errors.push(e),
        }
        if p.pause_after_consecutive_failures == Some(0) {
            errors.push(FieldError::new(
                "pause_after_consecutive_failures",
                "must be at least 1",
            ));
        }
        if let Some(u) = &p.url
            && errors.is_empty()
            && let Err(e) = self.check_target(u).await
        {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        if let Some(u) = p.url {
            w.url = u;
        }
        if p.description.is_some() {
            w.description = p.description;
        }
        if p.pause_after_consecutive_failures.is_some() {
            w.pause_after = p.pause_after_consecutive_failures;
        }
        if p.pause_min_failing_secs.is_some() {
            w.pause_min_secs = p.pause_min_failing_secs;
        }
        w.updated_context = Some(ctx.to_json());
        if !self.store.update_webhook(w.clone()).await? {
            return Err(ServiceError::Conflict("the webhook is revoked".into()));
        }
        self.webhooks_changed();
        Ok(self.webhook_out(&self.load_webhook(org, id).await?))
    }

    /// Revokes: no further deliveries; history kept.
    pub async fn revoke_webhook(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        who.can_manage_org(org)?;
        let _ = self.load_webhook(org, id).await?;
        self.store.revoke_webhook(org, id, ctx.to_json()).await?;
        self.webhooks_changed();
        Ok(())
    }

    /// Tells this process's delivery worker that its webhook list is stale (see
    /// [`Services::webhook_epoch`]).
    fn webhooks_changed(&self) {
        self.webhook_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Builds a system event of the `ipm` service for `org` (validated against the catalog).
    pub fn system_event(
        &self,
        org: &str,
        event_type: &str,
        key: &str,
        payload: Value,
        ctx: &str,
    ) -> Option<EventRow> {
        let raw = serde_json::value::to_raw_value(&payload).ok();
        if let Some(Err(r)) = raw
            .as_deref()
            .map(|p| self.validator.check(event_type, 1, p))
        {
            tracing::error!(event_type, errors = ?r.errors, "a system event does not match its schema");
        }
        let env = json!({
            "event_id": format!("ipm:{key}"),
            "event_type": event_type,
            "org_id": org,
            "occurred_at": now_rfc3339(),
            "payload": payload,
        });
        match NewEvent::parse(&env.to_string()) {
            Ok(e) => Some(EventRow {
                id: new_id(IdKind::Event),
                org_id: e.org_id,
                event_id: e.event_id,
                occurred_at: e.occurred_at,
                event_type: e.event_type,
                service: e.service,
                channel_id: e.channel_id,
                facility_id: e.facility_id,
                payload_hash: e.payload_hash,
                rendered: e.rendered,
                context: ctx.to_string(),
            }),
            Err(r) => {
                tracing::error!(event_type, errors = ?r.errors, "cannot build a system event");
                None
            }
        }
    }

    /// Pauses a webhook with an `ipm.webhook.paused` event (and, unless an operator did it, an
    /// inbox item). Returns false when it was not active.
    pub async fn pause_with_effects(
        &self,
        w: &WebhookRow,
        reason: &str,
        detail: String,
        last_status: Option<u16>,
        counters: (u32, Option<i64>),
        ctx: Option<&RequestContext>,
    ) -> Result<bool, ServiceError> {
        let paused_at = now_rfc3339();
        let mut payload = json!({
            "webhook_id": w.id, "url": w.url, "reason": reason, "detail": detail,
            "paused_at": paused_at, "consecutive_failures": counters.0,
        });
        if let Some(f) = counters.1 {
            payload["first_failure_at"] = json!(ms_to_rfc3339(f));
        }
        if let Some(s) = last_status.filter(|s| (100..=599).contains(s)) {
            payload["last_status_code"] = json!(s);
        }
        if let Some(a) = ctx.and_then(|c| c.actor_id.clone()) {
            payload["actor_id"] = json!(a);
        }
        let context = ctx.map(|c| c.to_json()).unwrap_or_else(|| {
            json!({"actor": "ipm-delivery-worker", "at": paused_at}).to_string()
        });
        let event = self.system_event(
            &w.org_id,
            "ipm.webhook.paused",
            &format!("{}:paused:{}", w.id, ulid::Ulid::generate()),
            payload,
            &context,
        );
        let inbox = (reason != "operator").then(|| InboxRow {
            id: new_id(IdKind::Inbox),
            org_id: w.org_id.clone(),
            kind: "webhook_paused".into(),
            severity: "warning".into(),
            title: format!("Webhook {} was paused", w.id),
            body: format!(
                "Deliveries to {} are held: {detail}. Fix the endpoint, then re-enable it.",
                w.url
            ),
            ref_type: "webhook".into(),
            ref_id: w.id.clone(),
            created_at: paused_at.clone(),
            acked_at: None,
            acked_context: None,
        });
        let paused = self
            .store
            .pause_webhook(
                &w.org_id,
                &w.id,
                PauseChange {
                    reason: reason.into(),
                    paused_at,
                    context: ctx.map(|c| c.to_json()),
                    event,
                    inbox,
                },
            )
            .await?;
        self.webhooks_changed();
        Ok(paused)
    }

    /// Operator pause.
    pub async fn pause_webhook(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
    ) -> Result<WebhookOut, ServiceError> {
        who.can_manage_org(org)?;
        let w = self.load_webhook(org, id).await?;
        match w.status.as_str() {
            "revoked" => return Err(ServiceError::Conflict("the webhook is revoked".into())),
            "paused" => return Ok(self.webhook_out(&w)),
            _ => {}
        }
        self.pause_with_effects(
            &w,
            "operator",
            "paused by an operator".into(),
            None,
            (w.consecutive_failures, w.first_failure_at_ms),
            Some(ctx),
        )
        .await?;
        Ok(self.webhook_out(&self.load_webhook(org, id).await?))
    }

    /// Operator re-enable (needs `X-Reason-Code`): counters reset, held backlog delivered or skipped.
    pub async fn enable_webhook(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
        skip_backlog: bool,
    ) -> Result<WebhookOut, ServiceError> {
        who.can_manage_org(org)?;
        let w = self.load_webhook(org, id).await?;
        match w.status.as_str() {
            "revoked" => return Err(ServiceError::Conflict("the webhook is revoked".into())),
            "active" => return Ok(self.webhook_out(&w)),
            _ => {}
        }
        let held = self
            .store
            .list_deliveries(org, id, Some("held"), None, 1_000_000)
            .await
            .map(|v| v.len() as u64)
            .unwrap_or(0);
        let payload = json!({
            "webhook_id": w.id, "url": w.url, "enabled_at": now_rfc3339(),
            "actor_id": ctx.actor_id.clone().unwrap_or_default(),
            "reason_code": ctx.reason_code.clone().unwrap_or_default(),
            "skip_backlog": skip_backlog, "held_deliveries": held,
        });
        let event = self.system_event(
            org,
            "ipm.webhook.enabled",
            &format!("{}:enabled:{}", w.id, ulid::Ulid::generate()),
            payload,
            &ctx.to_json(),
        );
        self.store
            .enable_webhook(org, id, skip_backlog, ctx.to_json(), event)
            .await?;
        self.webhooks_changed();
        Ok(self.webhook_out(&self.load_webhook(org, id).await?))
    }

    /// Sends a synthetic `ipm.webhook.test` event to this webhook only (not to the org's stream).
    pub async fn test_webhook(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
    ) -> Result<TestOut, ServiceError> {
        who.can_manage_org(org)?;
        let w = self.load_webhook(org, id).await?;
        if w.status == "revoked" {
            return Err(ServiceError::Conflict("the webhook is revoked".into()));
        }
        let now = chrono::Utc::now();
        let event_id = new_id(IdKind::Event);
        let mut payload = json!({"webhook_id": w.id, "message": "This is a test event from IPM.", "requested_at": format_utc(now)});
        if let Some(a) = &ctx.actor_id {
            payload["requested_by"] = json!(a);
        }
        let body = json!({
            "id": event_id, "sequence": 0, "ingested_at": format_utc(now), "service": "ipm",
            "event_id": format!("ipm:{}:test:{}", w.id, ulid::Ulid::generate()),
            "event_type": "ipm.webhook.test", "org_id": org, "occurred_at": format_utc(now),
            "schema_version": 1, "payload": payload,
        });
        let delivery_id = new_id(IdKind::Delivery);
        self.store
            .enqueue(vec![NewDelivery {
                id: delivery_id.clone(),
                org_id: org.into(),
                webhook_id: w.id.clone(),
                event_id: event_id.clone(),
                event_type: "ipm.webhook.test".into(),
                sequence: 0,
                body: Some(body.to_string()),
                ingested_at_ms: now.timestamp_millis(),
            }])
            .await?;
        Ok(TestOut {
            delivery_id,
            event_id,
        })
    }

    fn delivery_info(d: DeliveryRow, attempts: Option<Vec<AttemptRow>>) -> DeliveryInfo {
        let status = DeliveryStatus::parse(&d.status).unwrap_or(DeliveryStatus::Pending);
        DeliveryInfo {
            next_attempt_at: matches!(status, DeliveryStatus::Pending | DeliveryStatus::Failed)
                .then(|| d.next_attempt_at_ms.map(ms_to_rfc3339))
                .flatten(),
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type,
            sequence: d.sequence,
            status,
            attempt_count: d.attempt_count,
            last_status_code: d.last_status_code,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempts: attempts.map(|a| {
                a.into_iter()
                    .map(|a| AttemptOut {
                        attempt: a.attempt,
                        started_at: a.started_at,
                        duration_ms: a.duration_ms,
                        status_code: a.status_code,
                        error: a.error,
                        response_body_excerpt: a.response_body_excerpt,
                    })
                    .collect()
            }),
        }
    }

    /// A webhook's deliveries, by id, optionally of one status.
    pub async fn list_deliveries(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listed<DeliveryInfo>, ServiceError> {
        who.can_read_org(org)?;
        let _ = self.load_webhook(org, id).await?;
        let binding = format!("{id}:{}", status.map(|s| s.as_str()).unwrap_or(""));
        let after = match cursor {
            Some(c) => Some(
                self.cursors
                    .decode("deliveries", binding.as_bytes(), c)
                    .map_err(|_| ServiceError::InvalidCursor)?,
            ),
            None => None,
        };
        let mut rows = self
            .store
            .list_deliveries(
                org,
                id,
                status.map(|s| s.as_str()),
                after.as_deref(),
                limit + 1,
            )
            .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last()
                .map(|r| self.cursors.encode("deliveries", binding.as_bytes(), &r.id))
        } else {
            None
        };
        Ok(Listed {
            items: rows
                .into_iter()
                .map(|d| Self::delivery_info(d, None))
                .collect(),
            next_cursor,
        })
    }

    /// One delivery with its attempts.
    pub async fn get_delivery(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryInfo, ServiceError> {
        who.can_read_org(org)?;
        let _ = self.load_webhook(org, id).await?;
        if !is_id(IdKind::Delivery, delivery_id) {
            return Err(ServiceError::NotFound("delivery"));
        }
        let d = self
            .store
            .get_delivery(org, id, delivery_id)
            .await?
            .ok_or(ServiceError::NotFound("delivery"))?;
        let attempts = self.store.delivery_attempts(org, delivery_id).await?;
        Ok(Self::delivery_info(d, Some(attempts)))
    }

    /// Schedules one more attempt of a delivery now.
    pub async fn retry_delivery(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryInfo, ServiceError> {
        who.can_manage_org(org)?;
        let w = self.load_webhook(org, id).await?;
        if w.status == "revoked" {
            return Err(ServiceError::Conflict("the webhook is revoked".into()));
        }
        if !is_id(IdKind::Delivery, delivery_id)
            || self
                .store
                .get_delivery(org, id, delivery_id)
                .await?
                .is_none()
        {
            return Err(ServiceError::NotFound("delivery"));
        }
        let d = self
            .store
            .retry_delivery(org, id, delivery_id, now_millis())
            .await?
            .ok_or_else(|| {
                ServiceError::Conflict(
                    "an attempt of this delivery is in flight; retry later".into(),
                )
            })?;
        Ok(Self::delivery_info(d, None))
    }

    /// Re-delivers the org's stored events matching the webhook's filters (and `since`/`until`),
    /// oldest first, at most `limit` per call; resumable through `next_cursor`.
    pub async fn replay(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
        input: ReplayIn,
    ) -> Result<ReplayOut, ServiceError> {
        who.can_manage_org(org)?;
        let w = self.load_webhook(org, id).await?;
        if w.status == "revoked" {
            return Err(ServiceError::Conflict("the webhook is revoked".into()));
        }
        let limit = match input.limit {
            None => 1000,
            Some(n) if (1..=MAX_REPLAY as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(ServiceError::Validation(vec![FieldError::new(
                    "limit",
                    format!("must be between 1 and {MAX_REPLAY}"),
                )]));
            }
        };
        let wf = serde_json::from_str::<WebhookFilters>(&w.filters)
            .ok()
            .and_then(|f| WebhookFilter::parse(&f).ok())
            .unwrap_or_default();
        let mut base: EventFilter = EventFilter::parse(FilterInput {
            since: input.since.as_deref(),
            until: input.until.as_deref(),
            ..Default::default()
        })
        .map_err(ServiceError::Validation)?;
        base.services = wf.base.services.clone();
        base.event_types = wf.base.event_types.clone();
        base.type_prefixes = wf.base.type_prefixes.clone();
        // The cursor is bound to the webhook and the time window.
        let mut binding = base.fingerprint().to_vec();
        binding.extend_from_slice(w.id.as_bytes());
        let scope = format!("replay:{org}");
        let mut after = match &input.cursor {
            Some(c) => self
                .cursors
                .decode_seq(&scope, &binding, c)
                .map_err(|_| ServiceError::InvalidCursor)?,
            None => 0,
        };
        if input.cursor.is_some() && after < self.store.purged_through().await? {
            return Err(ServiceError::CursorExpired);
        }
        let mut rows = Vec::new();
        let mut has_more = true;
        while rows.len() < limit {
            let page = self.store.page(org, &base, after, 1000).await?;
            if page.is_empty() {
                has_more = false;
                break;
            }
            for e in page {
                if rows.len() >= limit {
                    break;
                }
                after = e.sequence;
                let Some(attrs) = stored_attrs(&e.body) else {
                    continue;
                };
                let a = EventAttrs {
                    service: &attrs.service,
                    event_type: &attrs.event_type,
                    channel_id: attrs.channel_id.as_deref(),
                    facility_id: attrs.facility_id.as_deref(),
                    occurred_at: 0,
                };
                if !wf.matches(&a) {
                    continue;
                }
                rows.push(NewDelivery {
                    id: new_id(IdKind::Delivery),
                    org_id: org.into(),
                    webhook_id: w.id.clone(),
                    event_id: attrs.id,
                    event_type: attrs.event_type,
                    sequence: e.sequence,
                    body: None,
                    ingested_at_ms: now_millis(),
                });
            }
        }
        if has_more {
            has_more = !self.store.page(org, &base, after, 1).await?.is_empty();
        }
        let enqueued = self.store.enqueue(rows).await?;
        Ok(ReplayOut {
            enqueued,
            next_cursor: has_more.then(|| self.cursors.encode_seq(&scope, &binding, after)),
            has_more,
        })
    }
}

#[derive(Deserialize)]
struct Attrs {
    id: String,
    service: String,
    event_type: String,
    channel_id: Option<String>,
    facility_id: Option<String>,
}

fn stored_attrs(body: &str) -> Option<Attrs> {
    serde_json::from_str(body).ok()
}
