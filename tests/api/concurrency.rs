//! A CDC consumer following cursors while 4 publishers ingest 20,000 events sees each accepted
//! event exactly once, in strictly increasing `sequence` order, with no gap.
use crate::helpers::{TestApp, event};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PUBLISHERS: usize = 4;
const PER_PUBLISHER: usize = 5_000;
/// Batch sizes cycle through these (sum per cycle = 1000, so 5 cycles per publisher).
const SIZES: &[usize] = &[1, 9, 90, 400, 3, 497];

async fn publisher(app: Arc<TestApp>, p: usize) -> Vec<String> {
    let mut accepted = Vec::new();
    let mut sent = 0;
    let mut round = 0;
    while sent < PER_PUBLISHER {
        let n = SIZES[round % SIZES.len()].min(PER_PUBLISHER - sent);
        let batch: Vec<Value> = (sent..sent + n)
            .map(|i| event("org_c", &format!("p{p}-{i}"), "orders.order.created"))
            .collect();
        let report = app.publish(&Value::Array(batch.clone())).await;
        for r in report["results"].as_array().unwrap() {
            assert_eq!(r["status"], "accepted", "{r}");
            accepted.push(r["id"].as_str().unwrap().to_string());
        }
        // Now and then re-send a batch: all duplicates, nothing new for the consumer.
        if round % 4 == 3 {
            let again = app.publish(&Value::Array(batch)).await;
            assert_eq!(again["accepted"], 0);
            assert_eq!(again["duplicates"], n);
        }
        sent += n;
        round += 1;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_sees_every_accepted_event_once_in_order() {
    let app = Arc::new(TestApp::spawn().await);
    let total = PUBLISHERS * PER_PUBLISHER;
    let consumer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(i64, String)> = Vec::with_capacity(total);
            let mut cursor: Option<String> = None;
            // A generous bound so a bug fails the test instead of hanging it.
            let deadline = Instant::now() + Duration::from_secs(300);
            while seen.len() < total {
                assert!(
                    Instant::now() < deadline,
                    "consumer saw only {} of {total}",
                    seen.len()
                );
                let q = match &cursor {
                    Some(c) => format!("limit=500&wait=1&cursor={c}"),
                    None => "limit=500&wait=1".into(),
                };
                let r = app.cdc("org_c", &q).await;
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                for e in v["data"].as_array().unwrap() {
                    seen.push((
                        e["sequence"].as_i64().unwrap(),
                        e["id"].as_str().unwrap().to_string(),
                    ));
                }
                cursor = Some(v["next_cursor"].as_str().unwrap().to_string());
            }
            // One more poll: nothing beyond the accepted set appears.
            let v: Value = app
                .cdc("org_c", &format!("limit=500&cursor={}", cursor.unwrap()))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(
                v["data"].as_array().unwrap().len(),
                0,
                "events beyond the accepted set"
            );
            seen
        })
    };
    let pubs: Vec<_> = (0..PUBLISHERS)
        .map(|p| tokio::spawn(publisher(app.clone(), p)))
        .collect();
    let mut accepted = HashSet::new();
    for p in pubs {
        for id in p.await.unwrap() {
            assert!(accepted.insert(id), "an id was accepted twice");
        }
    }
    assert_eq!(accepted.len(), total);
    let seen = consumer.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence must strictly increase along the feed"
    );
    let seen_ids: HashSet<String> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(seen_ids.len(), seen.len(), "an event was delivered twice");
    assert_eq!(seen_ids, accepted, "the feed and the accepted set differ");
}
