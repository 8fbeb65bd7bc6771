//! The real binary's client commands against a running server.
use crate::helpers::TestApp;
use serde_json::Value;
use std::process::Output;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn ipm(app: &TestApp, key: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipm"));
    cmd.args(args)
        .args(["--url", &app.base, "--key", key])
        .env_remove("IPM_URL")
        .env_remove("IPM_KEY")
        .env("IPM_LOG", "warn");
    cmd.output().await.expect("run ipm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn keys_create_prints_the_new_key() {
    let app = TestApp::spawn().await;
    let out = ipm(
        &app,
        &app.admin_key,
        &[
            "keys", "create", "--role", "reader", "--org", "org_cli", "--label", "bi",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["key"].as_str().unwrap().starts_with("ipm_key_"));
    assert_eq!(v["role"], "reader");
    assert_eq!(v["org_id"], "org_cli");
    // The printed key works.
    let r = app.cdc("org_cli", "").await;
    assert_eq!(r.status(), 200);
    let list = ipm(&app, &app.admin_key, &["keys", "list"]).await;
    assert!(list.status.success());
    assert_eq!(text(&list.stdout).lines().count(), 2);
}

#[tokio::test]
async fn publish_a_file_then_tail_the_feed() {
    let app = TestApp::spawn().await;
    let out = ipm(
        &app,
        &app.admin_key,
        &["events", "publish", &fixture("events.ndjson")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("accepted 3, duplicates 0, rejected 0"),
        "{}",
        text(&out.stdout)
    );
    let again = ipm(
        &app,
        &app.admin_key,
        &["events", "publish", &fixture("events.ndjson")],
    )
    .await;
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("accepted 0, duplicates 3, rejected 0"),
        "{}",
        text(&again.stdout)
    );

    let reader = app
        .key(serde_json::json!({"role": "reader", "org_id": "org_cli"}))
        .await;
    let tail = ipm(&app, &reader, &["cdc", "tail", "--org", "org_cli"]).await;
    assert!(tail.status.success(), "{}", text(&tail.stderr));
    let ids: Vec<String> = text(&tail.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["cli-1", "cli-2", "cli-3"]);
    assert!(text(&tail.stderr).contains("next cursor: "));
    let orders = ipm(
        &app,
        &reader,
        &["cdc", "tail", "--org", "org_cli", "--service", "billing"],
    )
    .await;
    assert_eq!(text(&orders.stdout).lines().count(), 1);
}

#[tokio::test]
async fn failures_exit_non_zero_with_a_readable_error() {
    let app = TestApp::spawn().await;
    let bad_key = "ipm_key_01ARZ3NDEKTSV4RRFFQ69G5FAV_wrongwrongwrongwrong";
    let out = ipm(&app, bad_key, &["cdc", "tail", "--org", "org_cli"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = ipm(
        &app,
        bad_key,
        &["events", "publish", &fixture("events.ndjson")],
    )
    .await;
    assert!(!out.status.success());
    // A reader may not create keys.
    let reader = app
        .key(serde_json::json!({"role": "reader", "org_id": "org_cli"}))
        .await;
    let out = ipm(&app, &reader, &["keys", "create", "--role", "admin"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    // A rejected line makes publish fail and names the line.
    let out = ipm(
        &app,
        &app.admin_key,
        &["events", "publish", &fixture("events-with-bad-line.ndjson")],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("accepted 1"),
        "{}",
        text(&out.stdout)
    );
    // A missing file.
    let out = ipm(
        &app,
        &app.admin_key,
        &["events", "publish", "/nonexistent/file.ndjson"],
    )
    .await;
    assert!(!out.status.success());
}
