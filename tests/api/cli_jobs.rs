//! `ipm export` / `ipm import` against a live server, run as a user would.
use crate::job_helpers::{RealServer, line, real_publish};
use serde_json::Value;
use std::process::{Command, Output};

fn ipm(base: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipm"))
        .args(args)
        .env("IPM_URL", base)
        .env("IPM_KEY", key)
        .output()
        .unwrap()
}

#[tokio::test]
async fn cli_export_and_import_with_progress_exit_codes_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = RealServer::start(dir.path(), &[("IPM_JOBS__EXPORT_CHUNK", "500")]);
    let key = key.unwrap();
    let lines: Vec<String> = (0..5_000)
        .map(|i| line("org_a", "c", i, "orders.order.created"))
        .collect();
    real_publish(&server.base, &key, &lines).await;
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let out_s = out.to_str().unwrap();

    // Export with a forced progress display, then the same as JSON.
    let o = ipm(
        &server.base,
        &key,
        &[
            "export",
            "--org",
            "org_a",
            "--service",
            "orders",
            "--max-events-per-file",
            "2000",
            "--wait",
            "--out",
            out_s,
            "--progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("progress: export"), "{stderr}");
    assert!(stdout.contains("succeeded: 5000 events"), "{stdout}");
    assert!(stdout.contains("next cursor"), "{stdout}");
    let mut n = 0;
    for f in std::fs::read_dir(&out).unwrap() {
        n += std::fs::read_to_string(f.unwrap().path())
            .unwrap()
            .lines()
            .count();
    }
    assert_eq!(n, 5_000);
    let o = ipm(
        &server.base,
        &key,
        &["export", "--org", "org_a", "--gzip", "--wait", "--json"],
    );
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["progress"]["events_written"], 5_000);
    // Failure: an invalid filter is a non-zero exit with a readable message.
    let o = ipm(
        &server.base,
        &key,
        &["export", "--org", "org_a", "--service", "Bad!", "--wait"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("validation_failed"));

    // Import: clean file → 0; file with a bad line → 2 and an error report; bad key → 1.
    let good = work.path().join("good.ndjson");
    let text: String = (0..3_000)
        .map(|i| line("org_b", "g", i, "orders.order.created") + "\n")
        .collect();
    std::fs::write(&good, &text).unwrap();
    let o = ipm(
        &server.base,
        &key,
        &[
            "import",
            good.to_str().unwrap(),
            "--org",
            "org_b",
            "--wait",
            "--progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("progress: import"), "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("completed: 3000 lines, accepted 3000"));

    let bad = work.path().join("bad.ndjson");
    std::fs::write(&bad, format!("{text}not json\n")).unwrap();
    let o = ipm(
        &server.base,
        &key,
        &[
            "import",
            bad.to_str().unwrap(),
            "--org",
            "org_b",
            "--wait",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "completed_with_errors");
    assert_eq!(v["duplicates"], 3_000);
    assert_eq!(v["rejected"], 1);
    let report = std::fs::read_to_string(v["error_report"].as_str().unwrap()).unwrap();
    let first: Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
    assert_eq!(first["line"], 3_001);

    let o = ipm(
        &server.base,
        "ipm_nope",
        &["import", good.to_str().unwrap(), "--org", "org_b", "--wait"],
    );
    assert_eq!(o.status.code(), Some(1));
}
