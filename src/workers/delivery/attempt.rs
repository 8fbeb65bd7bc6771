//! One delivery attempt: sign and send, record the result (fenced by the lease token), then
//! apply the failure rules (retry schedule, auto-pause).
use super::{DeliveryWorker, Slot, Target};
use crate::domain::time::format_utc;
use crate::domain::webhook::{AttemptOutcome, NextStep, next_step, should_auto_pause};
use crate::service::dispatch::{AttemptResult, Outgoing};
use crate::store::{AttemptRecord, AttemptRow, Claimed, StoreResult};
use std::time::Duration;

impl DeliveryWorker {
    /// Sends one claimed delivery, records the attempt and pauses the webhook when the failure
    /// rules say so. `slot` is handed on (or freed) as soon as a 2xx arrives.
    pub(super) async fn attempt(&self, t: &Target, c: Claimed, slot: &mut Slot) -> StoreResult<()> {
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
            // The request is done: its slot may serve the next (prefetched) delivery while this
            // result is recorded. The lease still fences this delivery until then; failures (and
            // ordered mode) keep the slot until recorded, so a failing endpoint never exceeds its
            // limit and an ordered webhook never sends its next delivery before this one is final.
            slot.finish();
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
                // The pause moved the webhook epoch: no queued delivery of it starts, and the
                // next claim round gives its queue back (the pause already turned them `held`).
                Ok(true) => tracing::warn!(webhook_id = %t.row.id, reason, "webhook paused"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(webhook_id = %t.row.id, error = %e, "pausing a webhook failed")
                }
            }
        }
        Ok(())
    }
}
