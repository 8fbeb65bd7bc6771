//! Crash resume: the real binary is killed with SIGKILL mid-export and mid-import (after the
//! first checkpoint), restarted on the same data dir, and the jobs finish exactly once.
use crate::job_helpers::{
    RealServer, cdc_raw, line, lines_of, poll_until, real_publish, real_req, sha256_hex,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Small steps (many checkpoints) and a short lease so the restarted process takes over fast.
const ENV: &[(&str, &str)] = &[
    ("IPM_JOBS__LEASE_SECS", "2"),
    ("IPM_JOBS__EXPORT_CHUNK", "1500"),
    ("IPM_JOBS__IMPORT_CHUNK", "300"),
];

#[tokio::test]
async fn export_and_import_resume_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = RealServer::start(dir.path(), ENV);
    let key = key.expect("a fresh data dir mints an admin key");
    let lines: Vec<String> = (0..60_000)
        .map(|i| {
            line(
                "org_a",
                "x",
                i,
                if i % 3 == 0 {
                    "billing.noise.recorded"
                } else {
                    "orders.order.created"
                },
            )
        })
        .collect();
    real_publish(&server.base, &key, &lines).await;

    // Export: kill after the first checkpoint.
    let r = real_req(&server.base, Method::POST, "/v1/orgs/org_a/exports", &key)
        .json(&json!({"filters": {"service": ["orders"]}, "max_events_per_file": 7000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let path = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let seen = poll_until(&server.base, &key, &path, 120, |v| {
        v["progress"]["events_written"].as_u64().unwrap_or(0) > 0
    })
    .await;
    server.kill9();
    assert_eq!(
        seen["status"], "running",
        "the export finished before the kill: {seen}"
    );

    let (server, _) = RealServer::start(dir.path(), ENV);
    let job = poll_until(&server.base, &key, &path, 180, |v| v["status"] != "running").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let client = reqwest::Client::new();
    let mut exported = Vec::new();
    for f in job["files"].as_array().unwrap() {
        let bytes = real_req(&server.base, Method::GET, f["url"].as_str().unwrap(), &key)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(&bytes));
        assert_eq!(f["bytes"].as_u64().unwrap(), bytes.len() as u64);
        let ls = lines_of(&bytes);
        assert_eq!(f["events"].as_u64().unwrap(), ls.len() as u64);
        exported.extend(ls);
    }
    let (feed, _) = cdc_raw(&client, &server.base, &key, "org_a", "service=orders").await;
    assert_eq!(feed.len(), 40_000);
    assert!(
        exported == feed,
        "the resumed export has duplicated or missing lines"
    );

    // Import: 20,000 lines, 100 of them broken; kill after the first checkpoint.
    let mut text = String::new();
    let mut valid = HashSet::new();
    for i in 0..20_000 {
        if i % 200 == 13 {
            text.push_str("{broken\n");
        } else {
            text.push_str(&line("org_imp", "i", i, "orders.order.created"));
            text.push('\n');
            valid.insert(format!("i-{i}"));
        }
    }
    let r = real_req(&server.base, Method::POST, "/v1/orgs/org_imp/imports", &key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let ipath = r.headers()["location"].to_str().unwrap().to_string();
    let r = real_req(&server.base, Method::PUT, &format!("{ipath}/data"), &key)
        .header("content-type", "application/x-ndjson")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = real_req(&server.base, Method::POST, &format!("{ipath}/commit"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = poll_until(&server.base, &key, &ipath, 120, |v| {
        v["lines_processed"].as_u64().unwrap_or(0) > 0
    })
    .await;
    server.kill9();
    assert_eq!(
        seen["status"], "in_progress",
        "the import finished before the kill: {seen}"
    );

    let (server, _) = RealServer::start(dir.path(), ENV);
    let job = poll_until(&server.base, &key, &ipath, 180, |v| {
        v["status"] != "in_progress"
    })
    .await;
    assert_eq!(job["status"], "completed_with_errors", "{job}");
    let sum = ["accepted", "duplicates", "rejected"]
        .iter()
        .map(|k| job[*k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(sum, 20_000, "{job}");
    assert_eq!(job["rejected"], 100);
    let (feed, _) = cdc_raw(&client, &server.base, &key, "org_imp", "").await;
    let ids: Vec<String> = feed
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "an imported event is in the feed twice"
    );
    assert_eq!(unique, valid);
}
