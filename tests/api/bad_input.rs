//! Bad input of every shape: each a 4xx problem+json with a stable code, and the server alive after.
use crate::helpers::{TestApp, assert_problem, event, events, rid};
use reqwest::Method;
use serde_json::{Value, json};

enum Body {
    None,
    Text(&'static str, String),
    Bytes(&'static str, Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
    /// When set, the problem's `errors` must name this field.
    field: Option<&'static str>,
}

fn json_body(v: &Value) -> Body {
    Body::Text("application/json", v.to_string())
}

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        body,
        status,
        code,
        field: None,
    }
}

fn naming(mut c: Case, field: &'static str) -> Case {
    c.field = Some(field);
    c
}

fn tamper(cursor: &str) -> String {
    let mut b = cursor.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn bad_input_table() {
    let app = TestApp::spawn().await;
    app.publish(&events("org_a", "seed", 3)).await;
    let page: Value = app
        .cdc("org_a", "service=orders&limit=1")
        .await
        .json()
        .await
        .unwrap();
    let good_cursor = page["next_cursor"].as_str().unwrap().to_string();
    for i in 0..3 {
        app.key(json!({"role": "publisher", "label": format!("p{i}")}))
            .await;
    }
    let keys: Value = app
        .req(Method::GET, "/v1/admin/keys?limit=1", &app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys_cursor = keys["next_cursor"].as_str().unwrap().to_string();
    let cdc = |q: &str| format!("/v1/orgs/org_a/cdc?{q}");
    let (post, get, del) = (Method::POST, Method::GET, Method::DELETE);
    let ev = "/v1/events";
    let ks = "/v1/admin/keys";
    let nd = "application/x-ndjson";
    let js = "application/json";
    let big_ndjson = (0..1001)
        .map(|i| event("org_a", &format!("n{i}"), "orders.order.created").to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let cases = vec![
        // Ingest: bodies that are not a batch at all.
        case(
            "events: truncated JSON",
            post.clone(),
            ev,
            Body::Text(js, r#"{"event_id":"#.into()),
            400,
            "validation_failed",
        ),
        case(
            "events: truncated array",
            post.clone(),
            ev,
            Body::Text(js, "[{}, {".into()),
            400,
            "validation_failed",
        ),
        case(
            "events: a number",
            post.clone(),
            ev,
            Body::Text(js, "42".into()),
            400,
            "validation_failed",
        ),
        case(
            "events: a string",
            post.clone(),
            ev,
            Body::Text(js, "\"hi\"".into()),
            400,
            "validation_failed",
        ),
        case(
            "events: empty array",
            post.clone(),
            ev,
            Body::Text(js, "[]".into()),
            400,
            "validation_failed",
        ),
        case(
            "events: empty body",
            post.clone(),
            ev,
            Body::Text(js, String::new()),
            400,
            "validation_failed",
        ),
        case(
            "events: blank NDJSON",
            post.clone(),
            ev,
            Body::Text(nd, "\n\n".into()),
            400,
            "validation_failed",
        ),
        case(
            "events: batch of 1001",
            post.clone(),
            ev,
            json_body(&events("org_a", "x", 1001)),
            413,
            "payload_too_large",
        ),
        case(
            "events: NDJSON of 1001 lines",
            post.clone(),
            ev,
            Body::Text(nd, big_ndjson),
            413,
            "payload_too_large",
        ),
        case(
            "events: body over 10 MiB",
            post.clone(),
            ev,
            Body::Text(js, format!("[{}]", " ".repeat(10 * 1024 * 1024 + 1))),
            413,
            "payload_too_large",
        ),
        case(
            "events: non-UTF-8 JSON",
            post.clone(),
            ev,
            Body::Bytes(js, b"[{\"event_id\":\"\xff\xfe\"}]".to_vec()),
            400,
            "validation_failed",
        ),
        case(
            "events: non-UTF-8 NDJSON",
            post.clone(),
            ev,
            Body::Bytes(nd, vec![0xc3, 0x28, b'\n']),
            400,
            "validation_failed",
        ),
        case(
            "events: text/plain",
            post.clone(),
            ev,
            Body::Text(
                "text/plain",
                event("org_a", "t", "orders.order.created").to_string(),
            ),
            415,
            "unsupported_media_type",
        ),
        case(
            "events: application/xml",
            post.clone(),
            ev,
            Body::Text("application/xml", "<event/>".into()),
            415,
            "unsupported_media_type",
        ),
        case(
            "events: form encoded",
            post.clone(),
            ev,
            Body::Text("application/x-www-form-urlencoded", "a=b".into()),
            415,
            "unsupported_media_type",
        ),
        // Key creation: wrong types, missing fields.
        case(
            "keys: truncated JSON",
            post.clone(),
            ks,
            Body::Text(js, "{\"role\":".into()),
            400,
            "validation_failed",
        ),
        naming(
            case(
                "keys: role is a number",
                post.clone(),
                ks,
                json_body(&json!({"role": 5})),
                400,
                "validation_failed",
            ),
            "role",
        ),
        naming(
            case(
                "keys: role missing",
                post.clone(),
                ks,
                json_body(&json!({})),
                400,
                "validation_failed",
            ),
            "role",
        ),
        naming(
            case(
                "keys: unknown role",
                post.clone(),
                ks,
                json_body(&json!({"role": "root"})),
                400,
                "validation_failed",
            ),
            "role",
        ),
        naming(
            case(
                "keys: services not a list",
                post.clone(),
                ks,
                json_body(&json!({"role": "publisher", "services": "orders"})),
                400,
                "validation_failed",
            ),
            "services",
        ),
        naming(
            case(
                "keys: label is an object",
                post.clone(),
                ks,
                json_body(&json!({"role": "publisher", "label": {}})),
                400,
                "validation_failed",
            ),
            "label",
        ),
        case(
            "keys: JSON array body",
            post.clone(),
            ks,
            json_body(&json!([])),
            400,
            "validation_failed",
        ),
        case(
            "keys: non-UTF-8",
            post.clone(),
            ks,
            Body::Bytes(js, b"{\"role\":\"\xff\"}".to_vec()),
            400,
            "validation_failed",
        ),
        case(
            "keys: text/plain",
            post.clone(),
            ks,
            Body::Text("text/plain", "{\"role\":\"admin\"}".into()),
            415,
            "unsupported_media_type",
        ),
        case(
            "keys: no content type",
            post.clone(),
            ks,
            Body::Bytes("", b"{\"role\":\"admin\"}".to_vec()),
            415,
            "unsupported_media_type",
        ),
        // CDC: limits, unknown params, timestamps, names, cursors, wait.
        naming(
            case(
                "cdc: limit 0",
                get.clone(),
                cdc("limit=0"),
                Body::None,
                400,
                "validation_failed",
            ),
            "limit",
        ),
        naming(
            case(
                "cdc: limit 100000",
                get.clone(),
                cdc("limit=100000"),
                Body::None,
                400,
                "validation_failed",
            ),
            "limit",
        ),
        naming(
            case(
                "cdc: limit -1",
                get.clone(),
                cdc("limit=-1"),
                Body::None,
                400,
                "validation_failed",
            ),
            "limit",
        ),
        case(
            "cdc: limit not a number",
            get.clone(),
            cdc("limit=ten"),
            Body::None,
            400,
            "validation_failed",
        ),
        naming(
            case(
                "cdc: unknown parameter",
                get.clone(),
                cdc("colour=red"),
                Body::None,
                400,
                "validation_failed",
            ),
            "colour",
        ),
        naming(
            case(
                "cdc: misspelt parameter",
                get.clone(),
                cdc("services=orders"),
                Body::None,
                400,
                "validation_failed",
            ),
            "services",
        ),
        naming(
            case(
                "cdc: since not a time",
                get.clone(),
                cdc("since=yesterday"),
                Body::None,
                400,
                "validation_failed",
            ),
            "since",
        ),
        naming(
            case(
                "cdc: until month 13",
                get.clone(),
                cdc("until=2026-13-01T00:00:00Z"),
                Body::None,
                400,
                "validation_failed",
            ),
            "until",
        ),
        naming(
            case(
                "cdc: since without offset",
                get.clone(),
                cdc("since=2026-01-01T00:00:00"),
                Body::None,
                400,
                "validation_failed",
            ),
            "since",
        ),
        naming(
            case(
                "cdc: bad service name",
                get.clone(),
                cdc("service=Orders!"),
                Body::None,
                400,
                "validation_failed",
            ),
            "service",
        ),
        naming(
            case(
                "cdc: bad event type",
                get.clone(),
                cdc("event_type=orders..created"),
                Body::None,
                400,
                "validation_failed",
            ),
            "event_type",
        ),
        naming(
            case(
                "cdc: bad channel",
                get.clone(),
                cdc("channel_id=a%20b"),
                Body::None,
                400,
                "validation_failed",
            ),
            "channel_id",
        ),
        case(
            "cdc: garbage cursor",
            get.clone(),
            cdc("cursor=not-a-cursor"),
            Body::None,
            400,
            "invalid_cursor",
        ),
        case(
            "cdc: empty cursor",
            get.clone(),
            cdc("cursor="),
            Body::None,
            400,
            "invalid_cursor",
        ),
        case(
            "cdc: tampered cursor",
            get.clone(),
            cdc(&format!("service=orders&cursor={}", tamper(&good_cursor))),
            Body::None,
            400,
            "invalid_cursor",
        ),
        case(
            "cdc: cursor for other filters",
            get.clone(),
            cdc(&format!("service=billing&cursor={good_cursor}")),
            Body::None,
            400,
            "invalid_cursor",
        ),
        case(
            "cdc: key-list cursor",
            get.clone(),
            cdc(&format!("cursor={keys_cursor}")),
            Body::None,
            400,
            "invalid_cursor",
        ),
        naming(
            case(
                "cdc: wait 31",
                get.clone(),
                cdc("wait=31"),
                Body::None,
                400,
                "validation_failed",
            ),
            "wait",
        ),
        case(
            "cdc: wait -1",
            get.clone(),
            cdc("wait=-1"),
            Body::None,
            400,
            "validation_failed",
        ),
        case(
            "cdc: wait not a number",
            get.clone(),
            cdc("wait=soon"),
            Body::None,
            400,
            "validation_failed",
        ),
        // Keys: list and path ids.
        naming(
            case(
                "keys: list limit 0",
                get.clone(),
                format!("{ks}?limit=0"),
                Body::None,
                400,
                "validation_failed",
            ),
            "limit",
        ),
        naming(
            case(
                "keys: list unknown parameter",
                get.clone(),
                format!("{ks}?role=admin"),
                Body::None,
                400,
                "validation_failed",
            ),
            "role",
        ),
        case(
            "keys: list garbage cursor",
            get.clone(),
            format!("{ks}?cursor=zzz"),
            Body::None,
            400,
            "invalid_cursor",
        ),
        case(
            "keys: list CDC cursor",
            get.clone(),
            format!("{ks}?cursor={good_cursor}"),
            Body::None,
            400,
            "invalid_cursor",
        ),
        case(
            "keys: revoke a malformed id",
            del.clone(),
            format!("{ks}/not-a-key"),
            Body::None,
            404,
            "not_found",
        ),
        case(
            "keys: revoke a long id",
            del.clone(),
            format!("{ks}/{}", "k".repeat(3000)),
            Body::None,
            404,
            "not_found",
        ),
        case(
            "unknown route",
            get.clone(),
            "/v1/nothing-here",
            Body::None,
            404,
            "not_found",
        ),
        case(
            "wrong method",
            Method::PUT,
            ev,
            Body::None,
            405,
            "method_not_allowed",
        ),
    ];
    assert!(cases.len() >= 30);
    for c in cases {
        let mut rb = app
            .client
            .request(c.method.clone(), app.url(&c.path))
            .bearer_auth(&app.admin_key)
            .header("x-request-id", rid())
            .header("x-actor-id", "tester");
        rb = match c.body {
            Body::None => rb,
            Body::Text(ct, t) => rb.header("content-type", ct).body(t),
            Body::Bytes("", b) => rb.body(b),
            Body::Bytes(ct, b) => rb.header("content-type", ct).body(b),
        };
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, c.status, "{}: {text}", c.name);
        assert_eq!(
            ct.as_deref(),
            Some("application/problem+json"),
            "{}: {text}",
            c.name
        );
        let p: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", c.name));
        assert_eq!(p["code"], c.code, "{}: {text}", c.name);
        assert_eq!(p["status"], c.status, "{}", c.name);
        assert!(
            p["detail"].is_string() && p["title"].is_string() && p["type"].is_string(),
            "{}",
            c.name
        );
        if let Some(f) = c.field {
            let named = p["errors"].as_array().is_some_and(|es| {
                es.iter()
                    .any(|e| e["field"].as_str().is_some_and(|x| x.contains(f)))
            });
            assert!(named, "{}: the problem must name `{f}`: {text}", c.name);
        }
        app.assert_alive().await;
    }
    // Nothing from the bad requests was stored.
    assert_eq!(app.cdc_all("org_a", "").await.len(), 3);
}

/// Events that are well-formed JSON but invalid envelopes are rejected one by one (200 with
/// per-event results) without rejecting their good neighbours.
#[tokio::test]
async fn invalid_envelopes_are_rejected_per_event() {
    let app = TestApp::spawn().await;
    let base = event("org_a", "ok", "orders.order.created");
    let with = |k: &str, v: Value| {
        let mut e = base.clone();
        e[k] = v;
        e["event_id"] = json!(format!("bad-{k}"));
        e
    };
    let without = |k: &str| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().remove(k);
        e
    };
    let rows: Vec<(&str, Value, &str)> = vec![
        ("event_id missing", without("event_id"), "event_id"),
        (
            "event_id a number",
            {
                let mut e = base.clone();
                e["event_id"] = json!(7);
                e
            },
            "event_id",
        ),
        (
            "event_id with spaces",
            {
                let mut e = base.clone();
                e["event_id"] = json!("a b");
                e
            },
            "event_id",
        ),
        (
            "event_id too long",
            {
                let mut e = base.clone();
                e["event_id"] = json!("x".repeat(129));
                e
            },
            "event_id",
        ),
        ("event_type missing", without("event_type"), "event_type"),
        (
            "event_type two segments",
            with("event_type", json!("orders.created")),
            "event_type",
        ),
        (
            "event_type upper case",
            with("event_type", json!("Orders.Order.Created")),
            "event_type",
        ),
        ("org_id missing", without("org_id"), "org_id"),
        ("org_id a list", with("org_id", json!(["org_a"])), "org_id"),
        ("occurred_at missing", without("occurred_at"), "occurred_at"),
        (
            "occurred_at not a time",
            with("occurred_at", json!("soon")),
            "occurred_at",
        ),
        (
            "occurred_at no offset",
            with("occurred_at", json!("2026-01-01T00:00:00")),
            "occurred_at",
        ),
        (
            "occurred_at Feb 30",
            with("occurred_at", json!("2026-02-30T00:00:00Z")),
            "occurred_at",
        ),
        (
            "occurred_at a number",
            with("occurred_at", json!(1700000000)),
            "occurred_at",
        ),
        ("payload missing", without("payload"), "payload"),
        ("payload an array", with("payload", json!([1])), "payload"),
        ("payload a string", with("payload", json!("x")), "payload"),
        (
            "schema_version 0",
            with("schema_version", json!(0)),
            "schema_version",
        ),
        (
            "schema_version a string",
            with("schema_version", json!("1")),
            "schema_version",
        ),
        (
            "channel_id a number",
            with("channel_id", json!(3)),
            "channel_id",
        ),
        (
            "source_refs an object",
            with("source_refs", json!({})),
            "source_refs",
        ),
    ];
    let mut batch: Vec<Value> = rows.iter().map(|r| r.1.clone()).collect();
    batch.push(base.clone());
    let report = app.publish(&Value::Array(batch)).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["rejected"], rows.len(), "{report}");
    for (i, (name, _, field)) in rows.iter().enumerate() {
        let r = &report["results"][i];
        assert_eq!(r["status"], "rejected", "{name}: {r}");
        assert_eq!(r["index"], i, "{name}");
        assert_eq!(r["code"], "validation_failed", "{name}: {r}");
        let named = r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"].as_str().unwrap().contains(field));
        assert!(named, "{name}: errors must name `{field}`: {r}");
    }
    app.assert_alive().await;
}

#[tokio::test]
async fn a_missing_or_malformed_authorization_is_401() {
    let app = TestApp::spawn().await;
    for auth in [
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer ipm_nope",
        "Bearer ipm_key_x_y_z",
    ] {
        let mut rb = app.client.get(app.url("/v1/orgs/org_a/cdc"));
        if !auth.is_empty() {
            rb = rb.header("authorization", auth);
        }
        assert_problem(rb.send().await.unwrap(), 401, "unauthorized").await;
    }
    app.assert_alive().await;
}
