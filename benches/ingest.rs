//! Ingest and CDC benchmarks (issue 2). Run: `cargo bench --bench ingest` (add `-- --quick` for a
//! smaller run). Every figure is printed beside a raw baseline measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipm::App;
use ipm::config::Config;
use rusqlite::params;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BATCH: usize = 1000;

fn payload(i: usize) -> serde_json::Value {
    // ~1 KB of realistic-looking payload.
    json!({
        "order_id": format!("o_{i:010}"),
        "customer": {"id": format!("c_{}", i % 5000), "tier": "gold", "email_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
        "lines": (0..6).map(|l| json!({"sku": format!("SKU-{:06}", (i + l) % 100000), "qty": l + 1, "unit_price": 1999, "currency": "EUR", "warehouse": "fac_berlin_01"})).collect::<Vec<_>>(),
        "totals": {"net": 11994, "tax": 2279, "gross": 14273, "currency": "EUR"},
        "notes": "x".repeat(200)
    })
}

fn envelope(i: usize, org: &str) -> serde_json::Value {
    let services = ["orders", "inventory", "fulfilment", "billing"];
    let s = services[i % 4];
    json!({
        "event_id": format!("ev-{i}"),
        "event_type": format!("{s}.record.changed"),
        "org_id": org,
        "occurred_at": "2026-11-26T10:15:00.123Z",
        "facility_id": format!("fac_{}", i % 10),
        "channel_id": "web",
        "payload": payload(i)
    })
}

struct Server {
    base: String,
    key: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: tempfile::TempDir) -> Server {
    start_with(dir, ipm::config::ValidationMode::Off).await
}

async fn start_with(dir: tempfile::TempDir, validation: ipm::config::ValidationMode) -> Server {
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.catalog.unknown_types = ipm::config::UnknownTypes::Accept;
    config.catalog.validation = validation;
    let app = App::build(config).await.unwrap();
    let key = app.minted_admin_key.clone().unwrap_or_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ipm::run(app, listener, async move {
        let _ = rx.await;
    }));
    Server {
        base,
        key,
        _dir: dir,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// Raw baseline: the same rows inserted with rusqlite in 1000-row transactions.
fn raw_baseline(rows: &[(String, String)], path: &std::path::Path) -> f64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .unwrap();
    let start = Instant::now();
    for (chunk_no, chunk) in rows.chunks(BATCH).enumerate() {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (seq, id, org_id, event_id, occurred_at, event_type, service, channel_id,
                     facility_id, payload_hash, ingested_at, body, context)
                     VALUES (?1, ?2, 'org_raw', ?3, 0, 'orders.record.changed', 'orders', 'web', 'fac_1', 'h', 0, ?4, '{}')
                     ON CONFLICT (org_id, event_id, occurred_at) DO NOTHING",
                )
                .unwrap();
            for (i, (id, body)) in chunk.iter().enumerate() {
                let seq = (chunk_no * BATCH + i + 1) as i64;
                st.execute(params![seq, format!("evt_{id}"), id, body])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    rows.len() as f64 / start.elapsed().as_secs_f64()
}

async fn batched_http(server: &Server, bodies: Arc<Vec<String>>, clients: usize) -> f64 {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, bodies, next, base, key) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            server.base.clone(),
            server.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= bodies.len() {
                    return;
                }
                let r = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .header("x-request-id", "bench")
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (bodies.len() * BATCH) as f64 / start.elapsed().as_secs_f64()
}

async fn single_http(server: &Server, clients: usize, duration: Duration) -> f64 {
    let client = reqwest::Client::new();
    let count = Arc::new(AtomicU64::new(0));
    // Bodies come from a template so the client's own JSON work stays out of the measurement.
    let template = Arc::new(
        envelope(0, "org_single")
            .to_string()
            .replace("\"ev-0\"", "\"__ID__\""),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let template = template.clone();
        let (client, count, base, key) = (
            client.clone(),
            count.clone(),
            server.base.clone(),
            server.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while start.elapsed() < duration {
                let body = template.replace("__ID__", &format!("s{c}-{i}"));
                i += 1;
                let r = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .header("x-request-id", "bench")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Fills the store file with `n` small events straight through rusqlite (setup, not measured).
fn fill_cdc_store(path: &std::path::Path, n: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
        .unwrap();
    let services = ["orders", "inventory", "fulfilment", "billing"];
    for chunk in 0..n.div_ceil(50_000) {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (seq, id, org_id, event_id, occurred_at, event_type, service, channel_id,
                     facility_id, payload_hash, ingested_at, body, context)
                     VALUES (?1, ?2, 'org_cdc', ?3, 0, ?4, ?5, 'web', ?6, 'h', 0, ?7, '{}')",
                )
                .unwrap();
            for i in chunk * 50_000..((chunk + 1) * 50_000).min(n) {
                let seq = i as i64 + 1;
                let s = services[i % 4];
                let fac = format!("fac_{}", i % 10);
                let id = format!("evt_{seq:026}");
                let body = format!(
                    r#"{{"id":"{id}","sequence":{seq},"ingested_at":"2026-11-26T10:15:00.000Z","service":"{s}","event_id":"e{i}","event_type":"{s}.record.changed","org_id":"org_cdc","occurred_at":"2026-11-26T10:15:00Z","facility_id":"{fac}","schema_version":1,"payload":{{"n":{i},"status":"ok","amount":1234}}}}"#
                );
                st.execute(params![
                    seq,
                    id,
                    format!("e{i}"),
                    format!("{s}.record.changed"),
                    s,
                    fac,
                    body
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    conn.execute_batch("ANALYZE").unwrap();
}

async fn cdc_latency(server: &Server, near_end: bool, total: usize, requests: usize) -> (f64, f64) {
    let client = reqwest::Client::new();
    let mut samples = Vec::with_capacity(requests);
    // A cursor near the start or the end, obtained the way a consumer would: follow next_cursor.
    let filter = "service=orders&facility_id=fac_2";
    let first: serde_json::Value = client
        .get(format!(
            "{}/v1/orgs/org_cdc/cdc?{filter}&limit=100",
            server.base
        ))
        .bearer_auth(&server.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut cursor = first["next_cursor"].as_str().unwrap().to_string();
    if near_end {
        // Skip to near the end with big pages (not measured).
        let mut seen = 0;
        while seen < total / 20 - 2000 {
            let v: serde_json::Value = client
                .get(format!(
                    "{}/v1/orgs/org_cdc/cdc?{filter}&limit=1000&cursor={cursor}",
                    server.base
                ))
                .bearer_auth(&server.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            seen += v["data"].as_array().unwrap().len();
            cursor = v["next_cursor"].as_str().unwrap().to_string();
            if v["has_more"] != true {
                break;
            }
        }
    }
    for _ in 0..requests {
        let t = Instant::now();
        let r = client
            .get(format!(
                "{}/v1/orgs/org_cdc/cdc?{filter}&limit=100&cursor={cursor}",
                server.base
            ))
            .bearer_auth(&server.key)
            .send()
            .await
            .unwrap();
        let body = r.bytes().await.unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(body.len() > 1000);
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    (p50, p99)
}

/// Batches built from the embedded catalog's specimens (valid payloads), unique event ids.
fn specimen_batches(events: usize) -> Vec<String> {
    let catalog = ipm::catalog::Catalog::embedded().unwrap();
    let mut templates = Vec::new();
    for t in catalog.event_types() {
        for mut s in catalog.specimens(&t.event_type) {
            let o = s.as_object_mut().unwrap();
            for k in ["id", "sequence", "ingested_at", "service"] {
                o.remove(k);
            }
            o.insert("org_id".into(), json!("org_val"));
            templates.push(s);
        }
    }
    (0..events / BATCH)
        .map(|b| {
            let batch: Vec<serde_json::Value> = (0..BATCH)
                .map(|i| {
                    let mut e = templates[(b * BATCH + i) % templates.len()].clone();
                    e["event_id"] = json!(format!("val-{}", b * BATCH + i));
                    e
                })
                .collect();
            serde_json::Value::Array(batch).to_string()
        })
        .collect()
}

async fn validation_ratio(events: usize) {
    let bodies = Arc::new(specimen_batches(events));
    let mut on = Vec::new();
    let mut off = Vec::new();
    // Alternate the two modes to spread machine noise over both.
    for _ in 0..2 {
        for mode in [
            ipm::config::ValidationMode::Reject,
            ipm::config::ValidationMode::Off,
        ] {
            let s = start_with(tempfile::tempdir().unwrap(), mode).await;
            let rate = batched_http(&s, bodies.clone(), 4).await;
            s.shutdown().await;
            if mode == ipm::config::ValidationMode::Off {
                off.push(rate)
            } else {
                on.push(rate)
            }
        }
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "batched ingest of catalog specimens, validation on:  {:.0} events/s (runs {on:.0?})",
        best(&on)
    );
    println!(
        "batched ingest of catalog specimens, validation off: {:.0} events/s (runs {off:.0?})",
        best(&off)
    );
    println!("ratio on/off: {:.0}%", 100.0 * best(&on) / best(&off));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // `cargo nextest --all-targets` lists targets: this benchmark has no tests to list.
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs benches without `--bench`: nothing to do then.
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--validation") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            ipm::app::init_crypto();
            validation_ratio(if quick { 50_000 } else { 200_000 }).await
        });
        return;
    }
    let events = if quick { 50_000 } else { 200_000 };
    let cdc_events = if quick { 500_000 } else { 5_000_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        ipm::app::init_crypto();
        // 1. Batched ingest vs raw baseline.
        let raw_dir = tempfile::tempdir().unwrap();
        let s = start(tempfile::tempdir().unwrap()).await;
        // Create the schema in the raw store by opening (and closing) a store on it.
        {
            let st = ipm::store::sqlite::SqliteStore::open(&raw_dir.path().join("raw.sqlite3")).await.unwrap();
            ipm::store::Meta::close(&st).await.unwrap();
        }
        let rows: Vec<(String, String)> = (0..events)
            .map(|i| (format!("raw-{i}"), envelope(i, "org_raw").to_string()))
            .collect();
        let raw_path = raw_dir.path().join("raw.sqlite3");
        let raw = tokio::task::spawn_blocking(move || raw_baseline(&rows, &raw_path)).await.unwrap();
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..events / BATCH)
                .map(|b| serde_json::Value::Array((0..BATCH).map(|i| envelope(b * BATCH + i, "org_batch")).collect()).to_string())
                .collect(),
        );
        let batched = batched_http(&s, bodies, 4).await;
        println!("batched ingest (1000/request, ~1 KB payloads, 4 clients): {batched:.0} events/s");
        println!("raw rusqlite baseline (1000-row transactions):            {raw:.0} events/s");
        println!("ratio: {:.0}% of raw", 100.0 * batched / raw);
        // 2. Single-event ingest, 32 concurrent clients.
        let clients: usize = std::env::var("IPM_BENCH_SINGLE_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
        let single = single_http(&s, clients, Duration::from_secs(if quick { 3 } else { 10 })).await;
        println!("single-event ingest, {clients} concurrent clients: {single:.0} events/s");
        s.shutdown().await;

        // 3. CDC pages on a large store.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipm.sqlite3");
        {
            let st = ipm::store::sqlite::SqliteStore::open(&path).await.unwrap();
            ipm::store::Meta::close(&st).await.unwrap();
        }
        let t = Instant::now();
        let p = path.clone();
        tokio::task::spawn_blocking(move || fill_cdc_store(&p, cdc_events)).await.unwrap();
        println!("(filled {cdc_events} events in {:.0} s)", t.elapsed().as_secs_f64());
        let s = start(dir).await;
        let n = if quick { 500 } else { 2000 };
        let (s50, s99) = cdc_latency(&s, false, cdc_events, n).await;
        let (e50, e99) = cdc_latency(&s, true, cdc_events, n).await;
        println!("CDC page of 100, filters service+facility_id, store of {cdc_events} events, {n} requests each:");
        println!("  near the start: p50 {s50:.2} ms, p99 {s99:.2} ms");
        println!("  near the end:   p50 {e50:.2} ms, p99 {e99:.2} ms (end/start p99 ratio {:.2})", e99 / s99);
        s.shutdown().await;
    });
}
