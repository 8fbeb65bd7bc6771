//! Which background workers a node runs (`workers.*`, issue 11 item 21): a switched-off worker
//! leaves its work pending for a node that runs it (here: the same data dir restarted).
use crate::helpers::{TestApp, events};
use crate::receiver::{Receiver, Reply};
use crate::webhooks::{create, deliveries, poll};
use ipm::config::Config;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a switched-off worker is given to prove it does nothing (a running one delivers and
/// starts jobs within milliseconds).
const QUIET: Duration = Duration::from_secs(3);

fn allow_loopback(c: &mut Config) {
    c.webhooks.allow_private_targets = vec!["127.0.0.0/8".into()];
}

/// A webhook of `org_w` to `rx`, three events published, an export started; returns
/// (webhook id, export path).
async fn work_for(app: &TestApp, rx: &Receiver) -> (String, String) {
    let wh = create(app, "org_w", json!({"url": rx.url()})).await;
    app.publish(&events("org_w", "w", 3)).await;
    let r = app
        .req(Method::POST, "/v1/orgs/org_w/exports", &app.admin_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    (
        wh["id"].as_str().unwrap().to_string(),
        format!("/v1/orgs/org_w/exports/{}", job["id"].as_str().unwrap()),
    )
}

/// The export's status (its GET answers 202 while the job is not finished).
async fn export_status(app: &TestApp, path: &str) -> String {
    let r = app
        .req(Method::GET, path, &app.admin_key)
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn finished(app: &TestApp, path: &str) {
    poll(60, "the export to finish", || async {
        (export_status(app, path).await == "succeeded").then_some(())
    })
    .await;
}

async fn statuses(app: &TestApp, wid: &str) -> Vec<String> {
    deliveries(app, "org_w", wid)
        .await
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_api_only_node_runs_no_worker_and_leaves_the_work_pending() {
    let rx = Receiver::start(Reply::Ok).await;
    let app = TestApp::spawn_with(|c| {
        allow_loopback(c);
        c.workers.enabled = false;
    })
    .await;
    let (wid, export) = work_for(&app, &rx).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(rx.count(), 0, "an API-only node delivered");
    assert_eq!(statuses(&app, &wid).await, vec!["pending"; 3]);
    assert_eq!(export_status(&app, &export).await, "queued");

    // A node that runs workers, on the same store, does the work.
    let mut config = app.config.clone();
    config.workers.enabled = true;
    let admin = app.admin_key.clone();
    let dir = app.stop().await;
    let app = TestApp::start_node(config, dir, Some(admin)).await;
    rx.wait_for(3, 60).await;
    finished(&app, &export).await;
}

#[tokio::test]
async fn each_worker_has_its_own_switch() {
    let rx = Receiver::start(Reply::Ok).await;
    // Jobs run, deliveries wait.
    let app = TestApp::spawn_with(|c| {
        allow_loopback(c);
        c.workers.delivery = false;
    })
    .await;
    let (wid, export) = work_for(&app, &rx).await;
    finished(&app, &export).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        rx.count(),
        0,
        "the delivery worker ran although switched off"
    );
    assert_eq!(statuses(&app, &wid).await, vec!["pending"; 3]);

    // Deliveries run, jobs wait.
    let mut config = app.config.clone();
    config.workers.delivery = true;
    config.workers.jobs = false;
    let admin = app.admin_key.clone();
    let dir = app.stop().await;
    let app = TestApp::start_node(config, dir, Some(admin)).await;
    rx.wait_for(3, 60).await;
    let r = app
        .req(Method::POST, "/v1/orgs/org_w/exports", &app.admin_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let second = format!(
        "/v1/orgs/org_w/exports/{}",
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap()
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(export_status(&app, &second).await, "queued");
}
