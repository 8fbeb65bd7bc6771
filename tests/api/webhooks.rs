//! Webhooks end to end against real receivers on 127.0.0.1 (issue 7, "What it must show" 1, 2,
//! 5, 6, 7, 8). The server's own delivery worker runs; tests poll for final states.
use crate::helpers::{TestApp, event, events};
use crate::receiver::{Receiver, Reply, closed_port_url, to_json_lines};
use reqwest::Method;
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

/// A server that may target 127.0.0.0/8, with a 1 s retry schedule and 1 s attempt timeout.
pub async fn wh_app(schedule: Vec<u64>) -> TestApp {
    TestApp::spawn_with(|c| {
        c.webhooks.allow_private_targets = vec!["127.0.0.0/8".into()];
        c.webhooks.retry_schedule_secs = schedule;
        c.webhooks.attempt_timeout_secs = 1;
    })
    .await
}

/// Creates a webhook as admin; returns the creation response.
pub async fn create(app: &TestApp, org: &str, body: Value) -> Value {
    let r = app
        .req(
            Method::POST,
            &format!("/v1/orgs/{org}/webhooks"),
            &app.admin_key,
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

pub async fn get(app: &TestApp, path: &str) -> Value {
    let r = app
        .req(Method::GET, path, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Every delivery of a webhook (all pages).
pub async fn deliveries(app: &TestApp, org: &str, wid: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = get(
            app,
            &format!("/v1/orgs/{org}/webhooks/{wid}/deliveries?limit=1000{cursor}"),
        )
        .await;
        out.extend(v["data"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Polls `check` until it returns Some, or panics after `secs`.
pub async fn poll<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every delivery of the webhook is in one of `states`; returns them.
pub async fn settle(
    app: &TestApp,
    org: &str,
    wid: &str,
    n: usize,
    states: &[&str],
    secs: u64,
) -> Vec<Value> {
    poll(secs, "deliveries to settle", || async {
        let d = deliveries(app, org, wid).await;
        (d.len() == n
            && d.iter()
                .all(|x| states.contains(&x["status"].as_str().unwrap())))
        .then_some(d)
    })
    .await
}

fn typed(org: &str, id: &str, t: &str) -> Value {
    event(org, id, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_the_standardwebhooks_library() {
    let app = wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    let w = create(
        &app,
        "org_a",
        json!({"url": rx.url(), "filters": {"event_types": ["orders.*"]}}),
    )
    .await;
    let secret = w["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(w["secret_last4"], secret[secret.len() - 4..]);
    let wid = w["id"].as_str().unwrap().to_string();
    let mut batch = events("org_a", "sig", 20);
    batch
        .as_array_mut()
        .unwrap()
        .push(typed("org_a", "other", "billing.invoice.paid"));
    app.publish(&batch).await;
    let r = app
        .req(
            Method::POST,
            &format!("/v1/orgs/org_a/webhooks/{wid}/test"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let caps = rx.wait_for(21, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 21, "the billing event must not match orders.*");
    for c in &caps {
        assert_eq!(c.header("content-type"), Some("application/json"));
        assert!(c.header("user-agent").unwrap().starts_with("ipm/"));
        assert_eq!(c.header("ipm-attempt"), Some("1"));
        let body = c.json();
        assert_eq!(
            c.header("webhook-id").unwrap(),
            body["id"].as_str().unwrap()
        );
        assert_eq!(
            c.header("ipm-event-type").unwrap(),
            body["event_type"].as_str().unwrap()
        );
    }
    // The body is the stored envelope byte for byte (as the CDC feed serves it).
    let cdc = app.cdc("org_a", "limit=1").await.text().await.unwrap();
    let first = caps.iter().find(|c| c.json()["sequence"] == 1).unwrap();
    assert!(
        cdc.contains(&first.body),
        "webhook body differs from the stored envelope"
    );
    assert!(
        caps.iter()
            .any(|c| c.json()["event_type"] == "ipm.webhook.test")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("captured.jsonl");
    std::fs::write(&file, to_json_lines(&secret, &caps)).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/verify_webhooks.py"))
        .arg(&file)
        .output()
        .expect("run .venv/bin/python (scripts/setup-test-tools.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Our own verifier agrees, and rejects a tampered body.
    let c = &caps[0];
    let now = chrono::Utc::now().timestamp();
    let v = |body: &str| {
        ipm::domain::signature::verify(
            &secret,
            c.header("webhook-id").unwrap(),
            c.header("webhook-timestamp").unwrap(),
            c.header("webhook-signature").unwrap(),
            body.as_bytes(),
            now,
            300,
        )
    };
    assert!(v(&c.body).is_ok());
    assert!(v(&format!("{} ", c.body)).is_err());
    // Delivery records.
    let ds = settle(&app, "org_a", &wid, 21, &["succeeded"], 10).await;
    let one = get(
        &app,
        &format!(
            "/v1/orgs/org_a/webhooks/{wid}/deliveries/{}",
            ds[0]["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(one["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(one["attempts"][0]["status_code"], 200);
    assert_eq!(one["attempts"][0]["response_body_excerpt"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receivers_get_exact_attempts_spacing_and_final_states() {
    let app = wh_app(vec![1, 1, 1]).await;
    let r500 = Receiver::start(Reply::Status(500)).await;
    let hang = Receiver::start(Reply::Hang).await;
    let r429 = Receiver::start(Reply::RetryAfter(2)).await;
    let r410 = Receiver::start(Reply::Status(410)).await;
    let refused = closed_port_url().await;
    let mut ids = Vec::new();
    for (name, url) in [
        ("e500", r500.url()),
        ("hang", hang.url()),
        ("refused", refused),
        ("e429", r429.url()),
        ("e410", r410.url()),
    ] {
        let w = create(
            &app,
            "org_f",
            json!({"url": url, "filters": {"event_types": [format!("t.{name}.x")]}}),
        )
        .await;
        ids.push((name, w["id"].as_str().unwrap().to_string()));
    }
    let batch: Vec<Value> = ids
        .iter()
        .map(|(n, _)| typed("org_f", n, &format!("t.{n}.x")))
        .collect();
    app.publish(&Value::Array(batch)).await;
    for (name, wid) in &ids {
        let (n_attempts, final_state) = match *name {
            "e410" => (1, "held"),
            _ => (4, "exhausted"),
        };
        let d = settle(&app, "org_f", wid, 1, &[final_state], 30).await;
        let one = get(
            &app,
            &format!(
                "/v1/orgs/org_f/webhooks/{wid}/deliveries/{}",
                d[0]["id"].as_str().unwrap()
            ),
        )
        .await;
        let attempts = one["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), n_attempts, "{name}: {one}");
        assert_eq!(one["attempt_count"], n_attempts as u64);
        let starts: Vec<i64> = attempts
            .iter()
            .map(|a| {
                chrono::DateTime::parse_from_rfc3339(a["started_at"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis()
            })
            .collect();
        for (i, a) in attempts.iter().enumerate() {
            assert_eq!(a["attempt"], i as u64 + 1);
            match *name {
                "e500" => assert_eq!(a["status_code"], 500),
                "e429" => assert_eq!(a["status_code"], 429),
                "e410" => assert_eq!(a["status_code"], 410),
                "hang" => assert!(a["error"].as_str().unwrap().contains("timeout"), "{a}"),
                _ => assert!(
                    a["status_code"].is_null() && a["error"].as_str().unwrap().contains("connect"),
                    "{a}"
                ),
            }
            if i > 0 {
                let prev_end = starts[i - 1] + attempts[i - 1]["duration_ms"].as_i64().unwrap();
                let gap = starts[i] - prev_end;
                // 1 s ± 20 % after the previous attempt ended; 429 honours Retry-After: 2.
                let (lo, hi) = if *name == "e429" {
                    (2000, 3500)
                } else {
                    (800, 2500)
                };
                assert!(
                    gap >= lo - 5 && gap <= hi,
                    "{name}: gap {gap} ms before attempt {}",
                    i + 1
                );
            }
        }
    }
    // 410 paused the webhook at once, with an event in the CDC feed and an inbox item.
    let gone = &ids.iter().find(|(n, _)| *n == "e410").unwrap().1;
    let w = get(&app, &format!("/v1/orgs/org_f/webhooks/{gone}")).await;
    assert_eq!(w["status"], "paused");
    assert_eq!(w["pause_reason"], "gone");
    let feed = app.cdc_all("org_f", "event_type=ipm.webhook.paused").await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0]["payload"]["webhook_id"], gone.as_str());
    assert_eq!(feed[0]["payload"]["reason"], "gone");
    let inbox = get(&app, "/v1/orgs/org_f/inbox?unread=true").await;
    assert_eq!(inbox["data"].as_array().unwrap().len(), 1);
    assert_eq!(inbox["data"][0]["kind"], "webhook_paused");
    assert_eq!(inbox["data"][0]["ref"]["id"], gone.as_str());
    // The other webhooks are still active (no thresholds met with the defaults 20 / 3600 s).
    let w = get(&app, &format!("/v1/orgs/org_f/webhooks/{}", ids[0].1)).await;
    assert_eq!(w["status"], "active");
    assert_eq!(w["consecutive_failures"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_pause_needs_both_thresholds_then_enable_and_skip_backlog() {
    let app = wh_app(vec![1, 1, 1, 1, 1, 1]).await;
    let rx = Receiver::start(Reply::Status(500)).await;
    // A: 3 failures, no age requirement → paused right after the 3rd attempt.
    // B: 2 failures and the first at least 2 s old → paused at the first attempt meeting both.
    let a = create(&app, "org_p", json!({"url": rx.url(), "filters": {"event_types": ["t.a.x"]}, "pause_after_consecutive_failures": 3, "pause_min_failing_secs": 0})).await;
    let b = create(&app, "org_p", json!({"url": rx.url(), "filters": {"event_types": ["t.b.x"]}, "pause_after_consecutive_failures": 2, "pause_min_failing_secs": 2})).await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    app.publish(&json!([
        typed("org_p", "a1", "t.a.x"),
        typed("org_p", "b1", "t.b.x")
    ]))
    .await;
    for (wid, after, min_ms) in [(&a, 3usize, 0i64), (&b, 2, 2000)] {
        let d = settle(&app, "org_p", wid, 1, &["held"], 30).await;
        let one = get(
            &app,
            &format!(
                "/v1/orgs/org_p/webhooks/{wid}/deliveries/{}",
                d[0]["id"].as_str().unwrap()
            ),
        )
        .await;
        let at = one["attempts"].as_array().unwrap();
        let start = |i: usize| {
            chrono::DateTime::parse_from_rfc3339(at[i]["started_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        };
        let end = |i: usize| start(i) + at[i]["duration_ms"].as_i64().unwrap();
        // Exactly the first attempt where both thresholds hold paused it.
        let k = (0..at.len())
            .find(|&i| i + 1 >= after && end(i) - start(0) >= min_ms)
            .expect("thresholds met");
        assert_eq!(
            at.len(),
            k + 1,
            "paused after {} attempts, expected {}: {one}",
            at.len(),
            k + 1
        );
        let w = get(&app, &format!("/v1/orgs/org_p/webhooks/{wid}")).await;
        assert_eq!(w["status"], "paused");
        assert_eq!(w["pause_reason"], "consecutive_failures");
    }
    // Paused events are in the feed (validating against the catalog) and in the inbox.
    let feed = app.cdc_all("org_p", "event_type=ipm.webhook.paused").await;
    assert_eq!(feed.len(), 2);
    for e in &feed {
        app.services
            .validator
            .check(
                "ipm.webhook.paused",
                1,
                &serde_json::value::to_raw_value(&e["payload"]).unwrap(),
            )
            .expect("paused payload matches the catalog");
    }
    let inbox = get(&app, "/v1/orgs/org_p/inbox?unread=true").await;
    let items = inbox["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let r = app
        .req(
            Method::POST,
            &format!(
                "/v1/orgs/org_p/inbox/{}/ack",
                items[0]["id"].as_str().unwrap()
            ),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&app, "/v1/orgs/org_p/inbox?unread=true").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Backlog while paused is held.
    app.publish(&json!([
        typed("org_p", "a2", "t.a.x"),
        typed("org_p", "b2", "t.b.x")
    ]))
    .await;
    settle(&app, "org_p", &a, 2, &["held"], 10).await;
    settle(&app, "org_p", &b, 2, &["held"], 10).await;
    // Enable needs X-Reason-Code.
    let r = app
        .req(
            Method::POST,
            &format!("/v1/orgs/org_p/webhooks/{a}/enable"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(r, 400, "request_context_required").await;
    rx.set_default(Reply::Ok);
    let r = app
        .req(
            Method::POST,
            &format!("/v1/orgs/org_p/webhooks/{a}/enable"),
            &app.admin_key,
        )
        .header("x-reason-code", "endpoint_fixed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let w: Value = r.json().await.unwrap();
    assert_eq!(w["status"], "active");
    assert_eq!(w["consecutive_failures"], 0);
    settle(&app, "org_p", &a, 2, &["succeeded"], 15).await;
    let r = app
        .req(
            Method::POST,
            &format!("/v1/orgs/org_p/webhooks/{b}/enable"),
            &app.admin_key,
        )
        .header("x-reason-code", "skip")
        .json(&json!({"skip_backlog": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    settle(&app, "org_p", &b, 2, &["skipped"], 5).await;
    let enabled = app.cdc_all("org_p", "event_type=ipm.webhook.enabled").await;
    assert_eq!(enabled.len(), 2);
    for e in &enabled {
        app.services
            .validator
            .check(
                "ipm.webhook.enabled",
                1,
                &serde_json::value::to_raw_value(&e["payload"]).unwrap(),
            )
            .expect("enabled payload matches the catalog");
    }
    // A skipped delivery can still be retried by hand.
    let d = deliveries(&app, "org_p", &b).await;
    let r = app
        .req(
            Method::POST,
            &format!(
                "/v1/orgs/org_p/webhooks/{b}/deliveries/{}/retry",
                d[0]["id"].as_str().unwrap()
            ),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    poll(10, "manual retry", || async {
        let d = deliveries(&app, "org_p", &b).await;
        (d[0]["status"] == "succeeded").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_in_pages_of_100_delivers_each_matching_event_once() {
    let app = wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    // 300 matching and 150 other events exist before the webhook.
    let mut all: Vec<Value> = (0..300)
        .map(|i| typed("org_r", &format!("m{i}"), "orders.order.created"))
        .collect();
    all.extend((0..150).map(|i| typed("org_r", &format!("o{i}"), "billing.invoice.paid")));
    for chunk in all.chunks(150) {
        app.publish(&Value::Array(chunk.to_vec())).await;
    }
    let w = create(
        &app,
        "org_r",
        json!({"url": rx.url(), "filters": {"services": ["orders"]}}),
    )
    .await;
    let wid = w["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0, "a new webhook does not get older events");
    let mut cursor: Option<String> = None;
    let mut total = 0;
    let mut calls = 0;
    loop {
        let mut body = json!({"limit": 100});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = app
            .req(
                Method::POST,
                &format!("/v1/orgs/org_r/webhooks/{wid}/replay"),
                &app.admin_key,
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        calls += 1;
        total += v["enqueued"].as_u64().unwrap();
        assert!(v["enqueued"].as_u64().unwrap() <= 100);
        if v["has_more"] != true {
            assert!(v["next_cursor"].is_null());
            break;
        }
        cursor = Some(v["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(total, 300);
    assert!(calls >= 3);
    let caps = rx.wait_for(300, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let caps = if caps.len() < rx.count() {
        rx.captured()
    } else {
        caps
    };
    assert_eq!(caps.len(), 300);
    let mut ids: Vec<String> = caps
        .iter()
        .map(|c| c.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "each matching event exactly once");
    assert!(ids.iter().all(|i| i.starts_with('m')));
    // A tampered cursor is refused.
    let r = app
        .req(
            Method::POST,
            &format!("/v1/orgs/org_r/webhooks/{wid}/replay"),
            &app.admin_key,
        )
        .json(&json!({"cursor": "nope"}))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(r, 400, "invalid_cursor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_mode_keeps_sequence_order_through_failures() {
    let app = wh_app(vec![1, 1, 1, 1, 1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    rx.fail_every(97);
    let w = create(
        &app,
        "org_o",
        json!({"url": rx.url(), "delivery": {"mode": "ordered"}}),
    )
    .await;
    assert_eq!(w["delivery"]["mode"], "ordered");
    for i in 0..4 {
        app.publish(&events("org_o", &format!("o{i}"), 250)).await;
    }
    let caps = rx.wait_for(1000 + 10, 55).await;
    let mut last = 0i64;
    let mut delivered = std::collections::HashSet::new();
    let mut failures = 0;
    for (i, c) in caps.iter().enumerate() {
        let seq = c.json()["sequence"].as_i64().unwrap();
        if (i + 1) % 97 == 0 {
            failures += 1;
            // A failed event is retried before anything after it.
            assert!(seq >= last, "sequence went backwards at request {i}");
            last = seq;
            continue;
        }
        assert!(
            seq > last || (seq == last && !delivered.contains(&seq)),
            "out of order at request {i}: {seq} after {last}"
        );
        delivered.insert(seq);
        last = seq;
    }
    assert!(failures >= 10);
    assert!(delivered.len() >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_targets_are_refused_at_create_and_at_connect_time() {
    let app = TestApp::spawn().await; // no allow-list
    for url in [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://172.16.0.1/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[fc00::1]/x",
        "http://localhost:9/x",
        "http://2130706433/x",
        "http://0177.0.0.1/x",
        "http://0x7f000001/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "ftp://example.com/x",
        "not a url",
    ] {
        let r = app
            .req(Method::POST, "/v1/orgs/org_s/webhooks", &app.admin_key)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        let v = crate::helpers::assert_problem(r, 400, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "url", "{url}: {v}");
    }
    // Connect time: a webhook whose name now resolves to loopback (as after a DNS change) is
    // refused by the delivery client's resolver, never contacted.
    let rx = Receiver::start(Reply::Ok).await;
    let s = &app.services;
    let id = ipm::domain::ids::new_id(ipm::domain::ids::IdKind::Webhook);
    let secret = ipm::domain::signature::generate_secret();
    let row = ipm::store::WebhookRow {
        id: id.clone(),
        org_id: "org_s".into(),
        url: format!("http://localhost:{}/hook", rx.addr.port()),
        description: None,
        filters: "{}".into(),
        mode: "concurrent".into(),
        max_in_flight: 8,
        pause_after: None,
        pause_min_secs: None,
        status: "active".into(),
        secret_sealed: s.webhooks.sealer.seal(&secret, &id).unwrap(),
        secret_last4: secret.last4(),
        consecutive_failures: 0,
        first_failure_at_ms: None,
        total_failures: 0,
        paused_at: None,
        pause_reason: None,
        last_success_at: None,
        last_failure_at: None,
        created_at: ipm::domain::time::now_rfc3339(),
        created_context: "{}".into(),
        updated_context: None,
    };
    s.store.insert_webhook(row).await.unwrap();
    app.publish(&events("org_s", "x", 1)).await;
    let d = poll(15, "a refused attempt", || async {
        let d = deliveries(&app, "org_s", &id).await;
        (d.len() == 1 && d[0]["attempt_count"].as_u64().unwrap() >= 1).then_some(d)
    })
    .await;
    let one = get(
        &app,
        &format!(
            "/v1/orgs/org_s/webhooks/{id}/deliveries/{}",
            d[0]["id"].as_str().unwrap()
        ),
    )
    .await;
    assert!(
        one["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("SSRF"),
        "{one}"
    );
    assert_eq!(
        rx.count(),
        0,
        "the loopback receiver must never be contacted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_reads_and_orgs_are_isolated() {
    let app = wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    let w = create(&app, "org_x", json!({"url": rx.url(), "description": "d"})).await;
    let secret = w["signing_secret"].as_str().unwrap().to_string();
    let wid = w["id"].as_str().unwrap().to_string();
    let b64 = secret.trim_start_matches("whsec_").to_string();
    for path in [
        format!("/v1/orgs/org_x/webhooks/{wid}"),
        "/v1/orgs/org_x/webhooks".to_string(),
    ] {
        let text = app
            .req(Method::GET, &path, &app.admin_key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains(&b64), "the secret leaked in {path}");
        assert!(text.contains("secret_last4"));
        assert!(!text.contains("signing_secret"));
    }
    // PATCH keeps the secret hidden too.
    let r = app
        .req(
            Method::PATCH,
            &format!("/v1/orgs/org_x/webhooks/{wid}"),
            &app.admin_key,
        )
        .json(&json!({"description": "e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&b64));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["description"], "e");
    assert!(v["updated_context"]["actor_id"].is_string());
    // Scoping: a reader of the org may read; another org's key gets 403; foreign ids 404.
    let reader = app.key(json!({"role": "reader", "org_id": "org_x"})).await;
    let other = app
        .key(json!({"role": "org_admin", "org_id": "org_y"}))
        .await;
    let r = app
        .req(
            Method::GET,
            &format!("/v1/orgs/org_x/webhooks/{wid}"),
            &reader,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .req(Method::POST, "/v1/orgs/org_x/webhooks", &reader)
        .json(&json!({"url": rx.url()}))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(r, 403, "forbidden").await;
    let r = app
        .req(
            Method::GET,
            &format!("/v1/orgs/org_x/webhooks/{wid}"),
            &other,
        )
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(r, 403, "forbidden").await;
    let r = app
        .req(
            Method::GET,
            &format!("/v1/orgs/org_y/webhooks/{wid}"),
            &other,
        )
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(r, 404, "not_found").await;
    let r = app
        .req(Method::GET, "/v1/orgs/org_y/inbox", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Revoke: no further deliveries.
    let r = app
        .req(
            Method::DELETE,
            &format!("/v1/orgs/org_x/webhooks/{wid}"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    app.publish(&events("org_x", "after", 3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 0);
    assert_eq!(
        get(&app, &format!("/v1/orgs/org_x/webhooks/{wid}")).await["status"],
        "revoked"
    );
}
