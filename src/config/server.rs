//! `server.*` (the HTTP connection layer's timeouts and connection cap) and `workers.*` (which
//! background workers this node runs).
use serde::{Deserialize, Serialize};

/// `server.*`: limits of the connection layer ([`crate::server`]). Every connection is bounded
/// in time, and the number of connections is bounded below the open-files limit, so clients that
/// connect and stall cannot take the server away from everyone else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Seconds a client has to send a complete request head (request line and headers): from the
    /// moment the connection opens, and on HTTP/1.1 from the moment the server waits for the next
    /// request of a kept-alive connection. On expiry the connection is closed (HTTP/1.1 answers
    /// `408` first).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection that has served a request may sit with no request in flight before
    /// it is closed (HTTP/1.1 keep-alive and h2c alike).
    pub idle_timeout_secs: u64,
    /// Seconds a request body may stall — no bytes arriving — before the request fails. Measured
    /// between chunks, so an upload that keeps sending, however slowly, is never cut.
    pub body_read_timeout_secs: u64,
    /// Most connections served at once; absent = half the open-files limit, at most 10,000.
    /// Further connections wait in the listen backlog until one closes.
    pub max_connections: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 30,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 60,
            max_connections: None,
        }
    }
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
        ] {
            if !(1..=3600).contains(&v) {
                return Err(format!(
                    "invalid configuration: server.{key} = {v}: must be 1..=3600 seconds"
                ));
            }
        }
        if self.max_connections == Some(0) {
            return Err(
                "invalid configuration: server.max_connections = 0: must be at least 1 \
                 (or absent for half the open-files limit)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `workers.*`: which background workers `ipm serve` runs on this node. Several nodes on one
/// PostgreSQL database may split the work: an API-only node (`enabled = false`) serves HTTP and
/// leaves deliveries, jobs and purges to the nodes that run workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Master switch: `false` = an API-only node, no background worker of any kind.
    pub enabled: bool,
    /// The webhook delivery worker (sends, retries, auto-pause).
    pub delivery: bool,
    /// The export/import job worker.
    pub jobs: bool,
    /// The retention worker (purges events older than `retention.days`, when set).
    pub retention: bool,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            delivery: true,
            jobs: true,
            retention: true,
        }
    }
}

/// A kind of background worker (see [`super::Config::runs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worker {
    Delivery,
    Jobs,
    Retention,
}

impl Worker {
    /// Every kind, in the order the startup log lists them.
    pub const ALL: [Worker; 3] = [Worker::Delivery, Worker::Jobs, Worker::Retention];

    /// The kind's key under `workers.*`.
    pub fn key(self) -> &'static str {
        match self {
            Worker::Delivery => "delivery",
            Worker::Jobs => "jobs",
            Worker::Retention => "retention",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn worker_switches_and_the_deprecated_jobs_worker() {
        let mut c = Config::default();
        assert!(Worker::ALL.iter().all(|w| c.runs(*w)));
        c.workers.delivery = false;
        assert!(!c.runs(Worker::Delivery) && c.runs(Worker::Jobs) && c.runs(Worker::Retention));
        c.workers.delivery = true;
        c.workers.enabled = false;
        assert!(Worker::ALL.iter().all(|w| !c.runs(*w)));
        // `jobs.worker = false` was documented as an API-only node: it turns every worker off.
        let mut old = Config::default();
        old.jobs.worker = false;
        assert!(Worker::ALL.iter().all(|w| !old.runs(*w)));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn stray_variables_start_with_warnings_and_deprecations_warn() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IPM_PORT", "tcp://10.0.0.1:8080");
            jail.set_env("IPM_SERVICE_HOST", "10.0.0.1");
            jail.set_env("IPM_RETENTION_DAYS", "3");
            jail.set_env("IPM_JOBS__WORKER", "false");
            jail.set_env("IPM_SERVER__IDLE_TIMEOUT_SECS", "5");
            let l =
                Config::load_reporting(None, Default::default()).map_err(figment::Error::from)?;
            assert_eq!(l.config.server.idle_timeout_secs, 5);
            assert_eq!(l.config.retention.days, None);
            assert_eq!(l.warnings.len(), 3, "{:?}", l.warnings);
            assert!(
                l.warnings
                    .iter()
                    .any(|w| w.contains("jobs.worker is deprecated"))
            );
            jail.set_env("IPM_SERVER__IDLE_TIMEOUT", "5");
            let e = Config::load_reporting(None, Default::default()).unwrap_err();
            assert!(
                e.contains("IPM_SERVER__IDLE_TIMEOUT") && e.contains("idle_timeout_secs"),
                "{e}"
            );
            Ok(())
        });
    }
}
