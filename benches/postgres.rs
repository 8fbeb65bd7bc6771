//! PostgreSQL benchmarks (issue 3). Run: `cargo bench --bench postgres` (add `-- --quick` for
//! smaller sizes). Needs a PostgreSQL server: `IPM_BENCH_PG_URL` (default:
//! `postgres://ipm:ipm@127.0.0.1:5432/postgres`, a server with default settings); each part runs
//! on a fresh database.
//!
//! 1. Batched ingest over HTTP on one node (4 clients, 1,000 events of ~1 KB per request) vs a
//!    raw baseline in the same run: `COPY` of the same rows (same table, same indexes, one
//!    transaction per 1,000 rows) on one connection, no HTTP, no validation.
//! 2. Durable webhook deliveries/s with one node and with two nodes on the same database
//!    (1,000 events × 10 webhooks, default `max_in_flight` 8, loopback receiver answering 204).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use futures_util::SinkExt;
use ipm::App;
use ipm::config::Config;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common {
    pub mod pg;
}
use common::pg::{admin_url, fresh_db};

const SEAL_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn event(i: usize) -> Value {
    json!({
        "event_id": format!("e-{i}"),
        "event_type": "orders.order.created",
        "org_id": "org_bench",
        "occurred_at": "2026-11-26T10:15:00.123Z",
        "channel_id": "web",
        "facility_id": format!("fac_{}", i % 17),
        "payload": {"order_id": format!("o_{i}"), "sku": format!("sku-{}", i % 977), "qty": i % 9 + 1,
                    "amount": {"value": (i % 10_000) as f64 / 100.0, "currency": "EUR"},
                    "customer": {"id": format!("c_{}", i % 50_000), "tier": "gold"},
                    "note": "a realistic amount of padding text in an order event payload, about this long, and some more of it to reach about one kilobyte of envelope in total, which is what the SQLite benchmarks use as well; padding padding padding padding padding padding padding padding padding padding padding padding padding padding"},
        "request_context": {"request_id": format!("req-{i}"), "actor_id": "svc-orders"}
    })
}

struct Node {
    base: String,
    key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn node(url: &str, key: Option<String>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(url.into()),
        ..Config::default()
    };
    config.catalog.unknown_types = ipm::config::UnknownTypes::Accept;
    config.catalog.validation = ipm::config::ValidationMode::Off;
    config.webhooks.allow_private_targets = vec!["127.0.0.0/8".into()];
    config.webhooks.encryption_key = Some(SEAL_KEY.into());
    let app = App::build(config).await.unwrap();
    let key = app.minted_admin_key.clone().or(key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ipm::run(app, listener, async move {
        let _ = rx.await;
    }));
    Node {
        base,
        key,
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

impl Node {
    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// The raw baseline: the rows the server would store, COPYed in 1,000-row transactions.
async fn raw_copy(total: usize) -> f64 {
    let url = fresh_db().await;
    // The same schema (tables and indexes) as the server's.
    let store = ipm::store::postgres::PgStore::open(&url).await.unwrap();
    ipm::store::Meta::close(&store).await.unwrap();
    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let lines: Vec<String> = (0..total)
        .map(|i| {
            let body = event(i).to_string();
            format!(
                "{i}\tevt_{}\torg_bench\te-{i}\t1764152100123000000\torders.order.created\torders\tweb\tfac_{}\t{:064x}\t1764152100123\t{}\t{{}}\n",
                ulid::Ulid::generate(),
                i % 17,
                i,
                esc(&body)
            )
        })
        .collect();
    let start = Instant::now();
    for chunk in lines.chunks(1000) {
        let tx = client.transaction().await.unwrap();
        let sink = tx
            .copy_in(
                "COPY events (seq, id, org_id, event_id, occurred_at, event_type, service, channel_id,
                   facility_id, payload_hash, ingested_at, body, context) FROM STDIN",
            )
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        let data: String = chunk.concat();
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        sink.as_mut().finish().await.unwrap();
        tx.commit().await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn ingest(total: usize, clients: usize) -> f64 {
    let url = fresh_db().await;
    let n = node(&url, None).await;
    let http = reqwest::Client::new();
    let batches: Vec<String> = (0..total / 1000)
        .map(|b| Value::Array((0..1000).map(|i| event(b * 1000 + i)).collect()).to_string())
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, batches, next) = (http.clone(), batches.clone(), next.clone());
        let (base, key) = (n.base.clone(), n.key.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(b) = batches.get(i) else { break };
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .header("x-request-id", "bench")
                    .header("content-type", "application/json")
                    .body(b.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    n.shutdown().await;
    rate
}

async fn receive(
    axum::extract::State((c, delay)): axum::extract::State<(Arc<AtomicU64>, Duration)>,
) -> StatusCode {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    c.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

/// Durable deliveries/s with `nodes` nodes; the receiver answers after `delay`.
async fn deliveries(nodes: usize, events: usize, hooks: usize, delay: Duration) -> f64 {
    let url = fresh_db().await;
    let count = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state((count.clone(), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut ns = vec![node(&url, None).await];
    for _ in 1..nodes {
        let key = ns[0].key.clone();
        ns.push(node(&url, Some(key)).await);
    }
    let http = reqwest::Client::new();
    for _ in 0..hooks {
        let r = http
            .post(format!("{}/v1/orgs/org_bench/webhooks", ns[0].base))
            .bearer_auth(&ns[0].key)
            .header("x-request-id", "bench")
            .header("x-actor-id", "bench")
            .json(&json!({"url": target}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let want = (events * hooks) as u64;
    let start = Instant::now();
    for b in 0..events / 500 {
        let batch = Value::Array((0..500).map(|i| event(b * 500 + i)).collect());
        let n = &ns[b % ns.len()];
        let r = http
            .post(format!("{}/v1/events", n.base))
            .bearer_auth(&n.key)
            .header("x-request-id", "bench")
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    for n in ns {
        n.shutdown().await;
    }
    rate
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") || !args.iter().any(|a| a == "--bench") {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        ipm::app::init_crypto();
        let total = if quick { 50_000 } else { 200_000 };
        println!(
            "PostgreSQL benchmarks; {} cores; server {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            admin_url()
        );
        let raw = raw_copy(total).await;
        let served = ingest(total, 4).await;
        println!(
            "batched ingest, 1 node, 4 clients x 1000/request: {served:.0} ev/s; raw COPY of the same rows (1000/transaction): {raw:.0} rows/s; ratio {:.2}",
            served / raw
        );
        let events = if quick { 500 } else { 1000 };
        // An instant receiver makes the run CPU-bound (both nodes, the database and the
        // receiver share the machine); a receiver that takes 50 ms, like real endpoints, makes
        // it bound by each node's delivery slots, which is what more nodes add.
        for delay_ms in [0u64, 50] {
            let delay = Duration::from_millis(delay_ms);
            let one = deliveries(1, events, 10, delay).await;
            let two = deliveries(2, events, 10, delay).await;
            println!(
                "durable deliveries, {events} events x 10 webhooks, receiver answers after {delay_ms} ms: 1 node {one:.0}/s, 2 nodes {two:.0}/s; ratio {:.2}",
                two / one
            );
        }
    });
}
