//! Event ingestion (SPEC §3): parse, authorize per event, validate, append in one transaction.
use super::{ServiceError, Services};
use crate::domain::FieldError;
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::envelope::{
    BatchError, MAX_BATCH, NewEvent, Rejection, split_json, split_ndjson,
};
use crate::domain::ids::{IdKind, new_id};
use crate::store::{AppendOutcome, EventRow};
use serde::Serialize;

/// The body format of an ingest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One envelope or a JSON array of envelopes.
    Json,
    /// One envelope per line.
    Ndjson,
}

/// The answer to an ingest request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// One result per event, in request order.
    pub results: Vec<EventResult>,
}

/// What happened to one event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// `accepted`, `duplicate` or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    /// Set on duplicates whose payload differs from the stored one (the first write wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_mismatch: Option<bool>,
    /// Why it was rejected (`validation_failed`, `forbidden`, `unknown_event_type`, `schema_violation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl EventResult {
    fn rejected(index: usize, r: Rejection) -> Self {
        Self {
            index,
            event_id: r.event_id,
            status: "rejected",
            id: None,
            sequence: None,
            payload_mismatch: None,
            code: Some(r.code),
            errors: Some(r.errors),
        }
    }
}

impl Services {
    /// Ingests a request body. One transaction per batch; bad events do not reject good ones.
    pub async fn ingest(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        body: &str,
        format: BodyFormat,
    ) -> Result<IngestReport, ServiceError> {
        who.can_publish()?;
        let items = match format {
            BodyFormat::Json => split_json(body),
            BodyFormat::Ndjson => split_ndjson(body),
        }
        .map_err(|e| match e {
            BatchError::Malformed(m) => ServiceError::Validation(vec![FieldError::new("body", m)]),
            BatchError::TooMany(n) => ServiceError::PayloadTooLarge(format!(
                "the batch has {n} events; the limit is {MAX_BATCH}"
            )),
            BatchError::Empty => {
                ServiceError::Validation(vec![FieldError::new("body", "the batch has no events")])
            }
        })?;
        let context = ctx.to_json();
        let mut results: Vec<Option<EventResult>> = Vec::with_capacity(items.len());
        let mut rows = Vec::with_capacity(items.len());
        let mut row_index = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match self.prepare(who, item, &context) {
                Ok(row) => {
                    row_index.push(index);
                    results.push(None);
                    rows.push(row);
                }
                Err(r) => results.push(Some(EventResult::rejected(index, r))),
            }
        }
        let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let outcomes = self.store.append(rows).await?;
        let (mut accepted, mut duplicates) = (0, 0);
        for ((index, event_id), outcome) in row_index.into_iter().zip(event_ids).zip(outcomes) {
            let r = match outcome {
                AppendOutcome::Accepted { id, sequence } => {
                    accepted += 1;
                    EventResult {
                        index,
                        event_id: Some(event_id),
                        status: "accepted",
                        id: Some(id),
                        sequence: Some(sequence),
                        payload_mismatch: None,
                        code: None,
                        errors: None,
                    }
                }
                AppendOutcome::Duplicate {
                    id,
                    payload_mismatch,
                } => {
                    duplicates += 1;
                    EventResult {
                        index,
                        event_id: Some(event_id),
                        status: "duplicate",
                        id: Some(id),
                        sequence: None,
                        payload_mismatch: payload_mismatch.then_some(true),
                        code: None,
                        errors: None,
                    }
                }
            };
            results[index] = Some(r);
        }
        let results: Vec<EventResult> = results.into_iter().flatten().collect();
        let rejected = results.len() - accepted - duplicates;
        metrics::counter!("ipm_events_ingested_total", "outcome" => "accepted")
            .increment(accepted as u64);
        metrics::counter!("ipm_events_ingested_total", "outcome" => "duplicate")
            .increment(duplicates as u64);
        metrics::counter!("ipm_events_ingested_total", "outcome" => "rejected")
            .increment(rejected as u64);
        Ok(IngestReport {
            accepted,
            duplicates,
            rejected,
            results,
        })
    }

    /// The item-level entry point shared by `POST /v1/events` and import jobs: parses one raw
    /// envelope (or carries its split error), checks the publisher scope and the catalog, and
    /// renders the row to append. `context` is the request context as JSON.
    pub fn prepare(
        &self,
        who: &Principal,
        item: Result<&str, String>,
        context: &str,
    ) -> Result<EventRow, Rejection> {
        let e = item
            .map_err(|m| Rejection::invalid(None, vec![FieldError::new("", m)]))
            .and_then(NewEvent::parse)
            .and_then(|e| self.admit(who, e))?;
        Ok(EventRow {
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
            context: context.to_string(),
        })
    }

    /// Publisher scope and catalog validation for one parsed event.
    fn admit(&self, who: &Principal, e: NewEvent) -> Result<NewEvent, Rejection> {
        if !who.may_publish(&e.service, &e.org_id) {
            return Err(Rejection {
                event_id: Some(e.event_id),
                code: "forbidden",
                errors: vec![FieldError::new(
                    "event_type",
                    format!(
                        "this key may not publish `{}` events for org `{}`",
                        e.service, e.org_id
                    ),
                )],
            });
        }
        match self
            .validator
            .check(&e.event_type, e.schema_version, &e.payload)
        {
            Ok(()) => Ok(e),
            Err(r) => Err(Rejection {
                event_id: Some(e.event_id),
                code: r.code,
                errors: r.errors,
            }),
        }
    }
}
