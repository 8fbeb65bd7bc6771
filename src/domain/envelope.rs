//! The event envelope (SPEC §1): parsing what producers send and rendering what IPM stores.
use super::FieldError;
use super::names;
use super::time::parse_rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Max size of one event's payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Max events in one batch.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    org_id: Cow<'a, str>,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow, default)]
    channel_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    facility_id: Option<Cow<'a, str>>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(borrow, default)]
    request_context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_refs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SourceRef {
    system: String,
    kind: String,
    id: String,
}

/// The stored tail of an envelope, in a fixed field order.
#[derive(Serialize)]
struct EnvelopeOut<'a> {
    event_id: &'a str,
    event_type: &'a str,
    org_id: &'a str,
    occurred_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facility_id: Option<&'a str>,
    schema_version: u32,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_context: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_refs: Option<&'a RawValue>,
}

/// A validated event as a producer sent it, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub event_type: String,
    pub service: String,
    pub org_id: String,
    pub channel_id: Option<String>,
    pub facility_id: Option<String>,
    pub schema_version: u32,
    /// The instant of `occurred_at`, Unix nanoseconds (part of the dedupe key).
    pub occurred_at: i64,
    /// The payload as sent (parsed only when a schema needs it).
    pub payload: Box<RawValue>,
    /// SHA-256 of the payload bytes, hex. Equal hashes mean equal payloads; on a duplicate with a
    /// different hash, [`same_payload`] decides by comparing the parsed values.
    pub payload_hash: String,
    /// The stored envelope without IPM's fields: a JSON object text starting with `{"event_id"`.
    pub rendered: String,
}

/// The outcome of parsing one item of a batch: the event, or why it was rejected.
pub type Parsed = Result<NewEvent, Rejection>;

/// Why one event was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The producer's event id, when it could be read.
    pub event_id: Option<String>,
    /// A stable code (`validation_failed`, `forbidden`, `unknown_event_type`, `schema_violation`).
    pub code: &'static str,
    /// What is wrong.
    pub errors: Vec<FieldError>,
}

impl Rejection {
    /// A validation rejection.
    pub fn invalid(event_id: Option<String>, errors: Vec<FieldError>) -> Self {
        Self {
            event_id,
            code: "validation_failed",
            errors,
        }
    }
}

impl NewEvent {
    /// Parses and validates one envelope from its raw JSON text.
    pub fn parse(raw: &str) -> Parsed {
        let de = &mut serde_json::Deserializer::from_str(raw);
        let env: EnvelopeIn<'_> = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let field = match inner.strip_prefix("missing field `") {
                Some(rest) => rest.split('`').next().unwrap_or("").to_string(),
                None if inner.starts_with("unknown field `") => {
                    inner.split('`').nth(1).unwrap_or("").to_string()
                }
                None if path == "." => String::new(),
                None => path,
            };
            let message = strip_position(&inner);
            Rejection::invalid(extract_event_id(raw), vec![FieldError::new(field, message)])
        })?;
        let mut errors = Vec::new();
        let mut check = |field: &str, r: Result<(), String>| {
            if let Err(m) = r {
                errors.push(FieldError::new(field, m));
            }
        };
        check("event_id", names::check_event_id(&env.event_id));
        check("event_type", names::check_event_type(&env.event_type));
        check("org_id", names::check_scope_id(&env.org_id));
        if let Some(c) = &env.channel_id {
            check("channel_id", names::check_scope_id(c));
        }
        if let Some(f) = &env.facility_id {
            check("facility_id", names::check_scope_id(f));
        }
        if let Some(r) = &env.reason_code {
            check("reason_code", names::check_event_id(r));
        }
        let occurred_at = match parse_rfc3339(&env.occurred_at) {
            Ok(i) => Some(i.unix_nanos),
            Err(m) => {
                errors.push(FieldError::new("occurred_at", m));
                None
            }
        };
        let schema_version = env.schema_version.unwrap_or(1);
        if schema_version == 0 {
            errors.push(FieldError::new("schema_version", "must be 1 or more"));
        }
        if env.payload.get().len() > MAX_PAYLOAD_BYTES {
            errors.push(FieldError::new(
                "payload",
                format!(
                    "is {} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes (256 KiB)",
                    env.payload.get().len()
                ),
            ));
        }
        // The payload is valid JSON (serde checked it); an object starts with `{`.
        let is_object = env.payload.get().trim_start().starts_with('{');
        if !is_object {
            errors.push(FieldError::new("payload", "must be a JSON object"));
        }
        if let Some(rc) = env.request_context
            && !rc.get().trim_start().starts_with('{')
        {
            errors.push(FieldError::new("request_context", "must be a JSON object"));
        }
        if let Some(refs) = env.source_refs
            && let Err(e) = serde_json::from_str::<Vec<SourceRef>>(refs.get())
        {
            errors.push(FieldError::new(
                "source_refs",
                format!(
                    "must be an array of {{system, kind, id}} strings: {}",
                    strip_position(&e.to_string())
                ),
            ));
        }
        let event_id = Some(env.event_id.to_string());
        let (Some(occurred_at), true) = (occurred_at, errors.is_empty()) else {
            return Err(Rejection::invalid(event_id, errors));
        };
        let out = EnvelopeOut {
            event_id: &env.event_id,
            event_type: &env.event_type,
            org_id: &env.org_id,
            occurred_at: &env.occurred_at,
            channel_id: env.channel_id.as_deref(),
            facility_id: env.facility_id.as_deref(),
            schema_version,
            payload: env.payload,
            request_context: env.request_context,
            reason_code: env.reason_code.as_deref(),
            source_refs: env.source_refs,
        };
        let rendered = serde_json::to_string(&out).map_err(|e| {
            Rejection::invalid(event_id.clone(), vec![FieldError::new("", e.to_string())])
        })?;
        let payload_hash = hex::encode(Sha256::digest(env.payload.get().as_bytes()));
        let payload = env.payload.to_owned();
        Ok(NewEvent {
            event_id: env.event_id.into_owned(),
            service: names::service_of(&env.event_type).to_string(),
            event_type: env.event_type.into_owned(),
            org_id: env.org_id.into_owned(),
            channel_id: env.channel_id.map(Cow::into_owned),
            facility_id: env.facility_id.map(Cow::into_owned),
            schema_version,
            occurred_at,
            payload,
            payload_hash,
            rendered,
        })
    }
}

/// True when two envelopes (stored or rendered JSON texts) carry equal payloads, whatever
/// their key order or whitespace. Used only when the payload hashes differ.
pub fn same_payload(a: &str, b: &str) -> bool {
    #[derive(Deserialize)]
    struct P {
        payload: serde_json::Value,
    }
    match (serde_json::from_str::<P>(a), serde_json::from_str::<P>(b)) {
        (Ok(x), Ok(y)) => x.payload == y.payload,
        _ => false,
    }
}

/// Renders the full stored envelope: IPM's fields first, then the producer's as rendered.
pub fn render_stored(
    id: &str,
    sequence: i64,
    ingested_at: &str,
    service: &str,
    rendered: &str,
) -> String {
    let tail = rendered.strip_prefix('{').unwrap_or(rendered);
    let mut s = String::with_capacity(rendered.len() + 120);
    s.push_str("{\"id\":\"");
    s.push_str(id);
    s.push_str("\",\"sequence\":");
    s.push_str(&sequence.to_string());
    s.push_str(",\"ingested_at\":\"");
    s.push_str(ingested_at);
    s.push_str("\",\"service\":\"");
    s.push_str(service);
    s.push_str("\",");
    s.push_str(tail);
    s
}

fn extract_event_id(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        event_id: Option<String>,
    }
    serde_json::from_str::<Id>(raw)
        .ok()
        .and_then(|i| i.event_id)
        .filter(|e| e.len() <= 128)
}

/// Serde messages end with " at line 1 column 42"; that position means nothing to API users.
pub fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A batch body split into its items (raw JSON text each, or a per-line parse error).
#[derive(Debug)]
pub enum BatchError {
    /// The body is not JSON (or not an object/array).
    Malformed(String),
    /// Too many events.
    TooMany(usize),
    /// No events at all.
    Empty,
}

/// Splits a JSON (object or array) body into raw items.
pub fn split_json(body: &str) -> Result<Vec<Result<&str, String>>, BatchError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(body).map_err(|e| {
            BatchError::Malformed(format!(
                "body is not valid JSON: {}",
                strip_position(&e.to_string())
            ))
        })?;
        if items.is_empty() {
            return Err(BatchError::Empty);
        }
        if items.len() > MAX_BATCH {
            return Err(BatchError::TooMany(items.len()));
        }
        Ok(items.into_iter().map(|r| Ok(r.get())).collect())
    } else if trimmed.starts_with('{') {
        let one: &RawValue = serde_json::from_str(body).map_err(|e| {
            BatchError::Malformed(format!(
                "body is not valid JSON: {}",
                strip_position(&e.to_string())
            ))
        })?;
        Ok(vec![Ok(one.get())])
    } else {
        Err(BatchError::Malformed(
            "body must be a JSON object or an array of objects".into(),
        ))
    }
}

/// Splits an NDJSON body into lines; blank lines are skipped, a line that is not JSON is an item error.
pub fn split_ndjson(body: &str) -> Result<Vec<Result<&str, String>>, BatchError> {
    let mut out = Vec::new();
    for line in body.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if out.len() >= MAX_BATCH {
            return Err(BatchError::TooMany(
                body.lines().filter(|l| !l.trim().is_empty()).count(),
            ));
        }
        match serde_json::from_str::<&RawValue>(line) {
            Ok(r) => out.push(Ok(r.get())),
            Err(e) => out.push(Err(format!(
                "line is not valid JSON: {}",
                strip_position(&e.to_string())
            ))),
        }
    }
    if out.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"event_id":"e1","event_type":"orders.order.created","org_id":"org_a","occurred_at":"2026-11-26T10:15:00.123+01:00","payload":{"b":1, "a":2}}"#;

    #[test]
    fn parses_and_renders_as_given() {
        let e = NewEvent::parse(OK).unwrap();
        assert_eq!(e.service, "orders");
        assert!(e.rendered.contains(r#""payload":{"b":1, "a":2}"#));
        assert!(
            e.rendered
                .contains(r#""occurred_at":"2026-11-26T10:15:00.123+01:00""#)
        );
        let stored = render_stored(
            "evt_X",
            7,
            "2026-11-26T10:15:00.000Z",
            "orders",
            &e.rendered,
        );
        let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["schema_version"], 1);
        let other = NewEvent::parse(&OK.replace(r#"{"b":1, "a":2}"#, r#"{"a":2,"b":1}"#)).unwrap();
        assert_ne!(other.payload_hash, e.payload_hash);
        assert!(same_payload(&other.rendered, &e.rendered));
        let changed =
            NewEvent::parse(&OK.replace(r#"{"b":1, "a":2}"#, r#"{"a":3,"b":1}"#)).unwrap();
        assert!(!same_payload(&changed.rendered, &e.rendered));
    }

    #[test]
    fn rejections_name_the_field() {
        let r = NewEvent::parse(&OK.replace(r#","payload":{"b":1, "a":2}"#, "")).unwrap_err();
        assert_eq!(r.errors[0].field, "payload");
        let r =
            NewEvent::parse(&OK.replace("2026-11-26T10:15:00.123+01:00", "yesterday")).unwrap_err();
        assert_eq!(r.errors[0].field, "occurred_at");
        assert_eq!(r.event_id.as_deref(), Some("e1"));
        let r = NewEvent::parse(&OK.replace(r#""org_id":"org_a""#, r#""org_id":5"#)).unwrap_err();
        assert_eq!(r.errors[0].field, "org_id");
        let r = NewEvent::parse(&OK.replace(r#""org_id""#, r#""org""#)).unwrap_err();
        assert!(
            r.errors
                .iter()
                .any(|e| e.field == "org" || e.field == "org_id")
        );
    }

    #[test]
    fn splits_batches() {
        assert_eq!(split_json(&format!("[{OK},{OK}]")).unwrap().len(), 2);
        assert!(matches!(split_json("[]"), Err(BatchError::Empty)));
        assert!(matches!(split_json("nope"), Err(BatchError::Malformed(_))));
        let body = format!("{OK}\n\nnot json\n{OK}\n");
        let lines = split_ndjson(&body).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].is_err());
    }
}
