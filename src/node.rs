//! This process's identity as a node: an exclusive lock on its data dir and a node id kept there.
//!
//! - **One process per data dir.** `ipm.lock` is held (an OS file lock, released by the kernel
//!   even on `kill -9`) for the life of the process, so two processes never share the SQLite
//!   file, the sealing key file or the job files — nor a node id.
//! - **A stable node id** (`node-id`, `node_<ULID>`, created on first start). Workers lease
//!   work under it (`claimed_by`), so a restarted node recognises its previous incarnation's
//!   leases and releases them at once instead of waiting for them to lapse. The store must
//!   confirm the id is not live elsewhere ([`crate::store::Meta::hold_node`]): a data dir copied
//!   to another machine (e.g. baked into an image) gets a fresh id for the run instead.
use anyhow::Context;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

/// The held data-dir lock and the node id stored beside it.
#[derive(Debug)]
pub struct NodeDir {
    /// `node_<ULID>` from `node-id`.
    pub id: String,
    /// Held for the life of the process (dropping it releases the lock).
    _lock: File,
}

/// A fresh node id (also the fallback when the stored one is live elsewhere).
pub fn fresh_id() -> String {
    format!("node_{}", ulid::Ulid::generate())
}

impl NodeDir {
    /// Locks `dir` (creating it) and reads or creates its node id. Fails when another process
    /// holds the lock.
    pub fn open(dir: &Path) -> anyhow::Result<NodeDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let path = dir.join("ipm.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "another ipm process is using the data dir {} (it holds {}); each process \
                 needs its own data dir",
                dir.display(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let id = read_or_create_id(&dir.join("node-id"))?;
        Ok(NodeDir { id, _lock: lock })
    }
}

fn valid(id: &str) -> bool {
    id.strip_prefix("node_")
        .is_some_and(|u| ulid::Ulid::from_string(u).is_ok())
}

/// The id in `path`, or a new one written there (through a temporary file and a rename, so a
/// crash never leaves a half-written id).
fn read_or_create_id(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if valid(s.trim()) => return Ok(s.trim().to_string()),
        Ok(s) => anyhow::bail!(
            "{} holds {:?}, not a node id (node_<ULID>); delete it to get a new one",
            path.display(),
            s.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = fresh_id();
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(format!("{id}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_and_the_dir_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeDir::open(dir.path()).unwrap();
        assert!(valid(&first.id), "{}", first.id);
        let err = NodeDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another ipm process"), "{err}");
        let id = first.id.clone();
        drop(first);
        let again = NodeDir::open(dir.path()).unwrap();
        assert_eq!(again.id, id, "the node id survives a restart");
    }

    #[test]
    fn a_damaged_id_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node-id"), "garbage").unwrap();
        let err = NodeDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a node id"), "{err}");
    }
}
