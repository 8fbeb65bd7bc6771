//! `POST /v1/events`: formats, per-event results, idempotency, publisher scoping, limits.
use crate::helpers::{TestApp, assert_problem, event, events};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn single_array_and_ndjson_bodies_give_per_event_results() {
    let app = TestApp::spawn().await;
    let single = app
        .publish(&event("org_a", "s1", "orders.order.created"))
        .await;
    assert_eq!(single["accepted"], 1);
    assert_eq!(single["results"][0]["status"], "accepted");
    assert_eq!(single["results"][0]["index"], 0);
    assert!(
        single["results"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("evt_")
    );
    assert!(single["results"][0]["sequence"].as_i64().unwrap() > 0);

    let mut bad = event("org_a", "a2", "orders.order.created");
    bad["occurred_at"] = json!("yesterday");
    let arr = app
        .publish(&json!([event("org_a", "a1", "orders.order.created"), bad]))
        .await;
    assert_eq!(
        (arr["accepted"].clone(), arr["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(arr["results"][1]["status"], "rejected");
    assert_eq!(arr["results"][1]["index"], 1);
    assert_eq!(arr["results"][1]["event_id"], "a2");
    assert_eq!(arr["results"][1]["errors"][0]["field"], "occurred_at");

    let ndjson = [
        event("org_a", "n1", "orders.order.created").to_string(),
        event("org_a", "n2", "orders.order.paid").to_string(),
    ]
    .join("\n");
    let r = app
        .req(Method::POST, "/v1/events", &app.admin_key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson + "\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(app.cdc_all("org_a", "").await.len(), 4);
}

#[tokio::test]
async fn stored_envelope_keeps_what_was_sent_and_adds_ipm_fields() {
    let app = TestApp::spawn().await;
    let mut e = event("org_a", "full", "orders.order.created");
    e["channel_id"] = json!("web");
    e["facility_id"] = json!("fac_1");
    e["reason_code"] = json!("customer_request");
    e["source_refs"] = json!([{"system": "orders", "kind": "order", "id": "o_1"}]);
    e["payload"] = json!({"nested": {"a": [1, 2, 3]}, "s": "ü"});
    let rep = app.publish(&e).await;
    let stored = &app.cdc_all("org_a", "").await[0];
    for k in [
        "event_id",
        "event_type",
        "org_id",
        "channel_id",
        "facility_id",
        "payload",
        "reason_code",
        "source_refs",
    ] {
        assert_eq!(stored[k], e[k], "field {k}");
    }
    assert_eq!(stored["id"], rep["results"][0]["id"]);
    assert_eq!(stored["sequence"], rep["results"][0]["sequence"]);
    assert_eq!(stored["service"], "orders");
    assert!(stored["ingested_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_duplicate_batch_is_all_duplicate_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let batch = events("org_a", "d", 50);
    let first = app.publish(&batch).await;
    assert_eq!(first["accepted"], 50);
    let again = app.publish(&batch).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 50);
    for (a, b) in first["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["results"].as_array().unwrap())
    {
        assert_eq!(b["status"], "duplicate");
        assert_eq!(a["id"], b["id"], "a duplicate names the stored event");
        assert!(b.get("payload_mismatch").is_none());
    }
    assert_eq!(app.cdc_all("org_a", "").await.len(), 50);
}

#[tokio::test]
async fn same_key_other_payload_is_a_flagged_duplicate_and_first_write_wins() {
    let app = TestApp::spawn().await;
    app.publish(&event("org_a", "m1", "orders.order.created"))
        .await;
    let mut other = event("org_a", "m1", "orders.order.created");
    other["payload"] = json!({"n": "changed"});
    let r = app.publish(&other).await;
    assert_eq!(r["duplicates"], 1);
    assert_eq!(r["results"][0]["status"], "duplicate");
    assert_eq!(r["results"][0]["payload_mismatch"], true);
    let stored = app.cdc_all("org_a", "").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["payload"]["n"], "m1");
}

#[tokio::test]
async fn the_same_instant_with_another_offset_is_a_duplicate() {
    let app = TestApp::spawn().await;
    app.publish(&event("org_a", "t1", "orders.order.created"))
        .await;
    let mut shifted = event("org_a", "t1", "orders.order.created");
    shifted["occurred_at"] = json!("2026-11-26T12:15:00.123+02:00");
    let r = app.publish(&shifted).await;
    assert_eq!(r["results"][0]["status"], "duplicate");
    assert!(r["results"][0].get("payload_mismatch").is_none());
    // Another instant is another event; so is another org.
    let mut later = event("org_a", "t1", "orders.order.created");
    later["occurred_at"] = json!("2026-11-26T10:15:00.124Z");
    assert_eq!(app.publish(&later).await["accepted"], 1);
    assert_eq!(
        app.publish(&event("org_b", "t1", "orders.order.created"))
            .await["accepted"],
        1
    );
}

#[tokio::test]
async fn publishers_are_scoped_by_service_and_org() {
    let app = TestApp::spawn().await;
    let key = app
        .key(json!({"role": "publisher", "services": ["orders"], "orgs": ["org_a"]}))
        .await;
    let r = app
        .publish_as(
            &key,
            &json!([
                event("org_a", "ok", "orders.order.created"),
                event("org_a", "svc", "billing.invoice.created"),
                event("org_b", "org", "orders.order.created"),
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"], 2);
    for i in [1, 2] {
        assert_eq!(v["results"][i]["status"], "rejected");
        assert_eq!(v["results"][i]["code"], "forbidden");
    }
    // An unscoped publisher may publish anything.
    let any = app.key(json!({"role": "publisher"})).await;
    let r = app
        .publish_as(
            &any,
            &json!([event("org_z", "x", "billing.invoice.created")]),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
}

#[tokio::test]
async fn a_batch_of_1000_passes_and_1001_is_413() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.publish(&events("org_a", "b", 1000)).await["accepted"],
        1000
    );
    let r = app
        .publish_as(&app.admin_key, &events("org_a", "c", 1001))
        .await;
    assert_problem(r, 413, "payload_too_large").await;
    assert_eq!(app.cdc_all("org_a", "").await.len(), 1000);
}

#[tokio::test]
async fn an_oversized_payload_is_a_rejected_event_naming_payload() {
    let app = TestApp::spawn().await;
    let mut big = event("org_a", "big", "orders.order.created");
    big["payload"] = json!({"blob": "x".repeat(257 * 1024)});
    let r = app
        .publish(&json!([
            big,
            event("org_a", "small", "orders.order.created")
        ]))
        .await;
    assert_eq!(r["results"][0]["status"], "rejected");
    let fields: Vec<&str> = r["results"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.iter().any(|f| f.contains("payload")), "{fields:?}");
    assert_eq!(r["results"][1]["status"], "accepted");
}

#[tokio::test]
async fn a_body_over_10_mib_is_413() {
    let app = TestApp::spawn().await;
    let body = format!("[{}]", " ".repeat(10 * 1024 * 1024 + 10));
    let r = app
        .req(Method::POST, "/v1/events", &app.admin_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "payload_too_large").await;
    app.assert_alive().await;
}

#[tokio::test]
async fn writes_without_request_id_are_400_naming_it() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&app.admin_key)
        .json(&event("org_a", "x", "orders.order.created"))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400, "request_context_required").await;
    assert!(p["detail"].as_str().unwrap().contains("X-Request-Id"));
    assert_eq!(p["errors"][0]["field"], "X-Request-Id");
}

#[tokio::test]
async fn readers_and_org_admins_cannot_publish() {
    let app = TestApp::spawn().await;
    for role in ["reader", "org_admin"] {
        let k = app.key(json!({"role": role, "org_id": "org_a"})).await;
        let r = app
            .publish_as(&k, &event("org_a", "x", "orders.order.created"))
            .await;
        assert_problem(r, 403, "forbidden").await;
    }
}
