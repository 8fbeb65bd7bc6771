//! KPI snapshots and buckets (issue 6, "What it must show" 1 and 4).
use crate::helpers::{TestApp, assert_problem};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// POSTs snapshots as `key`; asserts 200 and returns the report.
pub async fn snaps(app: &TestApp, key: &str, org: &str, body: &Value) -> Value {
    let r = app
        .req(Method::POST, &format!("/v1/orgs/{org}/kpis/snapshots"), key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

pub async fn get_as(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let r = app.req(Method::GET, path, key).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 2026-11-01T00:00:00Z in Unix ms.
pub const T0: i64 = 1_793_491_200_000;

#[derive(Default, Debug)]
struct Brute {
    count: i64,
    min: f64,
    max: f64,
    sum: f64,
    last: (i64, f64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_aggregates_equal_a_brute_force_computation() {
    let app = TestApp::spawn().await;
    let mut rng = StdRng::seed_from_u64(20261126);
    let facilities = ["fac_a", "fac_b", "fac_c"];
    let span = 3 * 86_400_000i64;
    let mut all: Vec<(Option<&str>, i64, f64)> = Vec::new();
    for round in 0..6 {
        let n = rng.random_range(1..400usize);
        let mut batch = Vec::new();
        for i in 0..n {
            let fac = match rng.random_range(0..4usize) {
                3 => None,
                k => Some(facilities[k]),
            };
            // Distinct instants (ties in `last` would be decided by arrival order).
            let ms =
                T0 + rng.random_range(0..span / 1000) * 1000 + (round * 1000 + i as i64) % 1000;
            let value = (rng.random_range(-10_000..10_000i64) as f64) / 100.0;
            let mut s = json!({"kpi": "orders.fill_rate", "value": value, "observed_at": at(ms)});
            if let Some(f) = fac {
                s["facility_id"] = json!(f);
            }
            all.push((fac, ms, value));
            batch.push(s);
        }
        let r = snaps(&app, &app.admin_key, "org_p", &Value::Array(batch)).await;
        assert_eq!(r["accepted"], n);
    }
    for (gran, width) in [("5m", 300_000i64), ("hour", 3_600_000), ("day", 86_400_000)] {
        for fac in [None, Some("fac_a"), Some("fac_b"), Some("fac_c")] {
            let mut want: BTreeMap<i64, Brute> = BTreeMap::new();
            for (f, ms, v) in &all {
                if fac.is_some() && *f != fac {
                    continue;
                }
                let b = ms.div_euclid(width) * width;
                let e = want.entry(b).or_insert(Brute {
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    last: (i64::MIN, 0.0),
                    ..Default::default()
                });
                e.count += 1;
                e.min = e.min.min(*v);
                e.max = e.max.max(*v);
                e.sum += v;
                if *ms >= e.last.0 {
                    e.last = (*ms, *v);
                }
            }
            let mut q = format!(
                "/v1/orgs/org_p/kpis/orders.fill_rate/buckets?granularity={gran}&from={}&to={}",
                at(T0 - 86_400_000),
                at(T0 + span + 86_400_000)
            );
            if let Some(f) = fac {
                q.push_str(&format!("&facility_id={f}"));
            }
            let (s, got) = get_as(&app, &app.admin_key, &q).await;
            assert_eq!(s, 200, "{got}");
            let got = got["data"].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{gran} {fac:?}");
            for (g, (b, w)) in got.iter().zip(&want) {
                let ctx = format!("{gran} {fac:?} bucket {}", at(*b));
                assert_eq!(g["bucket_start"], at(*b), "{ctx}");
                assert_eq!(g["count"], w.count, "{ctx}");
                assert_eq!(g["min"].as_f64().unwrap(), w.min, "{ctx}");
                assert_eq!(g["max"].as_f64().unwrap(), w.max, "{ctx}");
                assert!((g["sum"].as_f64().unwrap() - w.sum).abs() < 1e-6, "{ctx}");
                let avg = w.sum / w.count as f64;
                assert!((g["avg"].as_f64().unwrap() - avg).abs() < 1e-6, "{ctx}");
                assert_eq!(g["last"].as_f64().unwrap(), w.last.1, "{ctx}");
            }
        }
    }
    // A narrower window returns exactly the buckets starting inside it.
    let (_, got) = get_as(
        &app,
        &app.admin_key,
        &format!(
            "/v1/orgs/org_p/kpis/orders.fill_rate/buckets?granularity=day&from={}&to={}",
            at(T0 + 86_400_000),
            at(T0 + 2 * 86_400_000)
        ),
    )
    .await;
    assert_eq!(got["data"].as_array().unwrap().len(), 1);
    assert_eq!(got["data"][0]["bucket_start"], at(T0 + 86_400_000));
}

#[tokio::test]
async fn snapshots_are_validated_and_listed() {
    let app = TestApp::spawn().await;
    let path = "/v1/orgs/org_v/kpis/snapshots";
    let post = |body: Value| {
        app.req(Method::POST, path, &app.admin_key)
            .json(&body)
            .send()
    };
    let p = assert_problem(
        post(json!({"kpi": "Bad Name", "value": 1, "observed_at": at(T0)}))
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "kpi");
    let p = assert_problem(
        post(json!([{"kpi": "a.b", "value": 1, "observed_at": at(T0)}, {"kpi": "a.b", "value": 1, "observed_at": "yesterday"}]))
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "[1].observed_at");
    let p = assert_problem(
        post(json!({"kpi": "a.b", "observed_at": at(T0)}))
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "value");
    let big: Vec<Value> = (0..1001)
        .map(|i| json!({"kpi": "a.b", "value": i, "observed_at": at(T0)}))
        .collect();
    assert_problem(
        post(Value::Array(big)).await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    // Nothing of the refused batches was stored.
    let (_, l) = get_as(&app, &app.admin_key, "/v1/orgs/org_v/kpis").await;
    assert_eq!(l["data"].as_array().unwrap().len(), 0);
    for (i, k) in ["b.one", "a.two", "c.three"].iter().enumerate() {
        snaps(
            &app,
            &app.admin_key,
            "org_v",
            &json!([{"kpi": k, "value": i, "observed_at": at(T0), "unit": "ratio"},
                    {"kpi": k, "value": i * 10, "observed_at": at(T0 + 1000), "facility_id": "fac_x"}]),
        )
        .await;
    }
    let (_, l) = get_as(&app, &app.admin_key, "/v1/orgs/org_v/kpis?limit=2").await;
    assert_eq!(l["data"][0]["kpi"], "a.two");
    assert_eq!(l["data"][0]["last_value"], 10.0);
    assert_eq!(l["data"][0]["last_facility_id"], "fac_x");
    assert_eq!(l["data"][0]["unit"], "ratio");
    assert_eq!(l["data"][0]["snapshots"], 2);
    assert_eq!(l["has_more"], true);
    let c = l["next_cursor"].as_str().unwrap();
    let (_, l2) = get_as(
        &app,
        &app.admin_key,
        &format!("/v1/orgs/org_v/kpis?limit=2&cursor={c}"),
    )
    .await;
    assert_eq!(l2["data"][0]["kpi"], "c.three");
    assert_eq!(l2["has_more"], false);
}

#[tokio::test]
async fn roles_and_tenancy_for_snapshots_rules_alerts_and_inbox() {
    let app = TestApp::spawn().await;
    let publisher = app
        .key(json!({"role": "publisher", "orgs": ["org_a"]}))
        .await;
    let reader_a = app.key(json!({"role": "reader", "org_id": "org_a"})).await;
    let admin_a = app
        .key(json!({"role": "org_admin", "org_id": "org_a"}))
        .await;
    let admin_b = app
        .key(json!({"role": "org_admin", "org_id": "org_b"}))
        .await;
    // Org A: a rule that fires into the inbox on the first snapshot.
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/alert-rules", &admin_a)
        .json(
            &json!({"kpi": "dock.wait", "granularity": "hour", "aggregate": "max", "op": "gt",
                       "threshold": 10, "severity": "critical", "deliver_to_inbox": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rule: Value = r.json().await.unwrap();
    let rid = rule["id"].as_str().unwrap().to_string();
    assert!(rid.starts_with("rul_"));
    assert_eq!(rule["created_context"]["actor_id"], "tester");
    let rep = snaps(
        &app,
        &publisher,
        "org_a",
        &json!({"kpi": "dock.wait", "value": 50, "observed_at": at(T0)}),
    )
    .await;
    assert_eq!(rep["alert_transitions"], 1);
    // The publisher may post but not read, and not for another org.
    let r = app
        .req(Method::POST, "/v1/orgs/org_b/kpis/snapshots", &publisher)
        .json(&json!({"kpi": "dock.wait", "value": 50, "observed_at": at(T0)}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    for p in [
        "/v1/orgs/org_a/kpis",
        "/v1/orgs/org_a/alerts",
        "/v1/orgs/org_a/alert-rules",
    ] {
        assert_eq!(get_as(&app, &publisher, p).await.0, 403, "{p}");
    }
    // The reader reads KPIs and alerts but may not post or manage.
    let buckets = format!(
        "/v1/orgs/org_a/kpis/dock.wait/buckets?granularity=hour&from={}&to={}",
        at(T0),
        at(T0 + 3_600_000)
    );
    let (s, b) = get_as(&app, &reader_a, &buckets).await;
    assert_eq!((s, b["data"][0]["max"].as_f64()), (200, Some(50.0)));
    let (s, al) = get_as(&app, &reader_a, "/v1/orgs/org_a/alerts?state=firing").await;
    assert_eq!(s, 200);
    assert_eq!(al["data"].as_array().unwrap().len(), 1);
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/kpis/snapshots", &reader_a)
        .json(&json!({"kpi": "dock.wait", "value": 50, "observed_at": at(T0)}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .req(Method::POST, "/v1/orgs/org_a/alert-rules", &reader_a)
        .json(&json!({"kpi": "dock.wait", "granularity": "hour", "aggregate": "max", "op": "gt", "threshold": 1, "severity": "info"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    // Org B sees nothing of org A: its own lists are empty, A's paths are 403, A's ids 404.
    for p in [
        "/v1/orgs/org_a/kpis",
        "/v1/orgs/org_a/alerts",
        "/v1/orgs/org_a/alert-rules",
        "/v1/orgs/org_a/inbox",
        buckets.as_str(),
    ] {
        assert_eq!(get_as(&app, &admin_b, p).await.0, 403, "{p}");
    }
    for p in [
        "/v1/orgs/org_b/kpis",
        "/v1/orgs/org_b/alerts",
        "/v1/orgs/org_b/alert-rules",
        "/v1/orgs/org_b/inbox",
    ] {
        let (s, v) = get_as(&app, &admin_b, p).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(v["data"].as_array().unwrap().len(), 0, "{p}: {v}");
    }
    let (s, v) = get_as(&app, &admin_b, &buckets.replace("org_a", "org_b")).await;
    assert_eq!((s, v["data"].as_array().unwrap().len()), (200, 0));
    let r = app
        .req(
            Method::GET,
            &format!("/v1/orgs/org_b/alert-rules/{rid}"),
            &admin_b,
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app
        .req(
            Method::PATCH,
            &format!("/v1/orgs/org_b/alert-rules/{rid}"),
            &admin_b,
        )
        .json(&json!({"threshold": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app
        .req(
            Method::DELETE,
            &format!("/v1/orgs/org_b/alert-rules/{rid}"),
            &admin_b,
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    // Org B's snapshots of the same KPI never touch org A's rule.
    let rep = snaps(
        &app,
        &admin_b,
        "org_b",
        &json!({"kpi": "dock.wait", "value": 99, "observed_at": at(T0)}),
    )
    .await;
    assert_eq!(rep["alert_transitions"], 0);
    let (_, inbox) = get_as(&app, &admin_a, "/v1/orgs/org_a/inbox").await;
    assert_eq!(inbox["data"].as_array().unwrap().len(), 1);
    assert_eq!(inbox["data"][0]["kind"], "alert_fired");
    // Rule management: patch keeps context, delete answers 204 then 404.
    let r = app
        .req(
            Method::PATCH,
            &format!("/v1/orgs/org_a/alert-rules/{rid}"),
            &admin_a,
        )
        .json(&json!({"threshold": 20, "clear_threshold": 15}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["threshold"].as_f64(), v["clear_threshold"].as_f64()),
        (Some(20.0), Some(15.0))
    );
    assert_eq!(v["updated_context"]["actor_id"], "tester");
    let r = app
        .req(
            Method::PATCH,
            &format!("/v1/orgs/org_a/alert-rules/{rid}"),
            &admin_a,
        )
        .json(&json!({"clear_threshold": 25}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "clear_threshold");
    let r = app
        .client
        .post(app.url("/v1/orgs/org_a/alert-rules"))
        .bearer_auth(&admin_a)
        .header("x-request-id", "no-actor")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "request_context_required").await;
    let r = app
        .req(
            Method::DELETE,
            &format!("/v1/orgs/org_a/alert-rules/{rid}"),
            &admin_a,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get_as(&app, &admin_a, &format!("/v1/orgs/org_a/alert-rules/{rid}"))
            .await
            .0,
        404
    );
}
