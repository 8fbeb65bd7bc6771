//! The API conventions of SPEC §2/§6 as data, served at `GET /v1/catalog/conventions`.

use serde_json::{Value, json};

/// Conventions document. Kept here so the catalog describes itself completely.
pub(crate) fn conventions() -> Value {
    json!({
        "base_path": "/v1",
        "content_types": { "json": "application/json", "ndjson": "application/x-ndjson", "problem": "application/problem+json" },
        "pagination": {
            "query": { "limit": { "default": 100, "min": 1, "max": 1000, "out_of_range": "400 validation_failed" }, "cursor": "opaque string from the previous page's next_cursor" },
            "response": { "data": "array of items", "next_cursor": "string or null", "has_more": "boolean" },
            "style": "keyset (never offsets): page cost does not grow with depth"
        },
        "cursor": {
            "opaque": true,
            "bound_to_filters": true,
            "errors": { "malformed_or_tampered_or_other_filters": "400 invalid_cursor", "before_retained_range": "410 cursor_expired" },
            "cdc": "position after the last returned event; following next_cursor until has_more=false and polling later sees every event exactly once, in sequence order"
        },
        "errors": {
            "format": "RFC 9457 problem details",
            "content_type": "application/problem+json",
            "fields": ["type", "title", "status", "detail", "code", "request_id", "errors"],
            "errors_item": { "field": "string", "message": "string" },
            "codes": ["validation_failed", "not_found", "invalid_cursor", "request_context_required", "payload_too_large", "unauthorized", "forbidden", "conflict", "cursor_expired", "rate_limited"]
        },
        "idempotency": {
            "dedupe_key": ["org_id", "event_id", "occurred_at"],
            "occurred_at_compared_as": "instant (not spelling)",
            "duplicate": "accepted, reported as duplicate, nothing stored or re-delivered",
            "payload_mismatch": "first write wins; the result flags payload_mismatch: true"
        },
        "signature": {
            "scheme": "Standard Webhooks",
            "headers": {
                "webhook-id": "the stored event's id (evt_…), stable across retries and replays",
                "webhook-timestamp": "Unix seconds of the attempt",
                "webhook-signature": "v1,<base64 HMAC-SHA256(secret_bytes, \"{webhook-id}.{webhook-timestamp}.{body}\")>"
            },
            "secret": "whsec_ + base64 of 32 random bytes; secret_bytes = base64-decode of the part after whsec_",
            "extra_headers": ["content-type: application/json", "user-agent: ipm/<version>", "ipm-event-type", "ipm-attempt"]
        },
        "time": { "format": "RFC 3339", "input": "UTC or offset", "output": "UTC with Z", "precision": "milliseconds at least" },
        "ids": { "time_sortable": true, "prefixes": { "event": "evt_", "webhook": "whk_", "delivery": "dlv_", "export": "exp_", "import": "imp_", "alert": "alr_", "alert_rule": "rul_", "inbox_item": "inb_", "api_key": "key_" } },
        "request_context": {
            "response_header": "X-Request-Id (echoed or generated)",
            "required_on_writes": ["X-Request-Id"],
            "required_on_management_writes": ["X-Request-Id", "X-Actor-Id"],
            "optional": ["X-Reason-Code", "X-Correlation-Id"]
        },
        "limits": { "request_body_bytes": 10_485_760, "event_payload_bytes": 262_144, "batch_events": 1000 },
        "event_envelope": {
            "required": ["event_id", "event_type", "org_id", "occurred_at", "payload"],
            "optional": ["channel_id", "facility_id", "schema_version", "request_context", "reason_code", "source_refs"],
            "stored_fields": ["id", "sequence", "ingested_at", "service"],
            "event_type_pattern": "^[a-z0-9_]+\\.[a-z0-9_]+\\.[a-z0-9_]+$",
            "event_id_pattern": "^[A-Za-z0-9._:-]{1,128}$",
            "schema_version_default": 1
        }
    })
}
