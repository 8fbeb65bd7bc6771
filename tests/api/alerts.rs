//! Alert evaluation scenarios (issue 6, "What it must show" 2 and 3): each scenario posts
//! snapshots one request at a time and asserts the exact transitions per request, the alert
//! instances with their history, the `ipm.kpi.*` events on the CDC feed and the inbox items.
use crate::helpers::TestApp;
use crate::kpis::{T0, at, get_as, snaps};
use crate::receiver::{Receiver, Reply, to_json_lines};
use reqwest::Method;
use serde_json::{Value, json};

const H: i64 = 3_600_000;

/// One request: snapshots `(hour, minute, facility, value)`, and how many transitions it causes.
struct Step(&'static [(i64, i64, Option<&'static str>, f64)], u64);

struct Scenario {
    name: &'static str,
    rule: Value,
    steps: Vec<Step>,
    /// Per alert (ordered by facility, then first bucket): `state@h<hour>=<value>` transitions.
    alerts: Vec<&'static str>,
    /// `ipm.kpi.*` events in stream order: `fired|resolved:<facility or ->@h<hour>=<value>`.
    events: Vec<&'static str>,
    /// Inbox item kinds, oldest first.
    inbox: Vec<&'static str>,
}

fn hour_of(rfc: &str) -> i64 {
    (chrono::DateTime::parse_from_rfc3339(rfc)
        .unwrap()
        .timestamp_millis()
        - T0)
        / H
}

fn base_rule(extra: Value) -> Value {
    let mut r = json!({"kpi": "dock.wait", "granularity": "hour", "aggregate": "max", "op": "gt",
                       "threshold": 90, "severity": "warning", "deliver_to_inbox": true});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "simple crossing",
            rule: base_rule(json!({})),
            steps: vec![
                Step(&[(0, 0, None, 50.0)], 0),
                Step(&[(1, 0, None, 95.0)], 1),
                Step(&[(2, 0, None, 97.0)], 0),
                Step(&[(3, 0, None, 40.0)], 1),
            ],
            alerts: vec!["firing@h1=95 resolved@h3=40"],
            events: vec!["fired:-@h1=95", "resolved:-@h3=40"],
            inbox: vec!["alert_fired", "alert_resolved"],
        },
        Scenario {
            name: "flapping without hysteresis",
            rule: base_rule(json!({})),
            steps: vec![
                Step(&[(0, 0, None, 95.0)], 1),
                Step(&[(1, 0, None, 85.0)], 1),
                Step(&[(2, 0, None, 95.0)], 1),
                Step(&[(3, 0, None, 85.0)], 1),
            ],
            alerts: vec!["firing@h0=95 resolved@h1=85", "firing@h2=95 resolved@h3=85"],
            events: vec![
                "fired:-@h0=95",
                "resolved:-@h1=85",
                "fired:-@h2=95",
                "resolved:-@h3=85",
            ],
            inbox: vec![
                "alert_fired",
                "alert_resolved",
                "alert_fired",
                "alert_resolved",
            ],
        },
        Scenario {
            name: "flapping with hysteresis",
            rule: base_rule(json!({"clear_threshold": 80})),
            steps: vec![
                Step(&[(0, 0, None, 95.0)], 1),
                Step(&[(1, 0, None, 85.0)], 0),
                Step(&[(2, 0, None, 95.0)], 0),
                Step(&[(3, 0, None, 85.0)], 0),
                Step(&[(4, 0, None, 80.0)], 1),
            ],
            alerts: vec!["firing@h0=95 resolved@h4=80"],
            events: vec!["fired:-@h0=95", "resolved:-@h4=80"],
            inbox: vec!["alert_fired", "alert_resolved"],
        },
        Scenario {
            name: "for_buckets = 3",
            rule: base_rule(json!({"for_buckets": 3, "deliver_to_inbox": false})),
            steps: vec![
                Step(&[(0, 0, None, 95.0)], 1),
                Step(&[(1, 0, None, 95.0)], 0),
                Step(&[(2, 0, None, 85.0)], 1),
                Step(&[(3, 0, None, 95.0)], 1),
                Step(&[(4, 0, None, 95.0)], 0),
                Step(&[(5, 0, None, 95.0)], 1),
                Step(&[(6, 0, None, 50.0)], 1),
            ],
            alerts: vec![
                "pending@h0=95 resolved@h2=85",
                "pending@h3=95 firing@h5=95 resolved@h6=50",
            ],
            events: vec!["fired:-@h5=95", "resolved:-@h6=50"],
            inbox: vec![],
        },
        Scenario {
            name: "late snapshots change a past bucket",
            rule: base_rule(json!({"aggregate": "last"})),
            steps: vec![
                Step(&[(0, 0, None, 50.0)], 0),
                Step(&[(1, 0, None, 50.0)], 0),
                Step(&[(2, 0, None, 50.0)], 0),
                // Late: bucket h1's last value becomes 95; h1 fires, the newer h2 resolves it.
                Step(&[(1, 30, None, 95.0)], 2),
                Step(&[(3, 0, None, 95.0)], 1),
                Step(&[(4, 0, None, 95.0)], 0),
                // Late: a past bucket turning good never resolves an alert the newer bucket holds.
                Step(&[(3, 40, None, 10.0)], 0),
                Step(&[(4, 50, None, 10.0)], 1),
            ],
            alerts: vec!["firing@h1=95 resolved@h2=50", "firing@h3=95 resolved@h4=10"],
            events: vec![
                "fired:-@h1=95",
                "resolved:-@h2=50",
                "fired:-@h3=95",
                "resolved:-@h4=10",
            ],
            inbox: vec![
                "alert_fired",
                "alert_resolved",
                "alert_fired",
                "alert_resolved",
            ],
        },
        Scenario {
            name: "each facility fires independently",
            rule: base_rule(json!({"facility_id": "each"})),
            steps: vec![
                Step(
                    &[
                        (0, 0, Some("fac_1"), 95.0),
                        (0, 0, Some("fac_2"), 50.0),
                        (0, 0, Some("fac_3"), 50.0),
                    ],
                    1,
                ),
                Step(
                    &[
                        (1, 0, Some("fac_1"), 95.0),
                        (1, 0, Some("fac_2"), 95.0),
                        (1, 0, Some("fac_3"), 50.0),
                    ],
                    1,
                ),
                Step(
                    &[
                        (2, 0, Some("fac_1"), 50.0),
                        (2, 0, Some("fac_2"), 95.0),
                        (2, 0, Some("fac_3"), 95.0),
                    ],
                    2,
                ),
            ],
            alerts: vec![
                "fac_1: firing@h0=95 resolved@h2=50",
                "fac_2: firing@h1=95",
                "fac_3: firing@h2=95",
            ],
            events: vec![
                "fired:fac_1@h0=95",
                "fired:fac_2@h1=95",
                "resolved:fac_1@h2=50",
                "fired:fac_3@h2=95",
            ],
            inbox: vec![
                "alert_fired",
                "alert_fired",
                "alert_resolved",
                "alert_fired",
            ],
        },
    ]
}

fn num(v: &Value) -> String {
    let f = v.as_f64().unwrap();
    if f.fract() == 0.0 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_table_asserts_exact_transitions_events_and_inbox() {
    let app = TestApp::spawn().await;
    for (i, sc) in scenarios().into_iter().enumerate() {
        let org = format!("org_s{i}");
        let r = app
            .req(
                Method::POST,
                &format!("/v1/orgs/{org}/alert-rules"),
                &app.admin_key,
            )
            .json(&sc.rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", sc.name);
        for (n, Step(snapshots, want)) in sc.steps.iter().enumerate() {
            let body: Vec<Value> = snapshots
                .iter()
                .map(|(h, m, f, v)| {
                    let mut s = json!({"kpi": "dock.wait", "value": v, "observed_at": at(T0 + h * H + m * 60_000)});
                    if let Some(f) = f {
                        s["facility_id"] = json!(f);
                    }
                    s
                })
                .collect();
            let rep = snaps(&app, &app.admin_key, &org, &Value::Array(body)).await;
            assert_eq!(rep["alert_transitions"], *want, "{}: step {n}", sc.name);
        }
        let (_, alerts) = get_as(
            &app,
            &app.admin_key,
            &format!("/v1/orgs/{org}/alerts?limit=1000"),
        )
        .await;
        let mut got: Vec<(String, i64, String)> = alerts["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let hist: Vec<String> = a["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        format!(
                            "{}@h{}={}",
                            h["state"].as_str().unwrap(),
                            hour_of(h["bucket_start"].as_str().unwrap()),
                            num(&h["value"])
                        )
                    })
                    .collect();
                let fac = a["facility_id"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_default();
                assert_eq!(
                    a["state"],
                    a["history"].as_array().unwrap().last().unwrap()["state"]
                );
                let first = hour_of(a["history"][0]["bucket_start"].as_str().unwrap());
                let text = if fac.is_empty() {
                    hist.join(" ")
                } else {
                    format!("{fac}: {}", hist.join(" "))
                };
                (fac, first, text)
            })
            .collect();
        got.sort();
        let got: Vec<String> = got.into_iter().map(|g| g.2).collect();
        assert_eq!(got, sc.alerts, "{}: alerts", sc.name);
        let events: Vec<String> = app
            .cdc_all(
                &org,
                "event_type=ipm.kpi.alert_fired&event_type=ipm.kpi.alert_resolved",
            )
            .await
            .iter()
            .map(|e| {
                let p = &e["payload"];
                let kind = e["event_type"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("ipm.kpi.alert_");
                assert_eq!(
                    p["state"],
                    if kind == "fired" {
                        "firing"
                    } else {
                        "resolved"
                    }
                );
                assert_eq!(e["facility_id"], p["facility_id"]);
                format!(
                    "{kind}:{}@h{}={}",
                    p["facility_id"].as_str().unwrap_or("-"),
                    hour_of(p["bucket_start"].as_str().unwrap()),
                    num(&p["value"])
                )
            })
            .collect();
        assert_eq!(events, sc.events, "{}: events", sc.name);
        let (_, inbox) = get_as(
            &app,
            &app.admin_key,
            &format!("/v1/orgs/{org}/inbox?limit=1000"),
        )
        .await;
        let mut kinds: Vec<String> = inbox["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["kind"].as_str().unwrap().to_string())
            .collect();
        kinds.reverse();
        assert_eq!(kinds, sc.inbox, "{}: inbox", sc.name);
        for x in inbox["data"].as_array().unwrap() {
            assert_eq!(x["ref"]["type"], "alert");
            assert!(x["ref"]["id"].as_str().unwrap().starts_with("alr_"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_events_reach_a_webhook_subscribed_to_ipm_kpi_with_valid_signatures() {
    let app = crate::webhooks::wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    let w = crate::webhooks::create(
        &app,
        "org_w",
        json!({"url": rx.url(), "filters": {"event_types": ["ipm.kpi.*"]}}),
    )
    .await;
    let secret = w["signing_secret"].as_str().unwrap().to_string();
    let r = app
        .req(Method::POST, "/v1/orgs/org_w/alert-rules", &app.admin_key)
        .json(&base_rule(
            json!({"facility_id": "fac_9", "severity": "critical"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    snaps(
        &app,
        &app.admin_key,
        "org_w",
        &json!([
            {"kpi": "dock.wait", "value": 99, "observed_at": at(T0), "facility_id": "fac_9"},
            {"kpi": "dock.wait", "value": 10, "observed_at": at(T0 + H), "facility_id": "fac_9"}
        ]),
    )
    .await;
    let mut caps = rx.wait_for(2, 30).await;
    caps.sort_by_key(|c| c.json()["sequence"].as_i64().unwrap());
    let types: Vec<String> = caps
        .iter()
        .map(|c| c.json()["event_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["ipm.kpi.alert_fired", "ipm.kpi.alert_resolved"]);
    assert_eq!(caps[0].json()["payload"]["severity"], "critical");
    assert_eq!(caps[1].json()["payload"]["facility_id"], "fac_9");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("captured.jsonl");
    std::fs::write(&file, to_json_lines(&secret, &caps)).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/verify_webhooks.py"))
        .arg(&file)
        .output()
        .expect("run .venv/bin/python (scripts/setup-test-tools.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_payloads_match_the_catalog_schemas() {
    // The embedded catalog validates what the evaluator emits (the validator logs otherwise);
    // here the specimen shape we build is checked directly against the schema files.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (f, payload) in [
        (
            "ipm.kpi.alert_fired.v1.json",
            json!({"alert_id": "alr_01JC", "rule_id": "rul_01JA", "kpi": "dock.wait", "facility_id": null, "severity": "warning", "granularity": "hour", "aggregate": "max", "op": "gt", "value": 95.0, "threshold": 90.0, "bucket_start": "2026-11-01T01:00:00.000Z", "fired_at": "2026-11-01T01:00:00.000Z", "state": "firing", "started_at": "2026-11-01T01:00:00.000Z"}),
        ),
        (
            "ipm.kpi.alert_resolved.v1.json",
            json!({"alert_id": "alr_01JC", "rule_id": "rul_01JA", "kpi": "dock.wait", "facility_id": "fac_1", "severity": "warning", "granularity": "hour", "aggregate": "max", "op": "gt", "value": 40.0, "threshold": 90.0, "bucket_start": "2026-11-01T03:00:00.000Z", "fired_at": "2026-11-01T01:00:00.000Z", "state": "resolved", "resolved_at": "2026-11-01T03:00:00.000Z", "clear_threshold": 80.0}),
        ),
    ] {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("catalog/ipm/schemas").join(f)).unwrap(),
        )
        .unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        assert!(v.is_valid(&payload), "{f}");
    }
}
