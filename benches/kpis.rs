//! KPI benchmarks (issue 6). Run: `cargo bench --bench kpis` (add `-- --quick` for a smaller
//! run). Prints snapshot ingest with 20 active rules beside a raw rusqlite baseline inserting
//! the same rows, and the latency of a day-granularity bucket query over a year of 5-minute
//! snapshots for one facility.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipm::App;
use ipm::config::Config;
use rusqlite::params;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BATCH: usize = 1000;
const KPIS: usize = 20;
const FACILITIES: usize = 50;
/// 2026-01-01T00:00:00Z in Unix ms.
const T0: i64 = 1_767_225_600_000;

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Snapshot `i` of the ingest run: every KPI at every facility, one round per 5 minutes.
fn snapshot(i: usize) -> (String, String, i64, f64) {
    let round = i / (KPIS * FACILITIES);
    let k = i % KPIS;
    let f = (i / KPIS) % FACILITIES;
    let value = ((i * 7919) % 1000) as f64 / 10.0;
    (
        format!("bench.kpi_{k}"),
        format!("fac_{f}"),
        T0 + round as i64 * 300_000,
        value,
    )
}

struct Server {
    base: String,
    key: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.catalog.unknown_types = ipm::config::UnknownTypes::Accept;
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
        client: reqwest::Client::new(),
        _dir: dir,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn post(&self, path: &str, body: &Value, actor: bool) -> Value {
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("x-request-id", "bench");
        if actor {
            r = r.header("x-actor-id", "bench");
        }
        let r = r.json(body).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

fn batch_body(from: usize, n: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| {
                let (kpi, fac, ms, value) = snapshot(i);
                json!({"kpi": kpi, "value": value, "observed_at": at(ms), "facility_id": fac})
            })
            .collect(),
    )
}

async fn ingest_with_rules(total: usize) -> (f64, usize) {
    let s = Arc::new(start().await);
    // 20 active rules: one per KPI; every other one per facility ("each"), the rest org-wide.
    for k in 0..KPIS {
        let facility = if k % 2 == 0 {
            json!("each")
        } else {
            Value::Null
        };
        s.post(
            "/v1/orgs/org_bench/alert-rules",
            &json!({"kpi": format!("bench.kpi_{k}"), "facility_id": facility, "granularity": "hour",
                    "aggregate": "avg", "op": "gt", "threshold": 60, "clear_threshold": 40,
                    "for_buckets": 2, "severity": "warning", "deliver_to_inbox": true}),
            true,
        )
        .await;
    }
    let bodies: Arc<Vec<Value>> = Arc::new(
        (0..total / BATCH)
            .map(|b| batch_body(b * BATCH, BATCH))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let transitions = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, bodies, next, transitions) =
            (s.clone(), bodies.clone(), next.clone(), transitions.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return;
                }
                let r = s
                    .post("/v1/orgs/org_bench/kpis/snapshots", &bodies[i], false)
                    .await;
                transitions.fetch_add(
                    r["alert_transitions"].as_u64().unwrap_or(0) as usize,
                    Ordering::Relaxed,
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    if let Ok(s) = Arc::try_unwrap(s) {
        s.shutdown().await;
    }
    (rate, transitions.load(Ordering::Relaxed))
}

/// The same rows inserted with plain rusqlite (WAL, synchronous NORMAL, 1000 per transaction).
fn raw_baseline(total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let c = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE s (org_id TEXT, kpi TEXT, facility_id TEXT, observed_at INTEGER, value REAL, unit TEXT);",
    )
    .unwrap();
    let rows: Vec<_> = (0..total).map(snapshot).collect();
    let start = Instant::now();
    for chunk in rows.chunks(BATCH) {
        c.execute_batch("BEGIN").unwrap();
        {
            let mut st = c
                .prepare_cached("INSERT INTO s VALUES (?1, ?2, ?3, ?4, ?5, NULL)")
                .unwrap();
            for (kpi, fac, ms, v) in chunk {
                st.execute(params!["org_bench", kpi, fac, ms * 1_000_000, v])
                    .unwrap();
            }
        }
        c.execute_batch("COMMIT").unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn year_query(queries: usize) -> (Duration, Duration, usize) {
    let s = start().await;
    let per_year: usize = 365 * 288;
    for b in 0..per_year.div_ceil(BATCH) {
        let body = Value::Array(
            (b * BATCH..((b + 1) * BATCH).min(per_year))
                .map(|i| {
                    json!({"kpi": "bench.year", "value": (i % 100) as f64, "facility_id": "fac_1",
                           "observed_at": at(T0 + i as i64 * 300_000)})
                })
                .collect(),
        );
        s.post("/v1/orgs/org_bench/kpis/snapshots", &body, false)
            .await;
    }
    let url = format!(
        "{}/v1/orgs/org_bench/kpis/bench.year/buckets?granularity=day&facility_id=fac_1&from={}&to={}",
        s.base,
        at(T0),
        at(T0 + 365 * 86_400_000)
    );
    let mut lat = Vec::with_capacity(queries);
    let mut buckets = 0;
    for _ in 0..queries {
        let t = Instant::now();
        let r = s.client.get(&url).bearer_auth(&s.key).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        lat.push(t.elapsed());
        buckets = v["data"].as_array().map(Vec::len).unwrap_or(0);
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let out = (p(0.5), p(0.99), buckets);
    s.shutdown().await;
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") || !args.iter().any(|a| a == "--bench") {
        // `cargo test` / `cargo nextest --all-targets` run or list benches: nothing to do then.
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let total = if quick { 50_000 } else { 200_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        ipm::app::init_crypto();
        let (rate, transitions) = ingest_with_rules(total).await;
        let raw = raw_baseline(total);
        println!(
            "snapshot ingest, 20 active rules, HTTP batches of {BATCH}: {rate:.0} snapshots/s ({transitions} alert transitions); raw rusqlite insert of the same rows: {raw:.0} rows/s"
        );
        let (p50, p99, n) = year_query(if quick { 200 } else { 1000 }).await;
        println!(
            "day buckets over a year of 5-minute snapshots (1 facility, {n} buckets): p50 {:.2} ms, p99 {:.2} ms",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    });
}
