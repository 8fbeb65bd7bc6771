//! Durability with the real binary: `kill -9` right after a `200` loses nothing accepted, and
//! SIGTERM lets in-flight requests finish before a clean exit.
use crate::helpers::event;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::process::Child;
use tokio::sync::Mutex;

/// A running `ipm serve` process.
struct Server {
    child: Child,
    base: String,
    /// The admin key printed on first start (None on restarts).
    minted: Option<String>,
    client: reqwest::Client,
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        let s = crate::helpers::serve(data_dir, &[], None).await;
        Server {
            child: s.child,
            base: s.base,
            minted: s.minted,
            client: reqwest::Client::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    async fn publish(&self, key: &str, batch: &Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(key)
            .header("x-request-id", "crash-test")
            .json(batch)
            .send()
            .await
    }

    async fn all_event_ids(&self, key: &str, org: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let url = format!("{}/v1/orgs/{org}/cdc?limit=1000{cursor}", self.base);
            let v: Value = self
                .client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.extend(
                v["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_string()),
            );
            cursor = format!("&cursor={}", v["next_cursor"].as_str().unwrap());
            if v["has_more"] != true {
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_right_after_a_200_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let key = server
        .minted
        .clone()
        .expect("first start prints an admin key");
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::new(Mutex::new(server));
    let base_client = {
        let s = server.lock().await;
        (s.base.clone(), s.client.clone())
    };
    // Three publishers keep requests in flight while the process dies.
    let mut tasks = Vec::new();
    for p in 0..3 {
        let (base, client) = base_client.clone();
        let (key, accepted, stop) = (key.clone(), accepted.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<Value> = (0..25)
                    .map(|j| event("org_k", &format!("p{p}-{i}-{j}"), "orders.order.created"))
                    .collect();
                i += 1;
                let r = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .header("x-request-id", "crash")
                    .json(&batch)
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status() != 200 {
                    break;
                }
                let Ok(v) = r.json::<Value>().await else {
                    break;
                };
                let mut acc = accepted.lock().await;
                for res in v["results"].as_array().unwrap() {
                    if res["status"] == "accepted" {
                        acc.insert(res["event_id"].as_str().unwrap().to_string());
                    }
                }
            }
        }));
    }
    // The main loop: publish until enough is in, then SIGKILL right after a 200.
    {
        let s = server.lock().await;
        let mut n = 0;
        loop {
            let batch: Vec<Value> = (0..10)
                .map(|j| event("org_k", &format!("m-{n}-{j}"), "orders.order.created"))
                .collect();
            n += 1;
            let r = s.publish(&key, &Value::Array(batch)).await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            let mut acc = accepted.lock().await;
            for res in v["results"].as_array().unwrap() {
                acc.insert(res["event_id"].as_str().unwrap().to_string());
            }
            if acc.len() >= 3_000 {
                break;
            }
        }
    }
    let mut s = Arc::try_unwrap(server).ok().unwrap().into_inner();
    s.child.kill().await.unwrap(); // SIGKILL
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.lock().await.clone();

    let restarted = Server::start(dir.path()).await;
    assert!(
        restarted.minted.is_none(),
        "a restart must not mint another admin key"
    );
    let stored = restarted.all_event_ids(&key, "org_k").await;
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(
        stored_set.len(),
        stored.len(),
        "an event appears twice in the feed"
    );
    let lost: Vec<&String> = accepted.difference(&stored_set).take(10).collect();
    assert!(
        lost.is_empty(),
        "{} accepted events lost, e.g. {lost:?}",
        accepted.difference(&stored_set).count()
    );
    // The restarted server keeps working.
    let r = restarted
        .publish(
            &key,
            &Value::Array(vec![event("org_k", "after", "orders.order.created")]),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let key = server.minted.clone().unwrap();
    let r = server
        .publish(
            &key,
            &Value::Array(vec![event("org_t", "before", "orders.order.created")]),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = server
        .client
        .get(format!("{}/v1/orgs/org_t/cdc", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    // A long-poll that is in flight when SIGTERM arrives.
    let in_flight = {
        let (client, base, key) = (server.client.clone(), server.base.clone(), key.clone());
        tokio::spawn(async move {
            client
                .get(format!("{base}/v1/orgs/org_t/cdc?wait=3&cursor={cursor}"))
                .bearer_auth(&key)
                .send()
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request must complete");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), server.child.wait())
        .await
        .expect("the server did not exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // A clean restart sees the data.
    let restarted = Server::start(dir.path()).await;
    assert_eq!(restarted.all_event_ids(&key, "org_t").await, ["before"]);
}
