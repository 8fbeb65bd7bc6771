//! Several nodes on one PostgreSQL database (issue 3; run by the PostgreSQL pass of
//! `scripts/test.sh`): gap-free CDC under concurrent writers on two nodes, delivery failover
//! after `kill -9` of one of three nodes, and an export started on one node downloaded from
//! another.
use crate::helpers::{Served, TestApp, event, on_postgres, publish_ids, serve};
use crate::receiver::{Receiver, Reply};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One key sealing webhook secrets on every node (nodes must share it; see README).
const SEAL_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn require_postgres() -> String {
    assert!(
        on_postgres(),
        "multi-node tests need TEST_IPM_BACKEND=postgres (scripts/test.sh runs them)"
    );
    crate::helpers::fresh_database()
}

/// `n` in-process nodes on the database `url`; the first mints the admin key.
async fn nodes(url: &str, n: usize) -> Vec<TestApp> {
    let mut out: Vec<TestApp> = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ipm::config::Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            database_url: Some(url.to_string()),
            ..ipm::config::Config::default()
        };
        config.catalog.unknown_types = ipm::config::UnknownTypes::Accept;
        config.webhooks.encryption_key = Some(SEAL_KEY.into());
        config.webhooks.allow_private_targets = vec!["127.0.0.0/8".into()];
        let admin = out.first().map(|a| a.admin_key.clone());
        out.push(TestApp::start_node(config, dir, admin).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_publishers_on_two_nodes_and_a_reader_on_a_third_see_every_event_once() {
    let url = require_postgres();
    let nodes = Arc::new(nodes(&url, 3).await);
    const PUBLISHERS: usize = 8;
    const PER: usize = 6_250; // 8 × 6,250 = 50,000
    const BATCH: usize = 25; // small batches: many concurrent transactions
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let node = &nodes[p % 2];
            for b in 0..PER / BATCH {
                let batch: Vec<Value> = (0..BATCH)
                    .map(|i| {
                        event(
                            "org_gap",
                            &format!("p{p}-{}", b * BATCH + i),
                            "orders.order.created",
                        )
                    })
                    .collect();
                let v = node.publish(&Value::Array(batch)).await;
                assert_eq!(v["accepted"], BATCH, "{v}");
            }
        }));
    }
    // The reader polls node 3 as fast as it can while the publishers run.
    let reader = &nodes[2];
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut last_seq = 0i64;
    let mut cursor: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    while seen.len() < PUBLISHERS * PER {
        assert!(
            Instant::now() < deadline,
            "reader saw {} of {} events",
            seen.len(),
            PUBLISHERS * PER
        );
        let q = match &cursor {
            Some(c) => format!("limit=1000&cursor={c}"),
            None => "limit=1000".into(),
        };
        let r = reader.cdc("org_gap", &q).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        for e in v["data"].as_array().unwrap() {
            let seq = e["sequence"].as_i64().unwrap();
            assert!(seq > last_seq, "sequence went from {last_seq} to {seq}");
            last_seq = seq;
            *seen
                .entry(e["event_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        cursor = v["next_cursor"].as_str().map(str::to_string);
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(seen.len(), PUBLISHERS * PER);
    assert!(seen.values().all(|n| *n == 1), "an event was seen twice");
    // Nothing after the last page either.
    let r = reader
        .cdc("org_gap", &format!("limit=10&cursor={}", cursor.unwrap()))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
}

/// A real `ipm serve` process on the shared database, and its node id (what its leases carry).
async fn start_node(url: &str) -> (Served, String) {
    let dir = tempfile::tempdir().unwrap().keep();
    let served = serve(
        &dir,
        &[
            ("IPM_DATABASE_URL", url),
            ("IPM_WEBHOOKS__ENCRYPTION_KEY", SEAL_KEY),
            ("IPM_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "[\"127.0.0.0/8\"]"),
            ("IPM_WEBHOOKS__RETRY_SCHEDULE_SECS", "[1, 1, 1, 1, 1, 1]"),
            // A short attempt timeout keeps the lease (5 × timeout + 30 s) of the killed node short.
            ("IPM_WEBHOOKS__ATTEMPT_TIMEOUT_SECS", "2"),
        ],
        None,
    )
    .await;
    let id = std::fs::read_to_string(dir.join("node-id")).unwrap();
    (served, id.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_after_kill_9_of_one_of_three_nodes_delivers_every_pair_without_overlap() {
    let url = require_postgres();
    let (first, _) = start_node(&url).await;
    let key = first.minted.clone().unwrap();
    let (mut victim, victim_node) = start_node(&url).await;
    let (third, _) = start_node(&url).await;
    let client = reqwest::Client::new();
    let rxs = [
        Receiver::start(Reply::Ok).await,
        Receiver::start(Reply::Ok).await,
        Receiver::start(Reply::Ok).await,
    ];
    for rx in &rxs {
        // Slow enough that two nodes attempting one delivery at once would be seen.
        rx.set_delay(Duration::from_millis(20));
        let r = client
            .post(format!("{}/v1/orgs/org_f/webhooks", first.base))
            .bearer_auth(&key)
            .header("x-request-id", "f")
            .header("x-actor-id", "t")
            .json(&json!({"url": rx.url(), "delivery": {"max_in_flight": 16}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // The storm: 10 batches of 500 through the two nodes that survive, while the victim delivers.
    let publisher = {
        let (client, key) = (client.clone(), key.clone());
        let bases = [first.base.clone(), third.base.clone()];
        tokio::spawn(async move {
            let mut accepted: HashSet<String> = HashSet::new();
            for b in 0..10 {
                let batch: Vec<Value> = (0..500)
                    .map(|i| event("org_f", &format!("f{b}-{i}"), "orders.order.created"))
                    .collect();
                accepted
                    .extend(publish_ids(&client, &bases[b % 2], &key, &Value::Array(batch)).await);
            }
            accepted
        })
    };
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Leases the victim holds: claimed, not yet recorded (a record clears `claimed_by`).
    let held_sql = "SELECT id FROM deliveries WHERE claimed_by = $1 AND lease_until IS NOT NULL
                      AND status IN ('pending', 'failed')";
    // Mid-storm: SIGKILL the victim once deliveries flow and it has attempts in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = rxs.iter().map(Receiver::count).sum::<usize>();
        let held = db.query(held_sql, &[&victim_node]).await.unwrap().len();
        if delivered > 0 && held > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the victim never held a lease during the storm"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    victim.child.kill().await.unwrap();
    let held: Vec<String> = db
        .query(held_sql, &[&victim_node])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!held.is_empty(), "the victim held no lease when killed");
    let accepted = publisher.await.unwrap();
    assert_eq!(accepted.len(), 5_000);
    // The victim's leases expire (5 × attempt timeout + 30 s); the survivors take them over.
    let deadline = Instant::now() + Duration::from_secs(150);
    for (i, rx) in rxs.iter().enumerate() {
        rx.wait_for_ids(&accepted, deadline, &format!("webhook {i}"))
            .await;
    }
    // Every delivery the victim held is claimed again (its token moves past the victim's) and
    // succeeds, even one whose request the victim had sent before it died (its result was lost
    // with it: at least once means it is sent again, with the same `webhook-id`).
    loop {
        let taken_over: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM deliveries WHERE id = ANY($1) AND lease_token >= 2
                   AND status = 'succeeded'",
                &[&held],
            )
            .await
            .unwrap()
            .get(0);
        if taken_over == held.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{taken_over} of the {} leases of the killed node were taken over",
            held.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, rx) in rxs.iter().enumerate() {
        assert_eq!(
            rx.overlaps(),
            0,
            "webhook {i}: a delivery was attempted by two nodes at once"
        );
    }
    for mut n in [first, third] {
        n.child.kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_started_on_one_node_downloads_from_another() {
    let url = require_postgres();
    let nodes = nodes(&url, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    for part in 0..5 {
        let batch: Vec<Value> = (part * 500..(part + 1) * 500)
            .map(|i| event("org_x", &format!("x{i}"), "orders.order.created"))
            .collect();
        a.publish(&Value::Array(batch)).await;
    }
    let r = a
        .req(Method::POST, "/v1/orgs/org_x/exports", &a.admin_key)
        .json(&json!({"filters": {}, "max_events_per_file": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let job: Value = r.json().await.unwrap();
    let path = format!("/v1/orgs/org_x/exports/{}", job["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let r = b
            .req(Method::GET, &path, &b.admin_key)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the export did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let files = job["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let mut lines = Vec::new();
    for f in files {
        let r = b
            .req(Method::GET, f["url"].as_str().unwrap(), &b.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        assert_eq!(f["bytes"].as_u64().unwrap(), body.len() as u64);
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            crate::job_helpers::sha256_hex(&body)
        );
        lines.extend(
            String::from_utf8(body.to_vec())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    let feed = b.cdc_all("org_x", "").await;
    assert_eq!(lines.len(), 2_500);
    assert_eq!(lines, feed, "the export differs from the CDC feed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_evaluation_stays_consistent_with_writers_on_two_nodes() {
    use crate::kpis::{at, get_as, snaps};
    let url = require_postgres();
    let nodes = Arc::new(nodes(&url, 2).await);
    let (a, b) = (&nodes[0], &nodes[1]);
    let r = a
        .req(Method::POST, "/v1/orgs/org_k/alert-rules", &a.admin_key)
        .json(
            &json!({"kpi": "orders.fill_rate", "granularity": "hour", "aggregate": "avg",
                      "op": "lt", "threshold": 0.9, "severity": "warning",
                      "deliver_to_inbox": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Both nodes write into the same hour at once: node A low values, node B high ones, so the
    // average crosses the threshold back and forth while evaluations race.
    let t0 = crate::kpis::T0;
    let mut tasks = Vec::new();
    for (n, value) in [(0usize, 0.5f64), (1, 1.0)] {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let node = &nodes[n];
            for i in 0..40 {
                let body: Vec<Value> = (0..5)
                    .map(|k| {
                        json!({"kpi": "orders.fill_rate", "value": value,
                               "observed_at": at(t0 + (i * 5 + k) * 1_000 + n as i64)})
                    })
                    .collect();
                snaps(node, &node.admin_key, "org_k", &Value::Array(body)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 200 × 0.5 and 200 × 1.0: the hour's average is 0.75, below the threshold.
    let (_, buckets) = get_as(
        b,
        &b.admin_key,
        &format!(
            "/v1/orgs/org_k/kpis/orders.fill_rate/buckets?granularity=hour&from={}&to={}",
            at(t0),
            at(t0 + 3_600_000)
        ),
    )
    .await;
    assert_eq!(buckets["data"][0]["count"], 400, "{buckets}");
    let (_, alerts) = get_as(b, &b.admin_key, "/v1/orgs/org_k/alerts?limit=1000").await;
    let alerts = alerts["data"].as_array().unwrap().clone();
    assert!(!alerts.is_empty());
    // One series, so at most one open instance at any time: every alert but the newest is
    // resolved, and the newest is firing (the final average breaches).
    let (last, older) = alerts.split_last().unwrap();
    assert_eq!(last["state"], "firing", "{last}");
    for o in older {
        assert_eq!(
            o["state"], "resolved",
            "two open instances of one series: {o}"
        );
    }
    // Every history is a valid walk, and the events in the stream match the transitions.
    let (mut fired, mut resolved) = (0, 0);
    for al in &alerts {
        let states: Vec<&str> = al["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["state"].as_str().unwrap())
            .collect();
        let ok = matches!(
            states.as_slice(),
            ["firing"]
                | ["firing", "resolved"]
                | ["pending", "firing"]
                | ["pending", "firing", "resolved"]
                | ["pending", "resolved"]
        );
        assert!(ok, "history {states:?}");
        if !al["fired_at"].is_null() {
            fired += 1;
            if al["state"] == "resolved" {
                resolved += 1;
            }
        }
    }
    let feed = a.cdc_all("org_k", "event_type=ipm.kpi.*").await;
    let count = |t: &str| feed.iter().filter(|e| e["event_type"] == t).count();
    assert_eq!(count("ipm.kpi.alert_fired"), fired);
    assert_eq!(count("ipm.kpi.alert_resolved"), resolved);
}
