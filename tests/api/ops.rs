//! Ops endpoints, request ids on every response, and the OpenAPI document's coverage.
use crate::helpers::{TestApp, event, events};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    }
    app.publish(&events("org_a", "m", 3)).await;
    app.cdc("org_a", "").await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("ipm_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/events\""), "{text}");
    let ingested = text
        .lines()
        .find(|l| l.starts_with("ipm_events_ingested_total") && l.contains("outcome=\"accepted\""))
        .expect("ipm_events_ingested_total{outcome=accepted}");
    let n: f64 = ingested.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3.0, "{ingested}");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    // Echoed, on success and on errors.
    let cases = [
        (Method::GET, "/healthz", None),
        (Method::GET, "/v1/openapi.json", None),
        (
            Method::GET,
            "/v1/orgs/org_a/cdc",
            Some(app.admin_key.clone()),
        ),
        (Method::GET, "/v1/orgs/org_a/cdc", None),
        (
            Method::GET,
            "/v1/orgs/org_a/cdc?limit=0",
            Some(app.admin_key.clone()),
        ),
        (Method::GET, "/nope", None),
        (Method::PUT, "/healthz", None),
    ];
    for (m, path, key) in cases {
        let mut rb = app
            .client
            .request(m.clone(), app.url(path))
            .header("x-request-id", "rid-echo-1");
        if let Some(k) = &key {
            rb = rb.bearer_auth(k);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(
            r.headers().get("x-request-id").unwrap(),
            "rid-echo-1",
            "{m} {path}"
        );
        if !r.status().is_success() {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["request_id"], "rid-echo-1", "{m} {path}");
        }
        // Generated when absent.
        let mut rb = app.client.request(m.clone(), app.url(path));
        if let Some(k) = &key {
            rb = rb.bearer_auth(k);
        }
        let r = rb.send().await.unwrap();
        let generated = r
            .headers()
            .get("x-request-id")
            .expect("generated request id");
        assert!(!generated.is_empty(), "{m} {path}");
    }
    // Also on a write refused for a missing X-Request-Id.
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&app.admin_key)
        .json(&event("org_a", "x", "orders.order.created"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("x-request-id"));
}

/// Every route the router serves, as `(method, OpenAPI path)`.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/events"),
    ("get", "/v1/orgs/{org_id}/cdc"),
    ("post", "/v1/admin/keys"),
    ("get", "/v1/admin/keys"),
    ("delete", "/v1/admin/keys/{key_id}"),
    ("get", "/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn openapi_lists_every_route_and_only_served_ones() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    for (m, p) in ROUTES {
        assert!(
            documented.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is not documented"
        );
    }
    for (m, p) in &documented {
        let concrete = p
            .replace("{org_id}", "org_a")
            .replace("{key_id}", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV");
        let r = app
            .req(m.to_uppercase().parse().unwrap(), &concrete, &app.admin_key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("no such route"),
            "documented {m} {p} is not served: {status} {body}"
        );
    }
}

#[tokio::test]
async fn a_second_process_on_a_data_dir_in_use_is_refused_and_the_node_id_is_kept() {
    let app = TestApp::spawn().await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ipm"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(app.dir.path())
            .envs(crate::helpers::backend_env(app.dir.path()))
            .env("IPM_LOG", "warn")
            .output(),
    )
    .await
    .expect("the second process did not exit")
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another ipm process is using the data dir"),
        "{err}"
    );
    // The first process keeps running, and a restart keeps its node id.
    let id = std::fs::read_to_string(app.dir.path().join("node-id")).unwrap();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let config = app.config.clone();
    let dir = app.stop().await;
    let again = TestApp::start_node(config, dir, Some(String::new())).await;
    assert_eq!(
        std::fs::read_to_string(again.dir.path().join("node-id")).unwrap(),
        id
    );
}
