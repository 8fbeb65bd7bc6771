//! Import jobs (SPEC §8): partial failures reported by line, idempotent re-import, parts, abort.
use crate::job_helpers::{JobApp, line};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Line `i` (0-based) of the test file, broken in one of ten ways for 500 of the lines.
fn test_line(i: usize) -> (String, Option<&'static str>) {
    let good = line("org_a", "imp", i, "orders.order.created");
    if i % 20 != 7 {
        return (good, None);
    }
    let mut v: Value = serde_json::from_str(&good).unwrap();
    let broken = match (i / 20) % 10 {
        0 => return (format!("{{not json {i}"), Some("validation_failed")),
        1 => {
            v["org_id"] = "org_zzz".into();
            return (v.to_string(), Some("wrong_org"));
        }
        2 => {
            v["event_type"] = "Orders-Created".into();
            "validation_failed"
        }
        3 => {
            v["payload"] = json!([1, 2, 3]);
            "validation_failed"
        }
        4 => {
            v.as_object_mut().unwrap().remove("occurred_at");
            "validation_failed"
        }
        5 => {
            v["payload"] = json!({"blob": "x".repeat(300 * 1024)});
            "validation_failed"
        }
        6 => {
            v["occurred_at"] = "yesterday".into();
            "validation_failed"
        }
        7 => {
            v["event_id"] = "bad id with spaces".into();
            "validation_failed"
        }
        8 => {
            v["colour"] = "blue".into();
            "validation_failed"
        }
        _ => {
            v["org_id"] = json!(42);
            "validation_failed"
        }
    };
    (v.to_string(), Some(broken))
}

async fn run_import(app: &JobApp, parts: &[String]) -> Value {
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/imports", &app.admin_key)
        .json(&json!({"source": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "open");
    let path = format!("/v1/orgs/org_a/imports/{}", job["id"].as_str().unwrap());
    for p in parts {
        let r = app
            .req(Method::PUT, &format!("{path}/data"), &app.admin_key)
            .header("content-type", "application/x-ndjson")
            .body(p.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let r = app
        .req(Method::POST, &format!("{path}/commit"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["status"],
        "upload_complete"
    );
    app.drain().await;
    app.get(&path).await.1
}

#[tokio::test]
async fn import_with_500_broken_lines_reports_each_by_line_and_reimport_is_all_duplicates() {
    let app = JobApp::spawn().await;
    let mut want: BTreeMap<u64, &'static str> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..10_000 {
        let (l, bad) = test_line(i);
        if let Some(code) = bad {
            want.insert(i as u64 + 1, code);
        }
        lines.push(l);
    }
    assert_eq!(want.len(), 500);
    // Upload in three parts, one without a trailing newline.
    let text = lines.join("\n");
    let cut1 = text.match_indices('\n').nth(3_332).unwrap().0 + 1;
    let cut2 = text.match_indices('\n').nth(6_665).unwrap().0;
    let parts = vec![
        text[..cut1].to_string(),
        text[cut1..cut2].to_string(),
        text[cut2 + 1..].to_string(),
    ];
    let job = run_import(&app, &parts).await;
    assert_eq!(job["status"], "completed_with_errors", "{job}");
    assert_eq!(job["lines_received"], 10_000);
    assert_eq!(job["lines_processed"], 10_000);
    assert_eq!(job["accepted"], 9_500);
    assert_eq!(job["duplicates"], 0);
    assert_eq!(job["rejected"], 500);
    assert_eq!(job["resume_line"], 10_000);

    let r = app
        .req(
            Method::GET,
            job["errors_url"].as_str().unwrap(),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let report: Vec<Value> = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: BTreeMap<u64, String> = report
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap().is_empty());
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(report.len(), 500);
    let want_s: BTreeMap<u64, String> = want.iter().map(|(k, v)| (*k, v.to_string())).collect();
    assert_eq!(got, want_s);
    let (feed, _) = app.cdc_raw("org_a", "").await;
    assert_eq!(feed.len(), 9_500);

    let again = run_import(&app, std::slice::from_ref(&text)).await;
    assert_eq!(again["status"], "completed_with_errors");
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 9_500);
    assert_eq!(again["rejected"], 500);
    assert_eq!(app.cdc_raw("org_a", "").await.0.len(), 9_500);
}

#[tokio::test]
async fn import_states_limits_and_auth() {
    let app = JobApp::spawn_with(|c| c.jobs.max_import_bytes = 10_000).await;
    let reader = app.key(json!({"role": "reader", "org_id": "org_a"})).await;
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/imports", &reader)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/imports", &app.admin_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    let path = format!("/v1/orgs/org_a/imports/{}", job["id"].as_str().unwrap());
    // Over the configured limit: 413, nothing recorded.
    let r = app
        .req(Method::PUT, &format!("{path}/data"), &app.admin_key)
        .header("content-type", "application/x-ndjson")
        .body("x".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = app
        .req(Method::PUT, &format!("{path}/data"), &app.admin_key)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app
        .req(Method::PUT, &format!("{path}/data"), &app.admin_key)
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{}\n\n",
            line("org_a", "s", 1, "orders.order.created")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["lines_received"], 1);
    let r = app
        .req(Method::POST, &format!("{path}/abort"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "aborted");
    let r = app
        .req(Method::POST, &format!("{path}/commit"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(app.drain().await, 0);
    let r = app
        .req(Method::GET, &path.replace("org_a", "org_b"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
