//! Job files in PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::tests_util::fresh_store;
use crate::store::files::FileStore;
use std::io::Write;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn append_truncate_commit_read() {
    let s = fresh_store().await;
    let fs: Arc<dyn FileStore> = s.files();
    let data = pattern(3 * (1 << 20) + (1 << 19)); // 3.5 MiB
    let (f, d) = (fs.clone(), data.clone());
    blocking(move || {
        let mut w = f.append_at("org", "job", "a.part", 0).unwrap();
        // Odd-sized writes, so chunks do not line up with writes.
        for part in d.chunks(100_003) {
            w.write_all(part).unwrap();
        }
        w.sync().unwrap();
    })
    .await;
    // Crash-style re-append at an earlier offset (inside the second chunk) truncates.
    let cut = (1 << 20) + 12_345;
    let f = fs.clone();
    blocking(move || {
        let mut w = f.append_at("org", "job", "a.part", cut as u64).unwrap();
        w.write_all(b"tail!").unwrap();
        w.sync().unwrap();
        // Past the end is refused.
        assert!(f.append_at("org", "job", "a.part", 10 << 20).is_err());
        // A missing file cannot be appended to at an offset.
        assert!(f.append_at("org", "job", "missing", 5).is_err());
    })
    .await;
    let mut expect = data[..cut].to_vec();
    expect.extend_from_slice(b"tail!");

    // Commit is idempotent; uncommit moves back only when the temp is missing.
    let f = fs.clone();
    blocking(move || {
        f.commit("org", "job", "a.part", "a").unwrap();
        f.commit("org", "job", "a.part", "a").unwrap();
        assert!(f.commit("org", "job", "nope.part", "nope").is_err());
        f.uncommit("org", "job", "a.part", "a").unwrap();
        f.uncommit("org", "job", "a.part", "a").unwrap();
        f.commit("org", "job", "a.part", "a").unwrap();
    })
    .await;
    assert!(fs.open("org", "job", "a.part").await.unwrap().is_none());

    // read_at across a chunk boundary and at the end; read_prefix.
    let (f, e) = (fs.clone(), expect.clone());
    blocking(move || {
        let at = (1 << 20) - 10;
        assert_eq!(
            f.read_at("org", "job", "a", at as u64, 30).unwrap(),
            e[at..at + 30]
        );
        assert_eq!(f.read_at("org", "job", "a", 0, 7).unwrap(), e[..7]);
        let end = e.len() - 3;
        assert_eq!(
            f.read_at("org", "job", "a", end as u64, 100).unwrap(),
            e[end..]
        );
        assert!(
            f.read_at("org", "job", "a", e.len() as u64 + 5, 10)
                .unwrap()
                .is_empty()
        );
        assert!(f.read_at("org", "job", "missing", 0, 10).is_err());
        let mut got = Vec::new();
        f.read_prefix("org", "job", "a", (1 << 20) + 7, &mut |b| {
            got.extend_from_slice(b)
        })
        .unwrap();
        assert_eq!(got, e[..(1 << 20) + 7]);
        let mut got = Vec::new();
        f.read_prefix("org", "job", "a", u64::MAX >> 2, &mut |b| {
            got.extend_from_slice(b)
        })
        .unwrap();
        assert_eq!(got, e);
    })
    .await;

    // Streaming the whole file.
    let (mut r, len) = fs.open("org", "job", "a").await.unwrap().unwrap();
    assert_eq!(len, expect.len() as u64);
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, expect);

    // A full 3.5 MiB round trip, and an empty file.
    let (f, d) = (fs.clone(), data.clone());
    blocking(move || {
        let mut w = f.append_at("org", "job", "b", 0).unwrap();
        w.write_all(&d).unwrap();
        w.sync().unwrap();
        let mut w = f.append_at("org", "job", "empty", 0).unwrap();
        w.sync().unwrap();
    })
    .await;
    let (mut r, len) = fs.open("org", "job", "b").await.unwrap().unwrap();
    assert_eq!(len, data.len() as u64);
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, data);
    let (mut r, len) = fs.open("org", "job", "empty").await.unwrap().unwrap();
    assert_eq!(len, 0);
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty());

    // Another job's files are untouched by delete_job.
    let f = fs.clone();
    blocking(move || {
        let mut w = f.append_at("org", "job2", "c", 0).unwrap();
        w.write_all(b"keep").unwrap();
        w.sync().unwrap();
        f.delete_job("org", "job").unwrap();
        f.delete_job("org", "job").unwrap();
    })
    .await;
    assert!(fs.open("org", "job", "a").await.unwrap().is_none());
    assert!(fs.open("org", "job", "b").await.unwrap().is_none());
    assert_eq!(fs.open("org", "job2", "c").await.unwrap().unwrap().1, 4);

    // Called directly from an async task (as the export worker's resume path does).
    let mut got = Vec::new();
    fs.read_prefix("org", "job2", "c", 4, &mut |b| got.extend_from_slice(b))
        .unwrap();
    assert_eq!(got, b"keep");
}
