//! Specimens as full stored envelopes (SPEC §1): the producer's fields from the specimen file,
//! defaults where the file omits them, and example values for the fields IPM adds on storage.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::Catalog;
use super::event::Specimen;

/// Org used when a specimen file names none.
const DEFAULT_ORG: &str = "org_acme";
/// Occurrence time used when a specimen file names none.
const DEFAULT_OCCURRED_AT: &str = "2026-11-26T10:15:00.123Z";

impl Catalog {
    /// Every specimen of `event_type` (all versions, ascending) as a full stored envelope:
    /// `event_id`, `event_type`, `org_id`, `occurred_at`, optional `channel_id`/`facility_id`/
    /// `request_context`/`reason_code`/`source_refs`, `schema_version`, `payload`, plus the
    /// stored fields `id`, `sequence`, `ingested_at`, `service` filled with **example** values.
    /// Empty when the type is unknown.
    pub fn specimens(&self, event_type: &str) -> Vec<Value> {
        let Some((entry, versions)) = self.compiled_of(event_type) else {
            return Vec::new();
        };
        let base = self.index.get(event_type).copied().unwrap_or(0) as u64;
        let mut out = Vec::new();
        for v in versions {
            for s in &v.specimens {
                let n = out.len() as u64;
                out.push(envelope(
                    &entry.event_type,
                    &entry.service,
                    v.version,
                    s,
                    1000 + base * 100 + n,
                ));
            }
        }
        out
    }
}

fn envelope(event_type: &str, service: &str, version: u32, s: &Specimen, sequence: u64) -> Value {
    let d = &s.data;
    let occurred_at = d
        .occurred_at
        .clone()
        .unwrap_or_else(|| DEFAULT_OCCURRED_AT.to_string());
    let occurred = DateTime::parse_from_rfc3339(&occurred_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let ingested = occurred + Duration::milliseconds(42);
    let ms = u64::try_from(ingested.timestamp_millis()).unwrap_or(0);
    let id = ulid::Ulid::from_parts(ms, u128::from(sequence));
    let mut m = Map::new();
    m.insert("id".into(), json!(format!("evt_{id}")));
    m.insert("sequence".into(), json!(sequence));
    m.insert(
        "ingested_at".into(),
        json!(ingested.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    m.insert("service".into(), json!(service));
    let event_id = d
        .event_id
        .clone()
        .unwrap_or_else(|| format!("specimen:{event_type}:v{version}:{sequence}"));
    m.insert("event_id".into(), json!(event_id));
    m.insert("event_type".into(), json!(event_type));
    m.insert(
        "org_id".into(),
        json!(d.org_id.as_deref().unwrap_or(DEFAULT_ORG)),
    );
    m.insert("occurred_at".into(), json!(occurred_at));
    let optional = [
        ("channel_id", d.channel_id.clone().map(Value::from)),
        ("facility_id", d.facility_id.clone().map(Value::from)),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    m.insert("schema_version".into(), json!(version));
    m.insert("payload".into(), Value::Object(d.payload.clone()));
    if let Some(rc) = &d.request_context {
        m.insert("request_context".into(), Value::Object(rc.clone()));
    }
    if let Some(r) = &d.reason_code {
        m.insert("reason_code".into(), json!(r));
    }
    if let Some(refs) = &d.source_refs {
        m.insert("source_refs".into(), Value::Array(refs.clone()));
    }
    Value::Object(m)
}
