//! The OpenAPI document run through schemathesis against the live server: no 5xx, and no
//! response (status, content type, body schema, headers) that contradicts the document.
//! Needs `./.venv` from `scripts/setup-test-tools.sh` (which `scripts/test.sh` runs first).
use crate::helpers::TestApp;
use std::path::PathBuf;

/// Every check we hold the server to. None is excluded: each is meaningful for this API.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_holds_against_the_live_server() {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-test-tools.sh (scripts/test.sh does)",
        bin.display()
    );
    let app = TestApp::spawn().await;
    // Some data so CDC pages and key lists are not all empty.
    app.publish(&crate::helpers::events("org_a", "st", 20))
        .await;
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&bin)
        .current_dir(work.path())
        .args(["run", &app.url("/v1/openapi.json")])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", app.admin_key),
        ])
        .args(["--header", "X-Request-Id: schemathesis"])
        .args(["--header", "X-Actor-Id: schemathesis"])
        .args(["--checks", CHECKS])
        .args([
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--seed",
            "20261126",
        ])
        .args(["--generation-database", "none", "--request-timeout", "60"])
        .env("NO_COLOR", "1")
        // NDJSON request bodies need a serializer schemathesis does not ship.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env(
            "PYTHONPATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts"),
        )
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    app.assert_alive().await;
}
