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
    let r = app.req(Method::POST, &format!("/v1/orgs/{org}/webhooks"), &app.admin_key).json(&body).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

pub async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.req(Method::GET, path, &app.admin_key).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Every delivery of a webhook (all pages).
pub async fn deliveries(app: &TestApp, org: &str, wid: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = get(app, &format!("/v1/orgs/{org}/webhooks/{wid}/deliveries?limit=1000{cursor}")).await;
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
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every delivery of the webhook is in one of `states`; returns them.
pub async fn settle(app: &TestApp, org: &str, wid: &str, n: usize, states: &[&str], secs: u64) -> Vec<Value> {
    poll(secs, "deliveries to settle", || async {
        let d = deliveries(app, org, wid).await;
        (d.len() == n && d.iter().all(|x| states.contains(&x["status"].as_str().unwrap()))).then_some(d)
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
    let w = create(&app, "org_a", json!({"url": rx.url(), "filters": {"event_types": ["orders.*"]}})).await;
    let secret = w["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(w["secret_last4"], secret[secret.len() - 4..]);
    let wid = w["id"].as_str().unwrap().to_string();
    let mut batch = events("org_a", "sig", 20);
    batch.as_array_mut().unwrap().push(typed("org_a", "other", "billing.invoice.paid"));
    app.publish(&batch).await;
    let r = app.req(Method::POST, &format!("/v1/orgs/org_a/webhooks/{wid}/test"), &app.admin_key).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let caps = rx.wait_for(21, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 21, "the billing event must not match orders.*");
    for c in &caps {
        assert_eq!(c.header("content-type"), Some("application/json"));
        assert!(c.header("user-agent").unwrap().starts_with("ipm/"));
        assert_eq!(c.header("ipm-attempt"), Some("1"));
        let body = c.json();
        assert_eq!(c.header("webhook-id").unwrap(), body["id"].as_str().unwrap());
        assert_eq!(c.header("ipm-event-type").unwrap(), body["event_type"].as_str().unwrap());
    }
    // The body is the stored envelope byte for byte (as the CDC feed serves it).
    let cdc = app.cdc("org_a", "limit=1").await.text().await.unwrap();
    let first = caps.iter().find(|c| c.json()["sequence"] == 1).unwrap();
    assert!(cdc.contains(&first.body), "webhook body differs from the stored envelope");
    assert!(caps.iter().any(|c| c.json()["event_type"] == "ipm.webhook.test"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("captured.jsonl");
    std::fs::write(&file, to_json_lines(&secret, &caps)).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/verify_webhooks.py"))
        .arg(&file)
        .output()
        .expect("run .venv/bin/python (scripts/setup-test-tools.sh installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Our own verifier agrees, and rejects a tampered body.
    let c = &caps[0];
    let now = chrono::Utc::now().timestamp();
    let v = |body: &str| {
        ipm::domain::signature::verify(&secret, c.header("webhook-id").unwrap(), c.header("webhook-timestamp").unwrap(), c.header("webhook-signature").unwrap(), body.as_bytes(), now, 300)
    };
    assert!(v(&c.body).is_ok());
    assert!(v(&format!("{} ", c.body)).is_err());
    // Delivery records.
    let ds = settle(&app, "org_a", &wid, 21, &["succeeded"], 10).await;
    let one = get(&app, &format!("/v1/orgs/org_a/webhooks/{wid}/deliveries/{}", ds[0]["id"].as_str().unwrap())).await;
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
    for (name, url) in [("e500", r500.url()), ("hang", hang.url()), ("refused", refused), ("e429", r429.url()), ("e410", r410.url())] {
        let w = create(&app, "org_f", json!({"url": url, "filters": {"event_types": [format!("t.{name}.x")]}})).await;
        ids.push((name, w["id"].as_str().unwrap().to_string()));
    }
    let batch: Vec<Value> = ids.iter().map(|(n, _)| typed("org_f", n, &format!("t.{n}.x"))).collect();
    app.publish(&Value::Array(batch)).await;
    for (name, wid) in &ids {
        let (n_attempts, final_state) = match *name {
            "e410" => (1, "held"),
            _ => (4, "exhausted"),
        };
        let d = settle(&app, "org_f", wid, 1, &[final_state], 30).await;
        let one = get(&app, &format!("/v1/orgs/org_f/webhooks/{wid}/deliveries/{}", d[0]["id"].as_str().unwrap())).await;
        let attempts = one["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), n_attempts, "{name}: {one}");
        assert_eq!(one["attempt_count"], n_attempts as u64);
        let starts: Vec<i64> = attempts
            .iter()
            .map(|a| chrono::DateTime::parse_from_rfc3339(a["started_at"].as_str().unwrap()).unwrap().timestamp_millis())
            .collect();
        for (i, a) in attempts.iter().enumerate() {
            assert_eq!(a["attempt"], i as u64 + 1);
            match *name {
                "e500" => assert_eq!(a["status_code"], 500),
                "e429" => assert_eq!(a["status_code"], 429),
                "e410" => assert_eq!(a["status_code"], 410),
                "hang" => assert!(a["error"].as_str().unwrap().contains("timeout"), "{a}"),
                _ => assert!(a["status_code"].is_null() && a["error"].as_str().unwrap().contains("connect"), "{a}"),
            }
            if i > 0 {
                let prev_end = starts[i - 1] + attempts[i - 1]["duration_ms"].as_i64().unwrap();
                let gap = starts[i] - prev_end;
                // 1 s ± 20 % after the previous attempt ended; 429 honours Retry-After: 2.
                let (lo, hi) = if *name == "e429" { (2000, 3500) } else { (800, 2500) };
                assert!(gap >= lo - 5 && gap <= hi, "{name}: gap {gap} ms before attempt {}", i + 1);
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
