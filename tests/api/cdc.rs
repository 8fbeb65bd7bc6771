//! `GET /v1/orgs/{org}/cdc`: filters, cursors, long-poll, retention.
use crate::helpers::{TestApp, assert_problem, event, events};
use ipm::workers::retention::RetentionWorker;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn ev(
    org: &str,
    id: &str,
    ty: &str,
    at: &str,
    channel: Option<&str>,
    facility: Option<&str>,
) -> Value {
    let mut e = event(org, id, ty);
    e["occurred_at"] = json!(at);
    if let Some(c) = channel {
        e["channel_id"] = json!(c);
    }
    if let Some(f) = facility {
        e["facility_id"] = json!(f);
    }
    e
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    app.cdc_all("org_a", query)
        .await
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_filter_selects_what_it_says() {
    let app = TestApp::spawn().await;
    app.publish(&json!([
        ev(
            "org_a",
            "e1",
            "orders.order.created",
            "2026-01-01T10:00:00Z",
            Some("web"),
            Some("fac_1")
        ),
        ev(
            "org_a",
            "e2",
            "orders.order.paid",
            "2026-01-01T11:00:00Z",
            Some("pos"),
            Some("fac_2")
        ),
        ev(
            "org_a",
            "e3",
            "billing.invoice.created",
            "2026-01-01T12:00:00Z",
            Some("web"),
            Some("fac_1")
        ),
        ev(
            "org_a",
            "e4",
            "inventory.stock.moved",
            "2026-01-01T13:00:00+00:00",
            None,
            None
        ),
        ev(
            "org_a",
            "e5",
            "orders_x.thing.done",
            "2026-01-01T14:00:00Z",
            None,
            None
        ),
        ev(
            "org_b",
            "e6",
            "orders.order.created",
            "2026-01-01T10:00:00Z",
            Some("web"),
            Some("fac_1")
        ),
    ]))
    .await;
    let cases: &[(&str, &[&str])] = &[
        ("", &["e1", "e2", "e3", "e4", "e5"]),
        ("service=orders", &["e1", "e2"]),
        ("service=orders&service=billing", &["e1", "e2", "e3"]),
        ("event_type=orders.order.paid", &["e2"]),
        (
            "event_type=orders.order.paid&event_type=billing.invoice.created",
            &["e2", "e3"],
        ),
        ("event_type=orders.*", &["e1", "e2"]),
        ("event_type=orders.order.*", &["e1", "e2"]),
        ("channel_id=web", &["e1", "e3"]),
        ("facility_id=fac_2", &["e2"]),
        ("since=2026-01-01T11:00:00Z", &["e2", "e3", "e4", "e5"]),
        ("until=2026-01-01T12:00:00Z", &["e1", "e2"]),
        (
            "since=2026-01-01T11:00:00Z&until=2026-01-01T13:00:00Z",
            &["e2", "e3"],
        ),
        (
            "since=2026-01-01T13:00:00%2B02:00",
            &["e2", "e3", "e4", "e5"],
        ),
        ("service=orders&channel_id=web&facility_id=fac_1", &["e1"]),
        ("service=nothing", &[]),
    ];
    for (q, want) in cases {
        assert_eq!(ids(&app, q).await, *want, "query `{q}`");
    }
}

#[tokio::test]
async fn following_cursors_sees_everything_once_then_polls_for_more() {
    let app = TestApp::spawn().await;
    app.publish(&events("org_a", "p", 10)).await;
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".into(),
        };
        let v: Value = app.cdc("org_a", &q).await.json().await.unwrap();
        let data = v["data"].as_array().unwrap();
        pages.push(data.len());
        seen.extend(data.iter().map(|e| e["sequence"].as_i64().unwrap()));
        cursor = Some(v["next_cursor"].as_str().unwrap().to_string());
        if v["has_more"] == false {
            break;
        }
    }
    assert_eq!(pages, vec![3, 3, 3, 1]);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let c = cursor.unwrap();
    let v: Value = app
        .cdc("org_a", &format!("cursor={c}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    assert_eq!(v["has_more"], false);
    assert!(
        v["next_cursor"].is_string(),
        "an empty page still has a cursor to poll with"
    );
    app.publish(&events("org_a", "q", 2)).await;
    let v: Value = app
        .cdc("org_a", &format!("cursor={c}"))
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["q-0", "q-1"]);
}

#[tokio::test]
async fn a_cursor_reused_with_other_filters_or_org_is_invalid() {
    let app = TestApp::spawn().await;
    app.publish(&events("org_a", "c", 3)).await;
    let v: Value = app
        .cdc("org_a", "service=orders&limit=1")
        .await
        .json()
        .await
        .unwrap();
    let c = v["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(
        app.cdc("org_a", &format!("service=orders&cursor={c}"))
            .await
            .status(),
        200
    );
    for q in [
        format!("service=billing&cursor={c}"),
        format!("cursor={c}"),
        format!("service=orders&channel_id=web&cursor={c}"),
    ] {
        assert_problem(app.cdc("org_a", &q).await, 400, "invalid_cursor").await;
    }
    assert_problem(
        app.cdc("org_b", &format!("service=orders&cursor={c}"))
            .await,
        400,
        "invalid_cursor",
    )
    .await;
}

#[tokio::test]
async fn wait_returns_early_when_an_event_arrives() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let v: Value = app.cdc("org_a", "").await.json().await.unwrap();
    let c = v["next_cursor"].as_str().unwrap().to_string();
    let publisher = {
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.publish(&event("org_a", "late", "orders.order.created"))
                .await;
        })
    };
    let start = Instant::now();
    let v: Value = app
        .cdc("org_a", &format!("wait=10&cursor={c}"))
        .await
        .json()
        .await
        .unwrap();
    let took = start.elapsed();
    publisher.await.unwrap();
    assert_eq!(v["data"][0]["event_id"], "late");
    assert!(took < Duration::from_secs(8), "long-poll held for {took:?}");
}

#[tokio::test]
async fn wait_on_an_empty_feed_returns_an_empty_page_after_the_wait() {
    let app = TestApp::spawn().await;
    let r = app.cdc("org_a", "wait=1").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn retention_purges_and_old_cursors_expire_with_410() {
    let app = TestApp::spawn().await;
    app.publish(&events("org_a", "old", 5)).await;
    let v: Value = app.cdc("org_a", "limit=1").await.json().await.unwrap();
    let stale = v["next_cursor"].as_str().unwrap().to_string();
    let worker = RetentionWorker::new(app.services.store.clone(), 1);
    // Nothing is a day old yet.
    assert_eq!(worker.run_once().await.unwrap(), 0);
    let far_future = ipm::domain::time::now_millis() + 3 * 86_400_000;
    let mut purged = 0;
    loop {
        let n = worker.run_once_at(far_future).await.unwrap();
        if n == 0 {
            break;
        }
        purged += n;
    }
    assert_eq!(purged, 5);
    assert_problem(
        app.cdc("org_a", &format!("limit=1&cursor={stale}")).await,
        410,
        "cursor_expired",
    )
    .await;
    // Starting over works, and new events arrive with larger sequences.
    assert!(app.cdc_all("org_a", "").await.is_empty());
    let r = app
        .publish(&event("org_a", "new", "orders.order.created"))
        .await;
    assert!(r["results"][0]["sequence"].as_i64().unwrap() > 5);
    assert_eq!(app.cdc_all("org_a", "").await.len(), 1);
}

#[tokio::test]
async fn orgs_never_see_each_other() {
    let app = TestApp::spawn().await;
    app.publish(&events("org_a", "a", 3)).await;
    app.publish(&events("org_b", "b", 2)).await;
    assert_eq!(app.cdc_all("org_a", "").await.len(), 3);
    assert_eq!(app.cdc_all("org_b", "").await.len(), 2);
    assert!(app.cdc_all("org_c", "").await.is_empty());
}
