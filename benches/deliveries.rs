//! Webhook delivery benchmarks (issue 7, "Performance"). Run:
//! `cargo bench --bench deliveries` (or build with `--no-run` and run
//! `target/release/deps/deliveries-* --bench`). Every figure is printed beside a raw baseline
//! measured in the same run: signed POSTs through the delivery worker's own client
//! (`service::dispatch::Dispatcher`, Standard Webhooks signing) at the same concurrency, with
//! no persistence.
//!
//! The receiver is an axum server on 127.0.0.1 in the same process answering `204` at once; it
//! records the arrival time of each `webhook-id` for the latency run.
//!
//! Per-webhook `max_in_flight`: the runs use the default (8) and `IPM_BENCH_MAX_IN_FLIGHT`
//! (default 32); both are printed.
//!
//! `--postgres`: the server runs on PostgreSQL instead of SQLite (a fresh database per part on
//! `IPM_BENCH_PG_URL`, default `postgres://ipm:ipm@127.0.0.1:5432/postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common {
    pub mod pg;
}

use axum::http::{HeaderMap, StatusCode};
use ipm::App;
use ipm::config::Config;
use ipm::domain::ssrf::AllowList;
use ipm::service::dispatch::{Dispatcher, Outgoing, SystemLookup};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether the server under test runs on PostgreSQL (`--postgres`).
static ON_POSTGRES: AtomicBool = AtomicBool::new(false);

/// The default per-webhook in-flight limit (`webhooks.max_in_flight`).
const DEFAULT_IN_FLIGHT: u32 = 8;

// ---------------------------------------------------------------------------------------------
// Receiver

#[derive(Clone, Default)]
struct Arrivals {
    count: Arc<AtomicU64>,
    /// webhook-id → first arrival (only while `record` is on).
    first: Arc<Mutex<Option<HashMap<String, Instant>>>>,
}

async fn receive(
    axum::extract::State(a): axum::extract::State<Arrivals>,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    let now = Instant::now();
    a.count.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut g) = a.first.lock()
        && let Some(m) = g.as_mut()
        && let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok())
    {
        m.entry(id.to_string()).or_insert(now);
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (String, Arrivals) {
    let arrivals = Arrivals::default();
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .route("/", axum::routing::post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, arrivals)
}

// ---------------------------------------------------------------------------------------------
// Server under test

/// Reads the delivery table of the server under test, beside the server.
enum Reader {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

struct Server {
    base: String,
    key: String,
    /// The SQLite file, or the PostgreSQL database URL.
    db: String,
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
    config.catalog.validation = ipm::config::ValidationMode::Off;
    config.webhooks.allow_private_targets = vec!["127.0.0.0/8".into()];
    let db = if ON_POSTGRES.load(Ordering::Relaxed) {
        let url = common::pg::fresh_db().await;
        config.database_url = Some(url.clone());
        url
    } else {
        config
            .data_dir
            .join("ipm.sqlite3")
            .to_string_lossy()
            .into_owned()
    };
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
        db,
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

    async fn create_webhook(&self, client: &reqwest::Client, org: &str, url: &str, mif: u32) {
        let r = client
            .post(format!("{}/v1/orgs/{org}/webhooks", self.base))
            .bearer_auth(&self.key)
            .header("x-request-id", "bench")
            .header("x-actor-id", "bench")
            .json(&json!({"url": url, "delivery": {"mode": "concurrent", "max_in_flight": mif}}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 201, "{}", r.text().await.unwrap());
    }

    async fn publish(&self, client: &reqwest::Client, body: String) -> serde_json::Value {
        let r = client
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.key)
            .header("x-request-id", "bench")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// A reader of the server's store (read-only on SQLite).
    async fn reader(&self) -> Reader {
        if ON_POSTGRES.load(Ordering::Relaxed) {
            let (client, conn) = tokio_postgres::connect(&self.db, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            Reader::Postgres(client)
        } else {
            Reader::Sqlite(
                rusqlite::Connection::open_with_flags(
                    &self.db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .unwrap(),
            )
        }
    }
}

impl Reader {
    /// Deliveries in `succeeded` state, read straight from the store.
    async fn succeeded(&self) -> u64 {
        const SQL: &str = "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'";
        let n: i64 = match self {
            Reader::Sqlite(c) => c.query_row(SQL, [], |r| r.get(0)).unwrap(),
            Reader::Postgres(c) => c.query_one(SQL, &[]).await.unwrap().get(0),
        };
        n as u64
    }
}

fn event(org: &str, id: &str) -> serde_json::Value {
    // ~500 B: a realistic small business event.
    json!({
        "event_id": id,
        "event_type": "orders.order.created",
        "org_id": org,
        "occurred_at": "2026-11-26T10:15:00.123Z",
        "channel_id": "web",
        "facility_id": "fac_1",
        "payload": {
            "order_id": id, "customer": {"id": "c_42", "tier": "gold"},
            "lines": [{"sku": "SKU-000001", "qty": 2, "unit_price": 1999, "currency": "EUR"}],
            "totals": {"net": 3998, "tax": 760, "gross": 4758, "currency": "EUR"},
            "notes": "x".repeat(160)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// (a) raw baseline

/// Signed POSTs through the worker's client with `concurrency` loops, no persistence.
async fn raw_baseline(url: &str, concurrency: usize, n: usize) -> f64 {
    let d = Dispatcher::new(
        AllowList::parse(&["127.0.0.0/8".to_string()]).unwrap(),
        Duration::from_secs(15),
        Arc::new(SystemLookup),
    )
    .unwrap();
    let body = Arc::new(event("org_raw", "raw").to_string());
    let key = Arc::new([7u8; 32].to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (d, body, key, next, url) = (
            d.clone(),
            body.clone(),
            key.clone(),
            next.clone(),
            url.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return;
                }
                let id = format!("evt_raw{i:020}");
                let r = d
                    .send(Outgoing {
                        url: &url,
                        webhook_id: &id,
                        event_type: "orders.order.created",
                        attempt: 1,
                        secret_key: &key,
                        body: &body,
                    })
                    .await;
                assert!(r.success(), "{r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// (b), (c) durable throughput

/// `events` events × `hooks` webhooks; deliveries/s from the first ingest to the last
/// recorded success (polled in the store every 5 ms).
async fn durable(events: usize, hooks: usize, mif: u32) -> (f64, f64) {
    let (url, arrivals) = start_receiver().await;
    let s = start().await;
    let client = reqwest::Client::new();
    let org = "org_bench";
    for _ in 0..hooks {
        s.create_webhook(&client, org, &url, mif).await;
    }
    let batches: Vec<String> = (0..events.div_ceil(1000))
        .map(|b| {
            serde_json::Value::Array(
                (b * 1000..((b + 1) * 1000).min(events))
                    .map(|i| event(org, &format!("e{i}")))
                    .collect(),
            )
            .to_string()
        })
        .collect();
    let total = (events * hooks) as u64;
    let conn = s.reader().await;
    let start = Instant::now();
    for b in batches {
        let r = s.publish(&client, b).await;
        assert_eq!(r["rejected"], 0);
    }
    let ingested = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if conn.succeeded().await >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not finish: {} of {total} succeeded, {} requests arrived",
            conn.succeeded().await,
            arrivals.count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(conn);
    s.shutdown().await;
    (total as f64 / secs, ingested)
}

// ---------------------------------------------------------------------------------------------
// (d) latency at a steady rate

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Single-event POSTs at `rate`/s for `secs`; ms from each POST's send time to the first
/// arrival of its `webhook-id` at the receiver. Returns (p50, p99, p99.9, max, samples).
async fn latency(rate: u64, secs: u64, mif: u32) -> (f64, f64, f64, f64, usize) {
    let (url, arrivals) = start_receiver().await;
    *arrivals.first.lock().unwrap() = Some(HashMap::new());
    let s = start().await;
    let client = reqwest::Client::new();
    let org = "org_lat";
    s.create_webhook(&client, org, &url, mif).await;
    let s = Arc::new(s);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let n = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tick.tick().await;
        let (s, client, sent) = (s.clone(), client.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let body = event(org, &format!("l{i}")).to_string();
            let at = Instant::now();
            let r = s.publish(&client, body).await;
            let id = r["results"][0]["id"].as_str().unwrap().to_string();
            sent.lock().unwrap().insert(id, at);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.count.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = arrivals.first.lock().unwrap().take().unwrap_or_default();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| {
            first
                .get(id)
                .map(|a| a.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    assert_eq!(lat.len(), n as usize, "some events never arrived");
    let p50 = percentile(&mut lat, 0.50);
    let p99 = percentile(&mut lat, 0.99);
    let p999 = percentile(&mut lat, 0.999);
    let max = lat.last().copied().unwrap_or(0.0);
    match Arc::try_unwrap(s) {
        Ok(s) => s.shutdown().await,
        Err(_) => unreachable!("all publishers have finished"),
    }
    (p50, p99, p999, max, lat.len())
}

// ---------------------------------------------------------------------------------------------

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
    ON_POSTGRES.store(args.iter().any(|a| a == "--postgres"), Ordering::Relaxed);
    let mif: u32 = std::env::var("IPM_BENCH_MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        ipm::app::init_crypto();
        let events = if quick { 2_000 } else { 10_000 };
        let lat_secs = if quick { 3 } else { 10 };
        println!(
            "webhook deliveries on {}, loopback receiver answering 204; {} cores",
            if ON_POSTGRES.load(Ordering::Relaxed) {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut limits = vec![DEFAULT_IN_FLIGHT];
        if mif != DEFAULT_IN_FLIGHT {
            limits.push(mif);
        }
        for &m in &limits {
            let (url, _arr) = start_receiver().await;
            let raw1 = raw_baseline(&url, m as usize, 20_000).await;
            let raw10 = raw_baseline(&url, 10 * m as usize, 20_000).await;
            println!("-- max_in_flight {m} per webhook");
            println!("(a) raw baseline, signed POSTs, {m} concurrent:      {raw1:.0} req/s");
            println!(
                "    raw baseline, signed POSTs, {} concurrent:     {raw10:.0} req/s",
                10 * m
            );
            let (b, ing) = durable(events, 1, m).await;
            println!(
                "(b) {events} events x 1 webhook:   {b:.0} durable deliveries/s ({:.0}% of raw; ingest took {:.2} s)",
                100.0 * b / raw1,
                ing
            );
            let (c, ing) = durable(events / 10, 10, m).await;
            println!(
                "(c) {} events x 10 webhooks:  {c:.0} durable deliveries/s ({:.0}% of raw at {} concurrent; ingest took {:.2} s)",
                events / 10,
                100.0 * c / raw10,
                10 * m,
                ing
            );
            let (p50, p99, p999, max, n) = latency(1000, lat_secs, m).await;
            println!(
                "(d) ingest-to-first-attempt at 1000 events/s for {lat_secs} s ({n} events): p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms (raw request time at {m} concurrent: {:.3} ms)",
                1000.0 * m as f64 / raw1
            );
        }
    });
}
