//! The delivery worker: claims due deliveries (leased, per-webhook capacity), signs and sends
//! them, records every attempt, schedules retries and pauses failing webhooks.
//!
//! Isolation: each webhook gets at most `max_in_flight` attempts at once (ordered webhooks one),
//! and claims are made per webhook, so a dead endpoint only ever occupies its own slots.
use crate::domain::signature::secret_bytes;
use crate::domain::time::{format_utc, now_millis};
use crate::domain::webhook::{AttemptOutcome, NextStep, next_step, should_auto_pause};
use crate::service::Services;
use crate::service::dispatch::{AttemptResult, Outgoing};
use crate::store::{AttemptRecord, AttemptRow, ClaimSlot, Claimed, StoreResult, WebhookRow};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest idle sleep between claim rounds (retries due later are found by then).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// A webhook as the worker needs it: row plus opened key.
struct Target {
    row: WebhookRow,
    key: Vec<u8>,
}

/// One in-flight slot of a webhook; released once, at the latest when dropped.
struct Slot {
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    freed: Arc<Notify>,
    webhook_id: String,
    held: bool,
}

impl Slot {
    fn release(&mut self) {
        if !std::mem::replace(&mut self.held, false) {
            return;
        }
        if let Ok(mut m) = self.in_flight.lock()
            && let Some(v) = m.get_mut(&self.webhook_id)
        {
            *v = v.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// The delivery worker.
#[derive(Clone)]
pub struct DeliveryWorker {
    services: Arc<Services>,
    id: String,
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    freed: Arc<Notify>,
}

impl DeliveryWorker {
    pub fn new(services: Arc<Services>) -> Self {
        Self {
            services,
            id: format!("worker_{}", ulid::Ulid::generate()),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            freed: Arc::new(Notify::new()),
        }
    }

    fn lease_ms(&self) -> i64 {
        (self.services.webhooks.config.attempt_timeout_secs as i64 + 30) * 1000
    }

    /// Claims what is due now within each webhook's free capacity and starts the attempts.
    async fn claim_and_start(&self, set: &mut JoinSet<()>) -> StoreResult<usize> {
        let hooks = self.services.store.active_webhooks().await?;
        let mut targets: HashMap<String, Arc<Target>> = HashMap::new();
        let mut slots = Vec::new();
        {
            let inflight = self.in_flight.lock().map_err(|_| poisoned())?;
            for w in hooks {
                let ordered = w.mode == "ordered";
                let limit = if ordered { 1 } else { w.max_in_flight.max(1) };
                let busy = inflight.get(&w.id).copied().unwrap_or(0);
                if busy >= limit {
                    continue;
                }
                let key = match self
                    .services
                    .webhooks
                    .sealer
                    .open(&w.secret_sealed, &w.id)
                    .ok()
                    .and_then(|s| secret_bytes(s.expose()).ok())
                {
                    Some(k) => k,
                    None => {
                        tracing::error!(webhook_id = %w.id, "cannot open the signing secret (wrong webhooks.encryption_key?)");
                        continue;
                    }
                };
                slots.push(ClaimSlot {
                    webhook_id: w.id.clone(),
                    ordered,
                    free: limit - busy,
                });
                targets.insert(w.id.clone(), Arc::new(Target { row: w, key }));
            }
        }
        if slots.is_empty() {
            return Ok(0);
        }
        let claimed = self
            .services
            .store
            .claim(now_millis(), self.lease_ms(), &self.id, slots)
            .await?;
        let n = claimed.len();
        for c in claimed {
            let Some(t) = targets.get(&c.webhook_id).cloned() else {
                continue;
            };
            if let Ok(mut m) = self.in_flight.lock() {
                *m.entry(c.webhook_id.clone()).or_insert(0) += 1;
            }
            let this = self.clone();
            let mut slot = Slot {
                in_flight: self.in_flight.clone(),
                freed: self.freed.clone(),
                webhook_id: c.webhook_id.clone(),
                held: true,
            };
            set.spawn(async move {
                if let Err(e) = this.attempt(&t, c, &mut slot).await {
                    tracing::warn!(error = %e, "recording a delivery attempt failed; the lease will expire and it is retried");
                }
                slot.release();
            });
        }
        Ok(n)
    }

    /// One step: claims due deliveries, attempts them and waits for the results. Returns how many
    /// were attempted (0 = nothing due).
    pub async fn run_once(&self) -> StoreResult<usize> {
        let mut set = JoinSet::new();
        let n = self.claim_and_start(&mut set).await?;
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    /// Runs steps until nothing is due now (retries scheduled later are not waited for).
    pub async fn run_until_idle(&self) -> StoreResult<usize> {
        let mut total = 0;
        loop {
            let n = self.run_once().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    async fn attempt(&self, t: &Target, c: Claimed, slot: &mut Slot) -> StoreResult<()> {
        let started = chrono::Utc::now();
        let started_ms = started.timestamp_millis();
        let res = match &c.body {
            Some(body) => {
                self.services
                    .webhooks
                    .dispatcher
                    .send(Outgoing {
                        url: &t.row.url,
                        webhook_id: &c.event_id,
                        event_type: &c.event_type,
                        attempt: c.attempt,
                        secret_key: &t.key,
                        body,
                    })
                    .await
            }
            None => AttemptResult {
                status: None,
                retry_after_secs: None,
                error: Some("the event was purged by retention".into()),
                excerpt: None,
                duration: Duration::ZERO,
            },
        };
        let duration_ms = res.duration.as_millis() as u64;
        let success = res.success();
        if success && t.row.mode != "ordered" {
            // The request is done: its slot may serve the next delivery while this result is
            // recorded. The lease still fences this delivery until then; failures (and ordered
            // mode) keep the slot until recorded, so a failing endpoint never exceeds its limit.
            slot.release();
        }
        let outcome = if success {
            AttemptOutcome::Success
        } else {
            AttemptOutcome::Failure {
                status: res.status,
                retry_after_secs: res.retry_after_secs,
            }
        };
        let schedule = &self.services.webhooks.config.retry_schedule_secs;
        let step = if c.body.is_none() {
            NextStep::Exhausted
        } else {
            next_step(c.attempt, schedule, outcome, rand::random::<f64>())
        };
        let finished_ms = started_ms + duration_ms as i64;
        let (status, next) = match step {
            NextStep::Succeeded => ("succeeded", None),
            NextStep::RetryIn(ms) => ("failed", Some(finished_ms + ms as i64)),
            NextStep::Exhausted => ("exhausted", None),
            NextStep::PauseGone => ("held", None),
        };
        let label = if success {
            "success"
        } else if res.status.is_some() {
            "http_error"
        } else if res
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("SSRF") || e.contains("SSRF guard"))
        {
            "refused"
        } else if res
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("timeout"))
        {
            "timeout"
        } else {
            "network_error"
        };
        metrics::counter!("ipm_webhook_attempts_total", "outcome" => label).increment(1);
        if success {
            let latency = (finished_ms - c.ingested_at_ms).max(0) as f64 / 1000.0;
            metrics::histogram!("ipm_webhook_ingest_to_delivery_duration_seconds").record(latency);
        }
        let rec = AttemptRecord {
            delivery_id: c.id.clone(),
            webhook_id: c.webhook_id.clone(),
            lease_token: c.lease_token,
            attempt: AttemptRow {
                attempt: c.attempt,
                started_at: format_utc(started),
                duration_ms,
                status_code: res.status,
                error: res.error.clone(),
                response_body_excerpt: res.excerpt.clone(),
            },
            started_ms,
            success,
            new_status: status.into(),
            next_attempt_at_ms: next,
        };
        let recorded = self.services.store.record(finished_ms, vec![rec]).await?;
        let Some(r) = recorded.into_iter().next().filter(|r| r.applied) else {
            return Ok(());
        };
        if success {
            return Ok(());
        }
        let (after, min_secs) = self.services.pause_thresholds(&t.row);
        let pause = if step == NextStep::PauseGone {
            Some(("gone", "the endpoint answered 410 Gone".to_string()))
        } else if should_auto_pause(
            r.consecutive_failures,
            r.first_failure_at_ms,
            finished_ms,
            after,
            min_secs,
        ) {
            Some((
                "consecutive_failures",
                format!("{} consecutive failed attempts", r.consecutive_failures),
            ))
        } else {
            None
        };
        if let Some((reason, detail)) = pause {
            match self
                .services
                .pause_with_effects(
                    &t.row,
                    reason,
                    detail,
                    res.status,
                    (r.consecutive_failures, r.first_failure_at_ms),
                    None,
                )
                .await
            {
                Ok(true) => tracing::warn!(webhook_id = %t.row.id, reason, "webhook paused"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(webhook_id = %t.row.id, error = %e, "pausing a webhook failed")
                }
            }
        }
        Ok(())
    }

    /// Runs until cancelled: claims whenever capacity frees up, events commit, or retries fall due.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            match self.services.store.release_leases().await {
                Ok(n) if n > 0 => {
                    tracing::info!(released = n, "released delivery leases of a previous run")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "releasing old leases failed"),
            }
            let mut commits = self.services.store.commits();
            let mut set = JoinSet::new();
            let mut last_gauge = std::time::Instant::now() - Duration::from_secs(10);
            loop {
                if stop.is_cancelled() {
                    break;
                }
                commits.borrow_and_update();
                let claimed = match self.claim_and_start(&mut set).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming deliveries failed");
                        0
                    }
                };
                while set.try_join_next().is_some() {}
                if last_gauge.elapsed() >= Duration::from_secs(1) {
                    last_gauge = std::time::Instant::now();
                    if let Ok(d) = self.services.store.queue_depth().await {
                        metrics::gauge!("ipm_webhook_queue_depth").set(d as f64);
                    }
                }
                if claimed > 0 {
                    continue;
                }
                let sleep = match self.services.store.next_due_ms().await {
                    Ok(Some(due)) => Duration::from_millis(
                        (due - now_millis()).clamp(5, IDLE_POLL.as_millis() as i64) as u64,
                    ),
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = commits.changed() => {}
                    _ = self.freed.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
            // Let in-flight attempts finish (bounded by the attempt timeout) so their results
            // are recorded before the store closes.
            let grace = Duration::from_secs(self.services.webhooks.config.attempt_timeout_secs + 1);
            let _ = tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} })
                .await;
        })
    }
}

fn poisoned() -> crate::store::StoreError {
    crate::store::StoreError::Backend("in-flight map lock poisoned".into())
}
