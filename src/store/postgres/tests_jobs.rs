//! The job queue on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::tests_util::{event, fresh_store};
use crate::store::jobs::{JobErrorRow, JobRow, Jobs};
use crate::store::{AppendOutcome, EventLog};

fn job(id: &str, org: &str, key: Option<&str>) -> JobRow {
    JobRow {
        id: id.into(),
        org_id: org.into(),
        kind: "import".into(),
        status: "upload_complete".into(),
        spec: "{}".into(),
        progress: "{}".into(),
        checkpoint: "{}".into(),
        result: "{}".into(),
        context: "{}".into(),
        idempotency_key: key.map(str::to_string),
        created_at: "2026-01-01T00:00:00Z".into(),
        started_at: None,
        finished_at: None,
        claimed_by: None,
        lease_until: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_idempotency_get_list() {
    let s = fresh_store().await;
    let (a, fresh) = s
        .insert_job(job("imp_1", "org_a", Some("k1")))
        .await
        .unwrap();
    assert!(fresh);
    let (b, fresh) = s
        .insert_job(job("imp_2", "org_a", Some("k1")))
        .await
        .unwrap();
    assert!(!fresh);
    assert_eq!(b, a);
    // Same key in another org, or without a key: new jobs.
    assert!(
        s.insert_job(job("imp_3", "org_b", Some("k1")))
            .await
            .unwrap()
            .1
    );
    assert!(s.insert_job(job("imp_4", "org_a", None)).await.unwrap().1);
    // Concurrent duplicates: exactly one wins, all return it.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_job(job(&format!("imp_c{i}"), "org_a", Some("race")))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (j, fresh) = t.await.unwrap();
        winners += usize::from(fresh);
        ids.insert(j.id);
    }
    assert_eq!(winners, 1);
    assert_eq!(ids.len(), 1);

    assert_eq!(
        s.get_job("org_a", "import", "imp_1").await.unwrap(),
        Some(a)
    );
    assert_eq!(s.get_job("org_b", "import", "imp_1").await.unwrap(), None);
    assert_eq!(s.get_job("org_a", "export", "imp_1").await.unwrap(), None);
    let list = s.list_jobs("org_a", "import", None, 2).await.unwrap();
    assert_eq!(
        list.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["imp_1", "imp_4"]
    );
    let list = s
        .list_jobs("org_a", "import", Some("imp_4"), 10)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    let counts = s.job_counts().await.unwrap();
    assert!(counts.contains(&("import".into(), "upload_complete".into(), 4)));
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_leases_and_fences() {
    let s = fresh_store().await;
    s.insert_job(job("imp_1", "org_a", None)).await.unwrap();
    let mut done = job("imp_0", "org_a", None);
    done.status = "completed".into();
    s.insert_job(done).await.unwrap();

    let j = s.claim_job("w1", 1_000, 500).await.unwrap().unwrap();
    assert_eq!(j.id, "imp_1");
    assert_eq!(j.claimed_by.as_deref(), Some("w1"));
    assert_eq!(j.lease_until, Some(1_500));
    // Leased: nothing for w2; w1 may re-claim (extends).
    assert!(s.claim_job("w2", 1_200, 500).await.unwrap().is_none());
    assert_eq!(
        s.claim_job("w1", 1_300, 500)
            .await
            .unwrap()
            .unwrap()
            .lease_until,
        Some(1_800)
    );
    // After expiry w2 takes it over.
    let j2 = s.claim_job("w2", 1_900, 500).await.unwrap().unwrap();
    assert_eq!(j2.claimed_by.as_deref(), Some("w2"));

    // The stale worker's write is fenced off; the owner's passes.
    let mut stale = j.clone();
    stale.progress = "{\"stale\":true}".into();
    assert!(
        !s.update_job(stale, "upload_complete", Some("w1"))
            .await
            .unwrap()
    );
    let mut next = j2.clone();
    next.status = "in_progress".into();
    assert!(
        !s.update_job(next.clone(), "queued", Some("w2"))
            .await
            .unwrap()
    );
    assert!(
        s.update_job(next.clone(), "upload_complete", Some("w2"))
            .await
            .unwrap()
    );
    // Unfenced write (e.g. cancel) only checks the status.
    let mut cancel = next.clone();
    cancel.progress = "{\"p\":1}".into();
    assert!(s.update_job(cancel, "in_progress", None).await.unwrap());
    assert_eq!(
        s.get_job("org_a", "import", "imp_1")
            .await
            .unwrap()
            .unwrap()
            .progress,
        "{\"p\":1}"
    );

    // Concurrent claims of many jobs by many workers: each job goes to exactly one.
    for i in 0..20 {
        s.insert_job(job(&format!("imp_m{i:02}"), "org_a", None))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s
                .claim_job(&format!("cw{w}"), 10_000, 60_000)
                .await
                .unwrap()
            {
                if !j.id.starts_with("imp_m") {
                    // imp_1 is leased by w2 until 2_400 < 10_000: claimable too; park it.
                    let mut d = j.clone();
                    d.status = "completed".into();
                    assert!(
                        s.update_job(d, &j.status, j.claimed_by.as_deref())
                            .await
                            .unwrap()
                    );
                    continue;
                }
                let mut d = j.clone();
                d.status = "completed".into();
                assert!(
                    s.update_job(d, &j.status, j.claimed_by.as_deref())
                        .await
                        .unwrap()
                );
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let expect: Vec<String> = (0..20).map(|i| format!("imp_m{i:02}")).collect();
    assert_eq!(all, expect);
}

#[tokio::test(flavor = "multi_thread")]
async fn append_with_job_commits_or_rolls_back() {
    let s = fresh_store().await;
    s.insert_job(job("imp_1", "org_a", None)).await.unwrap();
    let j = s.claim_job("w1", 1_000, 10_000).await.unwrap().unwrap();

    let base = j.clone();
    let out = s
        .append_with_job(
            vec![event("org_a", "e1", "t.a"), event("org_a", "e2", "t.a")],
            vec![JobErrorRow {
                line: 3,
                event_id: None,
                code: "invalid".into(),
                message: "bad".into(),
            }],
            ("org_a".into(), "imp_1".into()),
            "upload_complete",
            "w1",
            Box::new(move |o: &[AppendOutcome]| {
                let mut n = base;
                n.status = "in_progress".into();
                n.progress = format!("{{\"accepted\":{}}}", o.len());
                n
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0], AppendOutcome::Accepted { .. }));
    let head = s.head("org_a").await.unwrap();
    assert!(head > 0);
    let got = s
        .get_job("org_a", "import", "imp_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, "in_progress");
    assert_eq!(got.progress, "{\"accepted\":2}");
    let errs = s.job_errors("org_a", "imp_1", 0, 10).await.unwrap();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 3);

    // A stale fence: nothing is written (no events, no errors, no job change).
    let base = got.clone();
    let r = s
        .append_with_job(
            vec![event("org_a", "e3", "t.a")],
            vec![JobErrorRow {
                line: 9,
                event_id: Some("e9".into()),
                code: "invalid".into(),
                message: "bad".into(),
            }],
            ("org_a".into(), "imp_1".into()),
            "in_progress",
            "w_stale",
            Box::new(move |_| {
                let mut n = base;
                n.progress = "{\"x\":1}".into();
                n
            }),
        )
        .await
        .unwrap();
    assert!(r.is_none());
    assert_eq!(s.head("org_a").await.unwrap(), head);
    assert_eq!(
        s.job_errors("org_a", "imp_1", 0, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.get_job("org_a", "import", "imp_1")
            .await
            .unwrap()
            .unwrap(),
        got
    );

    // A wrong expected status also rolls back; a duplicate event is reported as such.
    let base = got.clone();
    let r = s
        .append_with_job(
            vec![event("org_a", "e1", "t.a")],
            vec![],
            ("org_a".into(), "imp_1".into()),
            "in_progress",
            "w1",
            Box::new(move |_| base),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r[0], AppendOutcome::Duplicate { .. }));
}
