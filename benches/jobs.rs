//! Job throughput: `cargo bench --bench jobs [-- --big]`.
//!
//! - export MB/s end-to-end (job created → worker run to files) vs a raw baseline in the same
//!   run (the same rows straight from a SQLite query to a file);
//! - peak RSS during the export (VmHWM, reset before the export through /proc/self/clear_refs);
//! - import events/s for valid lines (upload file → worker run to completion).
//!
//! `--big` exports ≥ 2 GB (5.2M events) for the memory check.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use ipm::domain::auth::{Principal, Role};
use ipm::domain::context::RequestContext;
use ipm::service::exports::ExportIn;
use ipm::service::imports::{ImportIn, ImportProgress, UPLOAD_FILE};
use ipm::service::jobs::JobEnv;
use ipm::service::{AcceptAll, Services};
use ipm::store::DynStore;
use ipm::store::files::LocalFiles;
use ipm::store::sqlite::SqliteStore;
use ipm::workers::jobs::{JobTuning, JobWorker};
use std::io::Write;

// The same allocator as the `ipm` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;
use std::time::Instant;

fn event_line(org: &str, i: usize) -> String {
    serde_json::json!({
        "event_id": format!("e-{i}"),
        "event_type": if i.is_multiple_of(4) { "billing.invoice.issued" } else { "orders.order.created" },
        "org_id": org,
        "occurred_at": format!("2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z", 1 + (i / 86_400_000) % 28, (i / 3_600_000) % 24, (i / 60_000) % 60, (i / 1000) % 60, i % 1000),
        "channel_id": "web",
        "facility_id": format!("fac_{}", i % 17),
        "payload": {"order_id": format!("o_{i}"), "sku": format!("sku-{}", i % 977), "qty": i % 9 + 1,
                    "amount": {"value": (i % 10_000) as f64 / 100.0, "currency": "EUR"},
                    "customer": {"id": format!("c_{}", i % 50_000), "tier": "gold"},
                    "note": "a realistic amount of padding text in an order event payload, about this long"},
        "request_context": {"request_id": format!("req-{i}"), "actor_id": "svc-orders"}
    })
    .to_string()
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn admin() -> (Principal, RequestContext) {
    (
        Principal {
            key_id: "key_bench".into(),
            role: Role::Admin,
            org_id: None,
            services: vec![],
            orgs: vec![],
        },
        RequestContext {
            request_id: "bench".into(),
            actor_id: Some("bench".into()),
            key_id: "key_bench".into(),
            role: "admin".into(),
            reason_code: None,
            correlation_id: None,
            source_ip: None,
            user_agent: None,
            at: ipm::domain::time::now_rfc3339(),
        },
    )
}

async fn fill(services: &Services, org: &str, n: usize) {
    let (who, ctx) = admin();
    let context = ctx.to_json();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let l = event_line(org, i);
        batch.push(services.prepare(&who, Ok(&l), &context).unwrap());
        if batch.len() == 10_000 {
            services
                .store
                .append(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    services.store.append(batch).await.unwrap();
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    // Test runners (`cargo test` / `cargo nextest --all-targets`) list or run benches without
    // `--bench`: there is nothing to test here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let big = std::env::args().any(|a| a == "--big");
    let n_export: usize = if big { 5_200_000 } else { 600_000 };
    let n_import: usize = 300_000;
    ipm::app::init_crypto();
    let tmp =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let db = tmp.path().join("ipm.sqlite3");
    let store: DynStore = Arc::new(SqliteStore::open(&db).await.unwrap());
    let services = Arc::new(
        Services::new(
            store.clone(),
            Arc::new(ipm::catalog::Catalog::embedded().unwrap()),
            Arc::new(AcceptAll),
        )
        .await
        .unwrap(),
    );
    let env = Arc::new(JobEnv {
        files: Arc::new(LocalFiles::new(tmp.path().join("files"))),
        max_import_bytes: u64::MAX,
    });
    let worker = JobWorker::new(
        services.clone(),
        env.clone(),
        JobTuning::default(),
        &ipm::node::fresh_id(),
    );
    let (who, ctx) = admin();

    let t = Instant::now();
    fill(&services, "org_bench", n_export).await;
    println!(
        "setup: {n_export} events stored in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Raw baseline: the same rows straight from SQLite to a file.
    let raw_path = tmp.path().join("raw.ndjson");
    let t = Instant::now();
    let raw_bytes = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut st = conn
            .prepare("SELECT body FROM events WHERE org_id = ?1 ORDER BY seq")
            .unwrap();
        let mut rows = st.query(["org_bench"]).unwrap();
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&raw_path).unwrap());
        let mut n = 0u64;
        while let Some(r) = rows.next().unwrap() {
            let b = r.get_ref(0).unwrap().as_bytes().unwrap();
            w.write_all(b).unwrap();
            w.write_all(b"\n").unwrap();
            n += b.len() as u64 + 1;
        }
        w.flush().unwrap();
        w.get_ref().sync_all().unwrap();
        n
    };
    let raw_secs = t.elapsed().as_secs_f64();
    let raw_mbs = raw_bytes as f64 / 1e6 / raw_secs;
    std::fs::remove_file(&raw_path).unwrap();

    // Export end-to-end.
    reset_hwm();
    let t = Instant::now();
    let (job, _) = services
        .create_export(&who, &ctx, "org_bench", ExportIn::default(), None)
        .await
        .unwrap();
    worker.run_until_idle().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let hwm_mb = vm_hwm_kb() as f64 / 1024.0;
    let out = tmp.path().join("files/org_bench").join(&job.id);
    let bytes = dir_bytes(&out);
    let mbs = bytes as f64 / 1e6 / secs;
    println!(
        "export: {n_export} events, {:.1} MB in {secs:.2}s = {mbs:.0} MB/s (raw baseline {raw_mbs:.0} MB/s; ratio {:.2})",
        bytes as f64 / 1e6,
        mbs / raw_mbs
    );
    println!(
        "export: peak RSS during the export {hwm_mb:.0} MB (target < 200 MB; {:.1} GB exported)",
        bytes as f64 / 1e9
    );
    let _ = std::fs::remove_dir_all(&out);

    // Import of valid lines.
    let job = services
        .create_import(&who, &ctx, "org_imp", ImportIn::default())
        .await
        .unwrap();
    let mut size = 0u64;
    {
        let mut f = env
            .files
            .append_at("org_imp", &job.id, UPLOAD_FILE, 0)
            .unwrap();
        for i in 0..n_import {
            let l = event_line("org_imp", i);
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
            size += l.len() as u64 + 1;
        }
        f.sync().unwrap();
    }
    let mut j = job.clone();
    j.progress = serde_json::to_string(&ImportProgress {
        bytes_received: size,
        lines_received: n_import as u64,
        ..ImportProgress::default()
    })
    .unwrap();
    assert!(store.update_job(j, "open", None).await.unwrap());
    services
        .transition_import(&who, "org_imp", &job.id, &["open"], "upload_complete")
        .await
        .unwrap();
    let t = Instant::now();
    worker.run_until_idle().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let done = services.get_import(&who, "org_imp", &job.id).await.unwrap();
    let p: ImportProgress = serde_json::from_str(&done.progress).unwrap();
    assert_eq!(p.accepted, n_import as u64, "{}", done.progress);
    let eps = n_import as f64 / secs;
    println!(
        "import: {n_import} valid lines in {secs:.2}s = {eps:.0} events/s (target ≥ 80000; ratio {:.2})",
        eps / 80_000.0
    );
    store.close().await.unwrap();
}
