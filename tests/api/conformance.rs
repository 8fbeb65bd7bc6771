//! The storage conformance suite: written against the `ipm::store` traits only, run for every
//! backend the factory knows (SQLite, and PostgreSQL when a test server is configured).
use ipm::domain::filter::{EventFilter, FilterInput};
use ipm::store::postgres::PgStore;
use ipm::store::sqlite::SqliteStore;
use ipm::store::{AppendOutcome, DynStore, EventRow, KeyRow};
use serde_json::{Value, json};
use std::sync::Arc;
use tempfile::TempDir;

enum Kind {
    Sqlite,
    Postgres(String),
}

/// A backend under test: can open (and reopen) its store on the same data.
pub struct Backend {
    pub name: &'static str,
    kind: Kind,
    dir: TempDir,
}

impl Backend {
    pub async fn open(&self) -> DynStore {
        match &self.kind {
            Kind::Sqlite => Arc::new(
                SqliteStore::open(&self.dir.path().join("conformance.sqlite3"))
                    .await
                    .expect("open sqlite"),
            ),
            Kind::Postgres(url) => Arc::new(PgStore::open(url).await.expect("open postgres")),
        }
    }
}

/// Every backend, each on fresh, empty storage. PostgreSQL joins whenever the test server is
/// configured (`TEST_IPM_PG_URL`, which `scripts/test.sh` always sets).
async fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "sqlite",
        kind: Kind::Sqlite,
        dir: tempfile::tempdir().unwrap(),
    }];
    if std::env::var("TEST_IPM_PG_URL").is_ok() || crate::helpers::on_postgres() {
        out.push(Backend {
            name: "postgres",
            kind: Kind::Postgres(crate::helpers::fresh_database()),
            dir: tempfile::tempdir().unwrap(),
        });
    }
    out
}

/// Every backend's store, opened; keep the `Backend` alive while the store is used.
async fn stores() -> Vec<(&'static str, DynStore, Backend)> {
    let mut out = Vec::new();
    for b in backends().await {
        let s = b.open().await;
        out.push((b.name, s, b));
    }
    out
}

fn row(org: &str, event_id: &str, at: i64, ty: &str, payload: &Value) -> EventRow {
    let service = ty.split('.').next().unwrap().to_string();
    let rendered =
        json!({"event_id": event_id, "event_type": ty, "org_id": org, "payload": payload})
            .to_string();
    EventRow {
        id: format!("evt_{}", ulid::Ulid::generate()),
        org_id: org.into(),
        event_id: event_id.into(),
        occurred_at: at,
        event_type: ty.into(),
        service,
        channel_id: (at % 2 == 0).then(|| "web".into()),
        facility_id: None,
        payload_hash: format!("{:x}", payload.to_string().len()) + &payload.to_string(),
        rendered,
        context: "{}".into(),
    }
}

fn filter(services: &[&str], types: &[&str], channel: Option<&str>) -> EventFilter {
    let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = types.iter().map(|s| s.to_string()).collect();
    EventFilter::parse(FilterInput {
        services: &services,
        event_types: &types,
        channel_id: channel,
        ..FilterInput::default()
    })
    .unwrap()
}

fn seqs(out: &[AppendOutcome]) -> Vec<i64> {
    out.iter()
        .filter_map(|o| match o {
            AppendOutcome::Accepted { sequence, .. } => Some(*sequence),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn append_reports_accepted_duplicate_and_mismatch() {
    for (name, s, _b) in stores().await {
        let p = json!({"a": 1});
        let first = s
            .append(vec![
                row("o", "e1", 10, "orders.order.created", &p),
                row("o", "e2", 10, "orders.order.created", &p),
            ])
            .await
            .unwrap();
        let ids: Vec<String> = first
            .iter()
            .map(|o| match o {
                AppendOutcome::Accepted { id, .. } => id.clone(),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        let again = s
            .append(vec![
                row("o", "e1", 10, "orders.order.created", &p),
                row("o", "e2", 10, "orders.order.created", &json!({"a": 2})),
                row("o", "e1", 11, "orders.order.created", &p),
                row("other", "e1", 10, "orders.order.created", &p),
                // The same key twice in one batch: the second is a duplicate of the first.
                row("o", "e3", 10, "orders.order.created", &p),
                row("o", "e3", 10, "orders.order.created", &p),
            ])
            .await
            .unwrap();
        assert_eq!(
            again[0],
            AppendOutcome::Duplicate {
                id: ids[0].clone(),
                payload_mismatch: false
            },
            "{name}"
        );
        assert_eq!(
            again[1],
            AppendOutcome::Duplicate {
                id: ids[1].clone(),
                payload_mismatch: true
            },
            "{name}"
        );
        assert!(
            matches!(again[2], AppendOutcome::Accepted { .. }),
            "{name}: another instant is another event"
        );
        assert!(
            matches!(again[3], AppendOutcome::Accepted { .. }),
            "{name}: another org is another event"
        );
        assert!(matches!(again[4], AppendOutcome::Accepted { .. }), "{name}");
        assert!(
            matches!(
                again[5],
                AppendOutcome::Duplicate {
                    payload_mismatch: false,
                    ..
                }
            ),
            "{name}"
        );
        let all = s.page("o", &EventFilter::default(), 0, 100).await.unwrap();
        assert_eq!(all.len(), 4, "{name}: duplicates store nothing");
        let stored: Value = serde_json::from_str(&all[1].body).unwrap();
        assert_eq!(stored["payload"]["a"], 1, "{name}: the first write wins");
    }
}

#[tokio::test]
async fn sequences_increase_and_are_never_reused_after_purge_and_reopen() {
    for (name, s, b) in stores().await {
        let p = json!({});
        let mut last = 0;
        for batch in 0..5 {
            let rows = (0..7)
                .map(|i| row("o", &format!("b{batch}-{i}"), i, "orders.order.created", &p))
                .collect();
            let got = seqs(&s.append(rows).await.unwrap());
            assert_eq!(got.len(), 7, "{name}");
            for q in got {
                assert!(q > last, "{name}: {q} after {last}");
                last = q;
            }
        }
        let page = s.page("o", &EventFilter::default(), 0, 1000).await.unwrap();
        assert!(
            page.windows(2).all(|w| w[0].sequence < w[1].sequence),
            "{name}"
        );
        assert_eq!(s.purged_through().await.unwrap(), 0, "{name}");
        // Purge everything (in chunks if the backend chunks).
        let future = ipm::domain::time::now_millis() + 1_000_000;
        let mut purged = 0;
        loop {
            let n = s.purge_ingested_before(future).await.unwrap();
            if n == 0 {
                break;
            }
            purged += n;
        }
        assert_eq!(purged, 35, "{name}");
        assert_eq!(s.purged_through().await.unwrap(), last, "{name}");
        assert!(
            s.page("o", &EventFilter::default(), 0, 100)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        s.close().await.unwrap();
        let s = b.open().await;
        assert_eq!(
            s.purged_through().await.unwrap(),
            last,
            "{name}: purged_through survives reopen"
        );
        let got = seqs(
            &s.append(vec![row("o", "after", 1, "orders.order.created", &p)])
                .await
                .unwrap(),
        );
        assert!(
            got[0] > last,
            "{name}: sequence {} reused after purge + reopen (last {last})",
            got[0]
        );
        s.close().await.unwrap();
    }
}

#[tokio::test]
async fn pages_filter_and_follow_keyset_positions() {
    for (name, s, _b) in stores().await {
        let p = json!({});
        let mut rows = Vec::new();
        for i in 0..30 {
            let ty = [
                "orders.order.created",
                "orders.order.paid",
                "billing.invoice.created",
            ][i % 3];
            rows.push(row("o", &format!("e{i}"), i as i64, ty, &p));
        }
        rows.push(row("x", "foreign", 0, "orders.order.created", &p));
        s.append(rows).await.unwrap();
        let count = |f: EventFilter| {
            let s = s.clone();
            async move { s.page("o", &f, 0, 1000).await.unwrap().len() }
        };
        assert_eq!(count(EventFilter::default()).await, 30, "{name}");
        assert_eq!(count(filter(&["orders"], &[], None)).await, 20, "{name}");
        assert_eq!(
            count(filter(&["orders", "billing"], &[], None)).await,
            30,
            "{name}"
        );
        assert_eq!(
            count(filter(&[], &["orders.order.paid"], None)).await,
            10,
            "{name}"
        );
        assert_eq!(count(filter(&[], &["orders.*"], None)).await, 20, "{name}");
        assert_eq!(
            count(filter(&[], &["billing.*", "orders.order.paid"], None)).await,
            20,
            "{name}"
        );
        assert_eq!(count(filter(&[], &[], Some("web"))).await, 15, "{name}");
        assert_eq!(
            count(filter(&["orders"], &[], Some("web"))).await,
            10,
            "{name}"
        );
        // Keyset paging: limit respected, pages disjoint and contiguous.
        let mut after = 0;
        let mut seen = 0;
        loop {
            let page = s
                .page("o", &EventFilter::default(), after, 7)
                .await
                .unwrap();
            assert!(page.len() <= 7, "{name}");
            if page.is_empty() {
                break;
            }
            assert!(page[0].sequence > after, "{name}");
            seen += page.len();
            after = page.last().unwrap().sequence;
        }
        assert_eq!(seen, 30, "{name}");
        assert!(
            s.page("nobody", &EventFilter::default(), 0, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn commits_notify_waiters() {
    for (name, s, _b) in stores().await {
        let mut rx = s.commits();
        rx.borrow_and_update();
        s.append(vec![row("o", "n", 1, "orders.order.created", &json!({}))])
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.changed())
            .await
            .unwrap_or_else(|_| panic!("{name}: no commit notification"))
            .unwrap();
    }
}

fn key(id: &str) -> KeyRow {
    KeyRow {
        id: id.into(),
        secret_hash: format!("hash-{id}"),
        role: "publisher".into(),
        org_id: None,
        services: vec!["orders".into()],
        orgs: vec!["org_a".into(), "org_b".into()],
        label: Some("l".into()),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        created_context: Some("{\"request_id\":\"r\"}".into()),
        revoked_at: None,
        revoked_context: None,
    }
}

#[tokio::test]
async fn keys_insert_get_list_revoke() {
    for (name, s, _b) in stores().await {
        assert_eq!(s.count_keys().await.unwrap(), 0, "{name}");
        for i in 0..5 {
            s.insert_key(key(&format!("key_{i}"))).await.unwrap();
        }
        assert!(
            s.insert_key(key("key_0")).await.is_err(),
            "{name}: duplicate key id must fail"
        );
        assert_eq!(s.count_keys().await.unwrap(), 5, "{name}");
        assert_eq!(
            s.get_key("key_3").await.unwrap(),
            Some(key("key_3")),
            "{name}: round trip"
        );
        assert_eq!(s.get_key("key_9").await.unwrap(), None, "{name}");
        let first = s.list_keys(None, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["key_0", "key_1"],
            "{name}"
        );
        let rest = s.list_keys(Some("key_1"), 10).await.unwrap();
        assert_eq!(
            rest.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["key_2", "key_3", "key_4"],
            "{name}"
        );
        assert!(
            s.revoke_key("key_2", "2026-02-01T00:00:00.000Z", "{}")
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !s.revoke_key("key_2", "2026-02-02T00:00:00.000Z", "{}")
                .await
                .unwrap(),
            "{name}: already revoked"
        );
        assert!(
            !s.revoke_key("key_9", "2026-02-02T00:00:00.000Z", "{}")
                .await
                .unwrap(),
            "{name}: missing"
        );
        let k = s.get_key("key_2").await.unwrap().unwrap();
        assert_eq!(
            k.revoked_at.as_deref(),
            Some("2026-02-01T00:00:00.000Z"),
            "{name}"
        );
        assert_eq!(
            s.count_keys().await.unwrap(),
            5,
            "{name}: revoked keys still count"
        );
    }
}

#[tokio::test]
async fn secrets_are_stable_across_reopen_and_ping_works() {
    for (name, s, b) in stores().await {
        s.ping().await.unwrap();
        let a = s.secret("cursor").await.unwrap();
        assert_eq!(a, s.secret("cursor").await.unwrap(), "{name}");
        assert_ne!(
            a,
            s.secret("other").await.unwrap(),
            "{name}: names are independent"
        );
        s.insert_key(key("key_x")).await.unwrap();
        s.close().await.unwrap();
        let s = b.open().await;
        assert_eq!(
            a,
            s.secret("cursor").await.unwrap(),
            "{name}: secret changed across reopen"
        );
        assert!(
            s.get_key("key_x").await.unwrap().is_some(),
            "{name}: keys survive reopen"
        );
        s.close().await.unwrap();
    }
}

/// A test-ping-like delivery of `webhook_id`, due now (its own body, no stored event).
pub fn test_delivery(org: &str, webhook_id: &str, at_ms: i64) -> ipm::store::NewDelivery {
    ipm::store::NewDelivery {
        id: format!("dlv_{}", ulid::Ulid::generate()),
        org_id: org.into(),
        webhook_id: webhook_id.into(),
        event_id: format!("evt_{}", ulid::Ulid::generate()),
        event_type: "ipm.webhook.test".into(),
        sequence: 0,
        body: Some("{}".into()),
        ingested_at_ms: at_ms,
    }
}

fn webhook_row(org: &str) -> ipm::store::WebhookRow {
    ipm::store::WebhookRow {
        id: format!("wh_{}", ulid::Ulid::generate()),
        org_id: org.into(),
        url: "https://example.test/hook".into(),
        filters: "{}".into(),
        mode: "concurrent".into(),
        max_in_flight: 8,
        status: "active".into(),
        secret_sealed: vec![1, 2, 3],
        created_context: "{}".into(),
        ..ipm::store::WebhookRow::default()
    }
}

#[tokio::test]
async fn a_given_back_claim_is_claimable_again_only_with_its_own_token() {
    use ipm::store::ClaimSlot;
    for (name, s, _b) in stores().await {
        let w = webhook_row("org_g");
        s.insert_webhook(w.clone()).await.unwrap();
        let now = ipm::domain::time::now_millis() + 1_000;
        s.enqueue(vec![test_delivery("org_g", &w.id, now)])
            .await
            .unwrap();
        let slot = || {
            vec![ClaimSlot {
                webhook_id: w.id.clone(),
                ordered: false,
                free: 8,
            }]
        };
        let first = s.claim(now, 600_000, "a", slot()).await.unwrap();
        assert_eq!(first.len(), 1, "{name}");
        let c = &first[0];
        assert!(s.claim(now, 600_000, "b", slot()).await.unwrap().is_empty());
        // A stale token gives nothing back; the claim's own token does.
        let stale = vec![(c.id.clone(), c.lease_token - 1)];
        assert_eq!(s.unlease(stale).await.unwrap(), 0, "{name}");
        assert!(s.claim(now, 600_000, "b", slot()).await.unwrap().is_empty());
        let own = vec![(c.id.clone(), c.lease_token)];
        assert_eq!(s.unlease(own.clone()).await.unwrap(), 1, "{name}");
        let again = s.claim(now, 600_000, "b", slot()).await.unwrap();
        assert_eq!(again.len(), 1, "{name}: given back, claimable at once");
        assert_eq!(again[0].id, c.id);
        assert!(
            again[0].lease_token > c.lease_token,
            "{name}: a claim moves the token"
        );
        // The first claimer's late give-back cannot end the new claim.
        assert_eq!(s.unlease(own).await.unwrap(), 0, "{name}");
        assert!(s.claim(now, 600_000, "c", slot()).await.unwrap().is_empty());
        s.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_attempt_finishing_after_a_revoke_leaves_the_delivery_skipped_unless_it_succeeded() {
    use ipm::store::{AttemptRecord, AttemptRow, ClaimSlot};
    for (name, s, _b) in stores().await {
        let w = webhook_row("org_r");
        s.insert_webhook(w.clone()).await.unwrap();
        let now = ipm::domain::time::now_millis() + 1_000;
        s.enqueue(vec![
            test_delivery("org_r", &w.id, now),
            test_delivery("org_r", &w.id, now),
        ])
        .await
        .unwrap();
        let slot = vec![ClaimSlot {
            webhook_id: w.id.clone(),
            ordered: false,
            free: 8,
        }];
        let claimed = s.claim(now, 600_000, "a", slot).await.unwrap();
        assert_eq!(claimed.len(), 2, "{name}");
        // Revoked while both attempts are under way: one fails, one gets its 2xx.
        assert!(s.revoke_webhook("org_r", &w.id, "{}".into()).await.unwrap());
        let record = |c: &ipm::store::Claimed, ok: bool| AttemptRecord {
            delivery_id: c.id.clone(),
            webhook_id: c.webhook_id.clone(),
            lease_token: c.lease_token,
            attempt: AttemptRow {
                attempt: c.attempt,
                started_at: "2026-01-01T00:00:00.000Z".into(),
                duration_ms: 3,
                status_code: Some(if ok { 200 } else { 500 }),
                error: None,
                response_body_excerpt: None,
            },
            started_ms: now,
            success: ok,
            new_status: if ok { "succeeded" } else { "failed" }.into(),
            next_attempt_at_ms: (!ok).then_some(now + 60_000),
        };
        let (failed, ok) = (&claimed[0], &claimed[1]);
        s.record(now, vec![record(failed, false), record(ok, true)])
            .await
            .unwrap();
        let status = |id: String| {
            let s = s.clone();
            let wid = w.id.clone();
            async move {
                s.get_delivery("org_r", &wid, &id)
                    .await
                    .unwrap()
                    .unwrap()
                    .status
            }
        };
        assert_eq!(status(failed.id.clone()).await, "skipped", "{name}");
        assert_eq!(status(ok.id.clone()).await, "succeeded", "{name}");
        s.close().await.unwrap();
    }
}
