//! KPI snapshots, rollups and alerts on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::PgStore;
use super::tests_util::{event, fresh_store};
use crate::domain::kpi::{Agg, Aggregate, Granularity, Op, Severity};
use crate::store::kpis::{
    AlertEffects, Alerts, Kpis, RuleRow, SnapshotRow, Transition, TransitionKind,
};
use crate::store::{EventRow, InboxRow};
use std::collections::BTreeMap;
use std::sync::Arc;

const HOUR_NS: i64 = 3_600_000_000_000;
const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// Builds an `ipm.kpi.alert_fired`/`…_resolved` event and (when asked) an inbox item.
struct Fx;

impl AlertEffects for Fx {
    fn effects(&self, t: &Transition) -> (Option<EventRow>, Option<InboxRow>) {
        let ty = match t.kind {
            TransitionKind::Fired => "ipm.kpi.alert_fired",
            TransitionKind::Resolved => "ipm.kpi.alert_resolved",
        };
        let mut e = event(&t.alert.org_id, &format!("{}-{ty}", t.alert.id), ty);
        e.occurred_at = t.alert.bucket_start * 1_000_000;
        let inbox = t.rule.deliver_to_inbox.then(|| InboxRow {
            id: format!("inb_{}", ulid::Ulid::generate()),
            org_id: t.alert.org_id.clone(),
            kind: "kpi_alert".into(),
            severity: "warning".into(),
            title: ty.into(),
            body: String::new(),
            ref_type: "alert".into(),
            ref_id: t.alert.id.clone(),
            created_at: "2026-01-01T00:00:00Z".into(),
            acked_at: None,
            acked_context: None,
        });
        (Some(e), inbox)
    }
}

fn snap(kpi: &str, fac: Option<&str>, at: i64, value: f64) -> SnapshotRow {
    SnapshotRow {
        kpi: kpi.into(),
        facility_id: fac.map(str::to_string),
        observed_at: at,
        value,
        unit: Some("pct".into()),
    }
}

fn rule(id: &str, org: &str, fac: Option<&str>, for_buckets: u32) -> RuleRow {
    RuleRow {
        id: id.into(),
        org_id: org.into(),
        kpi: "temp".into(),
        facility_id: fac.map(str::to_string),
        granularity: Granularity::Hour,
        aggregate: Aggregate::Max,
        op: Op::Gt,
        threshold: 10.0,
        clear_threshold: Some(8.0),
        for_buckets,
        severity: Severity::Warning,
        deliver_to_inbox: true,
        created_at: "2026-01-01T00:00:00Z".into(),
        created_context: "{}".into(),
        updated_at: None,
        updated_context: None,
    }
}

async fn event_types(s: &PgStore, org: &str) -> Vec<String> {
    let c = s.conn().await.unwrap();
    c.query(
        "SELECT event_type FROM events WHERE org_id = $1 ORDER BY seq",
        &[&org],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn inbox_count(s: &PgStore, org: &str) -> i64 {
    let c = s.conn().await.unwrap();
    c.query_one("SELECT COUNT(*) FROM inbox WHERE org_id = $1", &[&org])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_equal_brute_force() {
    let s = fresh_store().await;
    let fx: Arc<dyn AlertEffects> = Arc::new(Fx);
    let mut all = Vec::new();
    for i in 0..40i64 {
        let fac = match i % 3 {
            0 => None,
            1 => Some("f1"),
            _ => Some("f2"),
        };
        // Out of order, several per bucket, spread over ~2 days.
        let at = T0 + ((i * 7_919) % 50) * HOUR_NS + (i % 5) * 60_000_000_000 + i;
        all.push(snap("temp", fac, at, (i * 13 % 17) as f64 - 3.5));
    }
    for chunk in all.chunks(7) {
        let r = s
            .record_snapshots("org_a", chunk.to_vec(), fx.clone())
            .await
            .unwrap();
        assert_eq!(r.accepted, chunk.len());
    }
    for g in Granularity::ALL {
        for fac in [None, Some("f1"), Some("f2")] {
            let mut want: BTreeMap<i64, Agg> = BTreeMap::new();
            for x in &all {
                if fac.is_some() && x.facility_id.as_deref() != fac {
                    continue;
                }
                let one = Agg::one(x.value, x.observed_at);
                want.entry(g.bucket_of(x.observed_at.div_euclid(1_000_000)))
                    .and_modify(|a| a.merge(&one))
                    .or_insert(one);
            }
            let got = s
                .buckets("org_a", "temp", fac, g, i64::MIN, i64::MAX)
                .await
                .unwrap();
            assert_eq!(got.len(), want.len(), "{g:?} {fac:?}");
            for (b, (k, a)) in got.iter().zip(&want) {
                assert_eq!(b.bucket_start, *k);
                assert_eq!(b.agg.count, a.count);
                assert_eq!(b.agg.min, a.min);
                assert_eq!(b.agg.max, a.max);
                assert!((b.agg.sum - a.sum).abs() < 1e-9);
                assert_eq!(b.agg.last_value, a.last_value);
                assert_eq!(b.agg.last_at, a.last_at);
            }
        }
    }
    let kpis = s.list_kpis("org_a", None, 10).await.unwrap();
    assert_eq!(kpis.len(), 1);
    assert_eq!(kpis[0].snapshots, 40);
    let newest = all.iter().max_by_key(|x| x.observed_at).unwrap();
    assert_eq!(kpis[0].last_value, newest.value);
    assert_eq!(kpis[0].last_facility_id, newest.facility_id);
    assert_eq!(kpis[0].unit.as_deref(), Some("pct"));
    // Org isolation.
    assert!(s.list_kpis("org_b", None, 10).await.unwrap().is_empty());
    assert!(
        s.buckets("org_b", "temp", None, Granularity::Hour, i64::MIN, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_fire_and_resolve() {
    let s = fresh_store().await;
    let fx: Arc<dyn AlertEffects> = Arc::new(Fx);
    s.insert_rule(rule("alr_r1", "org_a", None, 1))
        .await
        .unwrap();
    s.insert_rule(rule("alr_r2", "org_a", Some("each"), 2))
        .await
        .unwrap();
    assert_eq!(s.list_rules("org_a", None, 10).await.unwrap().len(), 2);
    assert!(s.get_rule("org_b", "alr_r1").await.unwrap().is_none());
    assert_eq!(
        s.get_rule("org_a", "alr_r2").await.unwrap().unwrap(),
        rule("alr_r2", "org_a", Some("each"), 2)
    );

    // Hour 0: 20 at f1 -> r1 fires (org-wide), r2 pending for f1.
    let r = s
        .record_snapshots(
            "org_a",
            vec![snap("temp", Some("f1"), T0, 20.0)],
            fx.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.transitions, 2);
    assert_eq!(event_types(&s, "org_a").await, ["ipm.kpi.alert_fired"]);
    assert_eq!(
        s.list_alerts("org_a", Some("pending"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // Hour 1: 9 (between clear and threshold): r1 stays firing (hysteresis); r2's streak breaks.
    let r = s
        .record_snapshots(
            "org_a",
            vec![snap("temp", Some("f1"), T0 + HOUR_NS, 9.0)],
            fx.clone(),
        )
        .await
        .unwrap();
    let firing = s
        .list_alerts("org_a", Some("firing"), None, 10)
        .await
        .unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].rule_id, "alr_r1");
    assert_eq!(r.transitions, 1); // r2's pending alert resolves (dropped, no event)
    // Hours 2 and 3 for f1 (two buckets breaching): r2 fires for f1.
    s.record_snapshots(
        "org_a",
        vec![
            snap("temp", Some("f1"), T0 + 2 * HOUR_NS, 15.0),
            snap("temp", Some("f1"), T0 + 3 * HOUR_NS, 16.0),
        ],
        fx.clone(),
    )
    .await
    .unwrap();
    let firing = s
        .list_alerts("org_a", Some("firing"), None, 10)
        .await
        .unwrap();
    assert_eq!(firing.len(), 2);
    let r2 = firing.iter().find(|a| a.rule_id == "alr_r2").unwrap();
    assert_eq!(r2.facility_id.as_deref(), Some("f1"));
    // Hour 4: 1 -> both resolve, two resolved events.
    s.record_snapshots(
        "org_a",
        vec![snap("temp", Some("f1"), T0 + 4 * HOUR_NS, 1.0)],
        fx.clone(),
    )
    .await
    .unwrap();
    assert!(
        s.list_alerts("org_a", Some("firing"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let types = event_types(&s, "org_a").await;
    assert_eq!(
        types,
        [
            "ipm.kpi.alert_fired",
            "ipm.kpi.alert_fired",
            "ipm.kpi.alert_resolved",
            "ipm.kpi.alert_resolved"
        ]
    );
    assert_eq!(inbox_count(&s, "org_a").await, 4);
    let r1 = s
        .list_alerts("org_a", Some("resolved"), None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.rule_id == "alr_r1")
        .unwrap();
    let h: Vec<serde_json::Value> = serde_json::from_str(&r1.history).unwrap();
    assert_eq!(
        h.iter()
            .map(|x| x["state"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["firing", "resolved"]
    );
    assert!(r1.fired_at.is_some() && r1.resolved_at.is_some());

    // A late snapshot in an old bucket may open but never resolve: 30 in hour 0 again.
    s.record_snapshots("org_a", vec![snap("temp", None, T0 + 5, 30.0)], fx.clone())
        .await
        .unwrap();

    // Org isolation: the same snapshots in org_b evaluate none of org_a's rules.
    let r = s
        .record_snapshots(
            "org_b",
            vec![snap("temp", Some("f1"), T0, 50.0)],
            fx.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.transitions, 0);
    assert!(
        s.list_alerts("org_b", None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(event_types(&s, "org_b").await.is_empty());

    // Rule update/delete.
    let mut r1 = rule("alr_r1", "org_a", None, 3);
    r1.updated_at = Some("2026-01-02T00:00:00Z".into());
    assert!(s.update_rule(r1.clone()).await.unwrap());
    assert_eq!(s.get_rule("org_a", "alr_r1").await.unwrap().unwrap(), r1);
    assert!(
        !s.update_rule(rule("alr_x", "org_a", None, 1))
            .await
            .unwrap()
    );
    assert!(!s.delete_rule("org_b", "alr_r1").await.unwrap());
    assert!(s.delete_rule("org_a", "alr_r1").await.unwrap());
    assert!(s.get_rule("org_a", "alr_r1").await.unwrap().is_none());
    let all = s.list_alerts("org_a", None, None, 100).await.unwrap();
    let page = s
        .list_alerts("org_a", None, Some(&all[0].id), 100)
        .await
        .unwrap();
    assert_eq!(page.len(), all.len() - 1);
}

/// The same writes on SQLite and PostgreSQL produce the same transitions and alerts.
#[tokio::test(flavor = "multi_thread")]
async fn same_alerts_as_sqlite() {
    let pg = fresh_store().await;
    let dir = tempfile::tempdir().unwrap();
    let lite = crate::store::sqlite::SqliteStore::open(&dir.path().join("ipm.db"))
        .await
        .unwrap();
    let fx: Arc<dyn AlertEffects> = Arc::new(Fx);
    let mut rules = vec![
        rule("alr_a", "org_a", None, 1),
        rule("alr_b", "org_a", Some("each"), 2),
        rule("alr_c", "org_a", Some("f2"), 3),
    ];
    rules[1].aggregate = Aggregate::Avg;
    rules[2].op = Op::Lt;
    rules[2].threshold = 5.0;
    rules[2].clear_threshold = None;
    rules[2].granularity = Granularity::FiveMinutes;
    for r in &rules {
        pg.insert_rule(r.clone()).await.unwrap();
        lite.insert_rule(r.clone()).await.unwrap();
    }
    let mut x = 17u64;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    for round in 0..25 {
        let mut batch = Vec::new();
        for _ in 0..(1 + next() % 4) {
            let fac = ["f1", "f2", "f3"][(next() % 3) as usize];
            // Mostly moving forward, sometimes late.
            let at = T0 + (round * HOUR_NS / 4) - (next() % 3) as i64 * HOUR_NS / 2;
            batch.push(snap("temp", Some(fac), at, (next() % 20) as f64));
        }
        let a = pg
            .record_snapshots("org_a", batch.clone(), fx.clone())
            .await
            .unwrap();
        let b = lite
            .record_snapshots("org_a", batch, fx.clone())
            .await
            .unwrap();
        assert_eq!(a, b, "round {round}");
    }
    let key = |a: &crate::store::kpis::AlertRow| {
        let h: Vec<serde_json::Value> = serde_json::from_str(&a.history).unwrap();
        let h: Vec<String> = h
            .iter()
            .map(|x| format!("{}@{}={}", x["state"], x["bucket_start"], x["value"]))
            .collect();
        (
            a.rule_id.clone(),
            a.facility_id.clone(),
            a.state.clone(),
            a.bucket_start,
            a.value.to_bits(),
            h,
        )
    };
    let mut a: Vec<_> = pg
        .list_alerts("org_a", None, None, 1000)
        .await
        .unwrap()
        .iter()
        .map(key)
        .collect();
    let mut b: Vec<_> = lite
        .list_alerts("org_a", None, None, 1000)
        .await
        .unwrap()
        .iter()
        .map(key)
        .collect();
    a.sort();
    b.sort();
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(
        pg.list_kpis("org_a", None, 10).await.unwrap(),
        lite.list_kpis("org_a", None, 10).await.unwrap()
    );
}
