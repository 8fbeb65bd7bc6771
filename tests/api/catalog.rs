//! Catalog endpoints, ingest validation against the embedded catalog, and broken catalogs
//! refused by both `ipm catalog check` and `ipm serve --catalog`.
use crate::helpers::TestApp;
use ipm::config::{UnknownTypes, ValidationMode};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

async fn strict() -> TestApp {
    TestApp::spawn_with(|c| {
        c.catalog.unknown_types = UnknownTypes::Reject;
        c.catalog.validation = ValidationMode::Reject;
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app
        .req(Method::GET, path, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// The producer's part of a specimen envelope (without IPM's stored fields).
fn producer_part(specimen: &Value) -> Value {
    let mut v = specimen.clone();
    for k in ["id", "sequence", "ingested_at", "service"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

async fn all_types(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = get(app, &format!("/v1/catalog/event-types?limit=7{cursor}")).await;
        out.extend(v["data"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[tokio::test]
async fn every_specimen_is_accepted_and_comes_back_unchanged() {
    let app = strict().await;
    let types = all_types(&app).await;
    assert!(types.len() >= 20);
    let mut sent = Vec::new();
    for t in &types {
        let name = t["event_type"].as_str().unwrap();
        let specimens = get(&app, &format!("/v1/catalog/specimens/{name}")).await;
        for s in specimens["data"].as_array().unwrap() {
            sent.push(producer_part(s));
        }
    }
    assert!(sent.len() >= types.len());
    let report = app.publish(&Value::Array(sent.clone())).await;
    assert_eq!(report["rejected"], 0, "{report}");
    assert_eq!(
        report["accepted"].as_u64().unwrap() as usize,
        sent.len(),
        "{report}"
    );
    let mut back = Vec::new();
    for org in sent
        .iter()
        .map(|s| s["org_id"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
    {
        back.extend(app.cdc_all(&org, "").await);
    }
    for s in &sent {
        let stored = back
            .iter()
            .find(|b| b["event_id"] == s["event_id"] && b["org_id"] == s["org_id"])
            .unwrap_or_else(|| panic!("{} not in the CDC feed", s["event_id"]));
        for (k, v) in s.as_object().unwrap() {
            assert_eq!(&stored[k], v, "field {k} of {}", s["event_id"]);
        }
    }
}

#[tokio::test]
async fn specimens_broken_against_their_schema_are_rejected_with_a_pointer() {
    let app = strict().await;
    let types = all_types(&app).await;
    let mut broken = Vec::new();
    let mut expected = Vec::new();
    for t in &types {
        let name = t["event_type"].as_str().unwrap();
        let specimens = get(&app, &format!("/v1/catalog/specimens/{name}")).await;
        for s in specimens["data"].as_array().unwrap() {
            let version = s["schema_version"].as_u64().unwrap_or(1);
            let schema = t["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["version"] == version)
                .unwrap()["schema"]
                .clone();
            let Some(field) = schema["required"]
                .as_array()
                .and_then(|r| r.first())
                .and_then(|f| f.as_str())
            else {
                continue;
            };
            let mut e = producer_part(s);
            e["event_id"] = json!(format!("broken-{}-{}", name, broken.len()));
            e["payload"].as_object_mut().unwrap().remove(field);
            broken.push(e);
            expected.push(format!("/payload/{field}"));
        }
    }
    assert!(broken.len() >= 20);
    let report = app.publish(&Value::Array(broken.clone())).await;
    assert_eq!(
        report["rejected"].as_u64().unwrap() as usize,
        broken.len(),
        "{report}"
    );
    for (r, pointer) in report["results"].as_array().unwrap().iter().zip(&expected) {
        assert_eq!(r["code"], "schema_violation", "{r}");
        let fields: Vec<&str> = r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&pointer.as_str()),
            "{r} should name {pointer}"
        );
    }
}

#[tokio::test]
async fn unknown_types_are_rejected_by_default_and_accepted_when_configured() {
    let app = strict().await;
    let e = json!({"event_id": "u1", "event_type": "orders.nothing.happened", "org_id": "org_a",
                   "occurred_at": "2026-11-26T10:00:00Z", "payload": {}});
    let report = app.publish(&json!([e])).await;
    assert_eq!(report["results"][0]["code"], "unknown_event_type");
    let lax = TestApp::spawn_with(|c| c.catalog.unknown_types = UnknownTypes::Accept).await;
    assert_eq!(lax.publish(&json!([e])).await["accepted"], 1);
}

#[tokio::test]
async fn catalog_endpoints_answer() {
    let app = strict().await;
    let orders = get(&app, "/v1/catalog/event-types?service=orders").await;
    assert!(
        orders["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["service"] == "orders")
    );
    let stable = get(&app, "/v1/catalog/event-types?status=stable").await;
    assert!(
        stable["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "stable")
    );
    let first = orders["data"][0]["event_type"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&app, &format!("/v1/catalog/event-types/{first}")).await["event_type"],
        first.as_str()
    );
    let lcs = get(&app, "/v1/catalog/lifecycles").await;
    let entity = lcs["data"][0]["entity"].as_str().unwrap().to_string();
    assert!(lcs["data"].as_array().unwrap().len() >= 4);
    assert_eq!(
        get(&app, &format!("/v1/catalog/lifecycles/{entity}")).await["entity"],
        entity.as_str()
    );
    assert!(get(&app, "/v1/catalog/conventions").await.is_object());
    let contracts = get(&app, "/v1/contracts").await;
    assert!(contracts["data"].as_array().unwrap().len() >= 4);
    assert!(get(&app, "/v1/contracts/orders").await.is_object());
    assert!(get(&app, "/v1/contracts/maturity").await.is_object());
    assert_eq!(
        get(&app, "/v1/catalog/asyncapi.json").await["asyncapi"]
            .as_str()
            .unwrap()
            .chars()
            .next(),
        Some('3')
    );
    for missing in [
        "/v1/catalog/event-types/orders.nope.nope",
        "/v1/catalog/lifecycles/nope",
        "/v1/catalog/specimens/orders.nope.nope",
        "/v1/contracts/nope",
    ] {
        let r = app
            .req(Method::GET, missing, &app.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    // Any authenticated key may read the catalog, a publisher included.
    let publisher = app.key(json!({"role": "publisher"})).await;
    let r = app
        .req(Method::GET, "/v1/catalog/event-types", &publisher)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{}/v1/catalog/event-types", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn fixtures() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalogs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !matches!(
                p.file_name().unwrap().to_str().unwrap(),
                "valid_minimal" | "maturity_gaps"
            )
        })
        .collect();
    dirs.sort();
    dirs
}

fn problem_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("error:") && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn broken_catalogs_are_refused_by_check_and_by_serve_with_the_same_message() {
    let bin = env!("CARGO_BIN_EXE_ipm");
    let cases = fixtures();
    assert!(cases.len() >= 10, "{} broken fixtures", cases.len());
    for dir in cases {
        let check = Command::new(bin)
            .args(["catalog", "check"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            !check.status.success(),
            "{} passed the check",
            dir.display()
        );
        let lines = problem_lines(&check.stderr);
        assert!(!lines.is_empty(), "{}: no problem printed", dir.display());
        assert!(
            lines.iter().all(|l| l.matches(": ").count() >= 2),
            "{}: {lines:?}",
            dir.display()
        );
        let data = tempfile::tempdir().unwrap();
        let serve = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--catalog"])
            .arg(&dir)
            .arg("--data-dir")
            .arg(data.path())
            .env("IPM_LOG", "warn")
            .output()
            .unwrap();
        assert!(!serve.status.success(), "{}: serve started", dir.display());
        let serve_lines = problem_lines(&serve.stderr);
        assert_eq!(
            serve_lines,
            lines,
            "{}: serve and check disagree",
            dir.display()
        );
    }
    let ok = Command::new(bin)
        .args(["catalog", "check", "catalog"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(ok.status.success());
}
