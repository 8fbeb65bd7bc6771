//! The catalog as an AsyncAPI 3.0.0 document: one channel per event type, one message per schema
//! version, `receive` operations, servers for the CDC and webhook surfaces.
//!
//! Catalog schemas are draft 2020-12 documents; AsyncAPI's default schema format is a draft-07
//! superset and resolves `$ref`s against the whole AsyncAPI document, so schemas are embedded
//! with `$schema`/`$id` dropped and local `$ref`s inlined.

use serde_json::{Map, Value, json};

use super::Catalog;
use super::model::{EventTypeEntry, Status};

/// Ids must be unique and simple: segments never contain `-`, so `.` → `-` cannot collide.
fn id(event_type: &str) -> String {
    event_type.replace('.', "-")
}

impl Catalog {
    /// The catalog as an AsyncAPI 3.0.0 document (validated by `@asyncapi/parser` in the tests).
    pub fn asyncapi(&self) -> Value {
        let mut channels = Map::new();
        let mut operations = Map::new();
        let mut schemas = Map::new();
        let mut messages = Map::new();
        schemas.insert("Envelope".into(), envelope_schema());
        for t in &self.types {
            let cid = id(&t.event_type);
            let mut channel_messages = Map::new();
            let mut op_messages = Vec::new();
            let examples = self.specimens(&t.event_type);
            for v in &t.versions {
                let mid = format!("{cid}-v{}", v.version);
                let payload_ref = match &v.schema {
                    Some(s) => {
                        schemas.insert(mid.clone(), to_asyncapi_schema(s));
                        json!({ "$ref": format!("#/components/schemas/{mid}") })
                    }
                    None => json!({ "type": "object" }),
                };
                let ex: Vec<Value> = examples
                    .iter()
                    .filter(|e| {
                        e.get("schema_version").and_then(Value::as_u64)
                            == Some(u64::from(v.version))
                    })
                    .enumerate()
                    .map(|(i, e)| json!({ "name": format!("specimen-{}", i + 1), "payload": e }))
                    .collect();
                messages.insert(mid.clone(), message(t, v.version, payload_ref, ex));
                let key = format!("v{}", v.version);
                channel_messages.insert(
                    key.clone(),
                    json!({ "$ref": format!("#/components/messages/{mid}") }),
                );
                op_messages.push(json!({ "$ref": format!("#/channels/{cid}/messages/{key}") }));
            }
            channels.insert(
                cid.clone(),
                json!({
                    "address": t.event_type,
                    "title": t.event_type,
                    "summary": t.summary,
                    "description": describe(t),
                    "servers": [{ "$ref": "#/servers/cdc" }, { "$ref": "#/servers/webhooks" }],
                    "messages": channel_messages,
                }),
            );
            operations.insert(
                format!("receive-{cid}"),
                json!({
                    "action": "receive",
                    "channel": { "$ref": format!("#/channels/{cid}") },
                    "summary": format!("Receive {} events", t.event_type),
                    "messages": op_messages,
                }),
            );
        }
        json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": "IPM event catalog",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Every event type IPM mirrors and emits. Each message is the stored envelope (SPEC §1) whose `payload` follows the event type's schema version. Streams are served through the CDC feed (pull, cursor-paginated, exactly-once-in-order) and signed webhooks (push, Standard Webhooks, at-least-once).",
            },
            "defaultContentType": "application/json",
            "servers": {
                "cdc": {
                    "host": "localhost:8080",
                    "protocol": "http",
                    "pathname": "/v1/orgs/{org_id}/cdc",
                    "title": "CDC feed",
                    "description": "Pull surface: GET with limit/cursor, ascending sequence. Bearer API key.",
                    "variables": { "org_id": { "default": "org_acme", "description": "The org whose stream is read." } },
                },
                "webhooks": {
                    "host": "subscriber.example.com",
                    "protocol": "https",
                    "title": "Webhook receiver",
                    "description": "Push surface: IPM POSTs each stored envelope to the subscriber's URL with Standard Webhooks signature headers (webhook-id, webhook-timestamp, webhook-signature).",
                },
            },
            "channels": channels,
            "operations": operations,
            "components": { "schemas": schemas, "messages": messages },
        })
    }
}

fn describe(t: &EventTypeEntry) -> String {
    let mut d = format!(
        "Entity `{}`, action `{}`. Status: {}.",
        t.entity,
        t.action,
        t.status.as_str()
    );
    if let Some(o) = &t.owner {
        d.push_str(&format!(" Owner: {o}."));
    }
    if let (Status::Deprecated, Some(dep)) = (t.status, &t.deprecation) {
        d.push_str(&format!(" Deprecated since {}: {}", dep.since, dep.message));
    }
    d
}

fn message(t: &EventTypeEntry, version: u32, payload_ref: Value, examples: Vec<Value>) -> Value {
    let mut m = json!({
        "name": format!("{} v{version}", t.event_type),
        "title": format!("{} (schema version {version})", t.event_type),
        "summary": t.summary,
        "contentType": "application/json",
        "payload": {
            "allOf": [
                { "$ref": "#/components/schemas/Envelope" },
                {
                    "type": "object",
                    "properties": {
                        "event_type": { "const": t.event_type },
                        "service": { "const": t.service },
                        "schema_version": { "const": version },
                        "payload": payload_ref,
                    },
                },
            ],
        },
    });
    if !examples.is_empty() {
        m["examples"] = Value::Array(examples);
    }
    m
}

fn envelope_schema() -> Value {
    json!({
        "type": "object",
        "description": "A stored event envelope, identical on the CDC feed, in webhook bodies and in export files.",
        "required": ["id", "sequence", "ingested_at", "service", "event_id", "event_type", "org_id", "occurred_at", "payload"],
        "properties": {
            "id": { "type": "string", "pattern": "^evt_[0-9A-HJKMNP-TV-Z]{26}$", "description": "IPM's id of the stored event; the webhook-id." },
            "sequence": { "type": "integer", "minimum": 1, "description": "Commit order of the store, strictly increasing." },
            "ingested_at": { "type": "string", "format": "date-time" },
            "service": { "type": "string", "pattern": "^[a-z0-9_]+$" },
            "event_id": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$", "description": "Producer-unique id." },
            "event_type": { "type": "string", "pattern": "^[a-z0-9_]+\\.[a-z0-9_]+\\.[a-z0-9_]+$" },
            "org_id": { "type": "string" },
            "occurred_at": { "type": "string", "format": "date-time" },
            "channel_id": { "type": "string" },
            "facility_id": { "type": "string" },
            "schema_version": { "type": "integer", "minimum": 1, "default": 1 },
            "payload": { "type": "object" },
            "request_context": { "type": "object" },
            "reason_code": { "type": "string" },
            "source_refs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": { "system": { "type": "string" }, "kind": { "type": "string" }, "id": { "type": "string" } },
                },
            },
        },
    })
}

/// Drops `$schema`, `$id` and `$defs`, inlining local `$ref`s (catalog schemas are not recursive;
/// a depth limit guards against cycles anyway).
fn to_asyncapi_schema(schema: &Value) -> Value {
    inline(schema, schema, 0)
}

fn inline(root: &Value, node: &Value, depth: usize) -> Value {
    match node {
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get("$ref")
                && depth < 32
                && let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p))
            {
                let mut resolved = inline(root, target, depth + 1);
                if let Value::Object(m) = &mut resolved {
                    for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "$ref") {
                        m.insert(k.clone(), inline(root, v, depth + 1));
                    }
                }
                return resolved;
            }
            let out: Map<String, Value> = obj
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "$schema" | "$id" | "$defs" | "definitions"))
                .map(|(k, v)| (k.clone(), inline(root, v, depth)))
                .collect();
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(root, v, depth)).collect()),
        other => other.clone(),
    }
}
