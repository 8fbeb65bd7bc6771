//! Export jobs (SPEC §7): files equal the CDC feed, continuation, polling, gzip, auth.
use crate::job_helpers::{JobApp, line, lines_of, sha256_hex};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn export_of_200k_events_equals_the_cdc_feed_in_files_of_50k() {
    let app = JobApp::spawn().await;
    let mut lines: Vec<String> = (0..200_000)
        .map(|i| line("org_a", "o", i, "orders.order.created"))
        .collect();
    // Noise the filter must skip: another service, another org.
    lines.extend((0..3_000).map(|i| line("org_a", "b", i, "billing.noise.recorded")));
    lines.extend((0..2_000).map(|i| line("org_b", "o", i, "orders.order.created")));
    assert_eq!(app.publish_lines(&lines).await, 205_000);

    let job = app
        .export(
            "org_a",
            json!({"filters": {"service": ["orders"]}, "max_events_per_file": 50000}),
        )
        .await;
    let path = format!("/v1/orgs/org_a/exports/{}", job["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.0, 202);
    app.drain().await;
    let (status, job) = app.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "succeeded", "{job}");
    let files = job["files"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    let mut exported = Vec::new();
    for f in files {
        let bytes = app.download(f["url"].as_str().unwrap()).await;
        assert_eq!(f["events"], 50_000);
        assert_eq!(f["bytes"].as_u64().unwrap(), bytes.len() as u64);
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(&bytes));
        let ls = lines_of(&bytes);
        assert_eq!(ls.len(), 50_000);
        exported.extend(ls);
    }
    assert_eq!(job["progress"]["events_written"], 200_000);
    let (feed, _) = app.cdc_raw("org_a", "service=orders").await;
    assert_eq!(feed.len(), 200_000);
    assert!(exported == feed, "export lines differ from the CDC feed");
    // next_cursor is a CDC cursor for the same filters, at the feed's end.
    let next = job["next_cursor"].as_str().unwrap();
    let (rest, _) = app
        .cdc_raw("org_a", &format!("service=orders&cursor={next}"))
        .await;
    assert!(rest.is_empty());
}

#[tokio::test]
async fn continuation_from_next_cursor_exports_exactly_the_new_events() {
    let app = JobApp::spawn().await;
    let first: Vec<String> = (0..3_000)
        .map(|i| line("org_a", "a", i, "orders.order.created"))
        .collect();
    app.publish_lines(&first).await;
    let body = json!({"filters": {"event_type": ["orders.*"]}, "max_events_per_file": 700});
    let job = app.export("org_a", body.clone()).await;
    app.drain().await;
    let (_, job) = app
        .get(&format!(
            "/v1/orgs/org_a/exports/{}",
            job["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job["progress"]["events_written"], 3_000);
    assert_eq!(job["files"].as_array().unwrap().len(), 5);
    let cursor = job["next_cursor"].as_str().unwrap().to_string();

    let more: Vec<String> = (0..1_000)
        .map(|i| line("org_a", "b", i, "orders.order.paid"))
        .collect();
    app.publish_lines(&more).await;
    let mut body2 = body.clone();
    body2["from_cursor"] = cursor.clone().into();
    let job2 = app.export("org_a", body2).await;
    app.drain().await;
    let (_, job2) = app
        .get(&format!(
            "/v1/orgs/org_a/exports/{}",
            job2["id"].as_str().unwrap()
        ))
        .await;
    let mut got = Vec::new();
    for f in job2["files"].as_array().unwrap() {
        got.extend(lines_of(&app.download(f["url"].as_str().unwrap()).await));
    }
    assert_eq!(got.len(), 1_000);
    let ids: Vec<String> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let want: Vec<String> = (0..1_000).map(|i| format!("b-{i}")).collect();
    assert_eq!(ids, want);

    // A third export from the second's cursor is empty, and a cursor for other filters is refused.
    let mut body3 = body.clone();
    body3["from_cursor"] = job2["next_cursor"].clone();
    let job3 = app.export("org_a", body3).await;
    app.drain().await;
    let (_, job3) = app
        .get(&format!(
            "/v1/orgs/org_a/exports/{}",
            job3["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job3["status"], "succeeded");
    assert_eq!(job3["files"].as_array().unwrap().len(), 0);
    assert_eq!(job3["next_cursor"], job2["next_cursor"]);
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/exports", &app.admin_key)
        .json(&json!({"from_cursor": cursor}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_cursor");
}

#[tokio::test]
async fn polling_gzip_idempotency_cancel_and_auth() {
    let app = JobApp::spawn().await;
    let lines: Vec<String> = (0..2_500)
        .map(|i| line("org_a", "e", i, "orders.order.created"))
        .collect();
    app.publish_lines(&lines).await;

    // Idempotency-Key: same key, same job.
    let create = |key: &'static str, body: Value| {
        app.req(Method::POST, "/v1/orgs/org_a/exports", &app.admin_key)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let r = create(
        "k1",
        json!({"compression": "gzip", "max_events_per_file": 1000}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let a: Value = r.json().await.unwrap();
    assert_eq!(
        loc,
        format!("/v1/orgs/org_a/exports/{}", a["id"].as_str().unwrap())
    );
    let b: Value = create("k1", json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(a["id"], b["id"]);

    // While queued: 202 + Retry-After + X-Progress.
    let r = app
        .req(Method::GET, &loc, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.headers()["x-progress"]
            .to_str()
            .unwrap()
            .starts_with("queued")
    );
    app.worker.run_once().await.unwrap();
    app.worker.run_once().await.unwrap();
    let r = app
        .req(Method::GET, &loc, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["x-progress"]
            .to_str()
            .unwrap()
            .starts_with("running")
    );
    app.drain().await;
    let (status, job) = app.get(&loc).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("succeeded")));
    let files = job["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let mut all = Vec::new();
    for f in files {
        assert!(f["name"].as_str().unwrap().ends_with(".ndjson.gz"));
        let bytes = app.download(f["url"].as_str().unwrap()).await;
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(&bytes));
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut text,
        )
        .unwrap();
        all.extend(lines_of(text.as_bytes()));
    }
    let (feed, _) = app.cdc_raw("org_a", "").await;
    assert!(all == feed);

    // Readers may read and download, not create or cancel; other orgs see 403; foreign ids 404.
    let reader = app.key(json!({"role": "reader", "org_id": "org_a"})).await;
    let other = app
        .key(json!({"role": "org_admin", "org_id": "org_b"}))
        .await;
    let r = app.req(Method::GET, &loc, &reader).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .req(Method::GET, files[0]["url"].as_str().unwrap(), &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/exports", &reader)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app.req(Method::GET, &loc, &other).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let foreign = loc.replace("org_a", "org_b");
    let r = app.req(Method::GET, &foreign, &other).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .req(Method::GET, "/v1/orgs/org_a/exports", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Management writes need X-Actor-Id.
    let r = app
        .client
        .post(format!("{}/v1/orgs/org_a/exports", app.base))
        .bearer_auth(&app.admin_key)
        .header("x-request-id", "r1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "request_context_required"
    );

    // DELETE on a finished job removes its files; on a running one cancels it.
    let r = app
        .req(Method::DELETE, &loc, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .req(
            Method::GET,
            files[0]["url"].as_str().unwrap(),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let running = app
        .export("org_a", json!({"max_events_per_file": 100}))
        .await;
    let rloc = format!("/v1/orgs/org_a/exports/{}", running["id"].as_str().unwrap());
    app.worker.run_once().await.unwrap();
    app.worker.run_once().await.unwrap();
    let r = app
        .req(Method::DELETE, &rloc, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.drain().await;
    let (status, job) = app.get(&rloc).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("canceled")));
    assert!(
        !app.dir
            .path()
            .join("files/org_a")
            .join(running["id"].as_str().unwrap())
            .exists()
    );
}
