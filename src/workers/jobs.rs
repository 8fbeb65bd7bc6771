//! The job worker: claims one runnable job at a time and advances it by one chunk, ending each
//! step with a checkpoint in the store.
//!
//! Crash-resume invariant: the store's checkpoint is the truth. Bytes a job wrote to its files
//! after its last checkpoint are cut off when it resumes ([`crate::store::files::FileStore::append_at`]),
//! and import chunks commit their events, rejected lines and checkpoint in one transaction, so
//! a `kill -9` at any point leaves no duplicated or missing line.
use crate::service::Services;
use crate::service::jobs::JobEnv;
use crate::store::StoreError;
use crate::store::jobs::{JobRow, KIND_EXPORT};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Tuning of the job worker.
#[derive(Debug, Clone)]
pub struct JobTuning {
    /// How long a claim holds without a checkpoint before another worker may take the job.
    pub lease: Duration,
    /// Events written per export step.
    pub export_chunk: usize,
    /// Lines processed per import step.
    pub import_chunk: usize,
    /// Pause between polls when there is no work.
    pub idle: Duration,
}

impl Default for JobTuning {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            export_chunk: 20_000,
            import_chunk: 10_000,
            idle: Duration::from_millis(250),
        }
    }
}

/// Why a step stopped short.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The store failed; the job is retried on a later step.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job cannot go on (bad file, I/O failure); it is marked failed.
    #[error("{0}")]
    Fatal(String),
}

impl From<crate::service::ServiceError> for StepError {
    fn from(e: crate::service::ServiceError) -> Self {
        match e {
            crate::service::ServiceError::Store(s) => StepError::Store(s),
            other => StepError::Fatal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        StepError::Fatal(format!("file store: {e}"))
    }
}

/// The running hash of an export file being written, kept between steps.
pub(crate) struct OpenFile {
    pub name: String,
    pub offset: u64,
    pub hasher: Sha256,
}

/// Runs export and import jobs.
pub struct JobWorker {
    pub(crate) services: Arc<Services>,
    pub(crate) env: Arc<JobEnv>,
    pub(crate) id: String,
    pub(crate) tuning: JobTuning,
    pub(crate) open_files: Mutex<HashMap<String, OpenFile>>,
}

impl JobWorker {
    /// A worker claiming jobs under `node` (this process's node id, [`crate::node`]): after a
    /// restart it takes its own claimed jobs back at once instead of waiting for their leases.
    pub fn new(services: Arc<Services>, env: Arc<JobEnv>, tuning: JobTuning, node: &str) -> Self {
        Self {
            services,
            env,
            id: node.to_string(),
            tuning,
            open_files: Mutex::new(HashMap::new()),
        }
    }

    /// This worker's id (what `claimed_by` holds).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// One step: claims a runnable job and advances it by one chunk. False when there was no
    /// job to work on.
    pub async fn run_once(&self) -> Result<bool, StoreError> {
        let now = crate::domain::time::now_millis();
        let lease = self.tuning.lease.as_millis() as i64;
        let Some(job) = self.services.store.claim_job(&self.id, now, lease).await? else {
            return Ok(false);
        };
        let r = if job.kind == KIND_EXPORT {
            self.export_step(job.clone()).await
        } else {
            self.import_step(job.clone()).await
        };
        match r {
            Ok(()) => Ok(true),
            Err(StepError::Store(e)) => Err(e),
            Err(StepError::Fatal(m)) => {
                tracing::warn!(job = %job.id, error = %m, "job failed");
                self.fail(job, m).await?;
                Ok(true)
            }
        }
    }

    /// Runs steps until there is no work, then returns how many were done (tests).
    pub async fn run_until_idle(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        while self.run_once().await? {
            n += 1;
        }
        Ok(n)
    }

    /// Marks a job failed with a message.
    async fn fail(&self, mut job: JobRow, message: String) -> Result<(), StoreError> {
        let expect = job.status.clone();
        let mut result: serde_json::Value =
            serde_json::from_str(&job.result).unwrap_or_else(|_| serde_json::json!({}));
        if let Some(errors) = result.get_mut("errors").and_then(|e| e.as_array_mut()) {
            errors.push(message.into());
        } else {
            result["errors"] = serde_json::json!([message]);
        }
        job.result = result.to_string();
        job.status = "failed".into();
        job.finished_at = Some(crate::domain::time::now_rfc3339());
        job.claimed_by = None;
        job.lease_until = None;
        let fence = self.id.clone();
        self.services
            .store
            .update_job(job, &expect, Some(&fence))
            .await?;
        Ok(())
    }

    /// Sets the `ipm_jobs{kind, status}` gauges from the store.
    async fn record_gauges(&self) {
        if let Ok(counts) = self.services.store.job_counts().await {
            for (kind, status, n) in counts {
                metrics::gauge!("ipm_jobs", "kind" => kind, "status" => status).set(n as f64);
            }
        }
    }

    /// Runs until cancelled: works while there is work, then polls.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_gauges = std::time::Instant::now() - Duration::from_secs(60);
            loop {
                if stop.is_cancelled() {
                    return;
                }
                if last_gauges.elapsed() >= Duration::from_secs(5) {
                    last_gauges = std::time::Instant::now();
                    self.record_gauges().await;
                }
                let pause = match self.run_once().await {
                    Ok(true) => None,
                    Ok(false) => Some(self.tuning.idle),
                    Err(e) => {
                        tracing::warn!(error = %e, "job step failed; retrying");
                        Some(Duration::from_secs(1))
                    }
                };
                if let Some(p) = pause {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(p) => {}
                    }
                }
            }
        })
    }
}
