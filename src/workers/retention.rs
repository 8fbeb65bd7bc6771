//! Retention: purges events older than `retention.days`.
use crate::store::{DynStore, StoreResult};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Purges events ingested before now − `days`.
pub struct RetentionWorker {
    store: DynStore,
    days: u32,
}

impl RetentionWorker {
    pub fn new(store: DynStore, days: u32) -> Self {
        Self { store, days }
    }

    /// One step: purges one chunk; returns how many events were removed (0 = nothing left).
    pub async fn run_once(&self) -> StoreResult<u64> {
        self.run_once_at(crate::domain::time::now_millis()).await
    }

    /// [`Self::run_once`] as if the clock read `now_ms` (Unix ms), so tests can drive retention
    /// deterministically.
    pub async fn run_once_at(&self, now_ms: i64) -> StoreResult<u64> {
        let cutoff = now_ms - i64::from(self.days) * 86_400_000;
        self.store.purge_ingested_before(cutoff).await
    }

    /// Runs until cancelled: purges everything due, then sleeps a minute.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                loop {
                    match self.run_once().await {
                        Ok(0) => break,
                        Ok(n) => tracing::info!(purged = n, "retention purged events"),
                        Err(e) => {
                            tracing::warn!(error = %e, "retention purge failed");
                            break;
                        }
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        })
    }
}
