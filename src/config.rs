//! Configuration: one typed struct, layered defaults < `ipm.toml` / `--config` < `IPM_*` env < flags.
//! Unknown keys are an error.
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `IPM_*` variables that belong to the CLI client, bootstrap or logging (`IPM_LOG`), not to the
/// config tree.
const NON_CONFIG_ENV: &[&str] = &["admin_key", "url", "key", "config", "log"];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Where the embedded store (and other local files) live.
    pub data_dir: PathBuf,
    /// A store URL; absent = SQLite file `ipm.sqlite3` in `data_dir`.
    pub database_url: Option<String>,
    pub catalog: CatalogConfig,
    pub retention: RetentionConfig,
    pub jobs: JobsConfig,
    pub webhooks: WebhooksConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./ipm-data"),
            database_url: None,
            catalog: CatalogConfig::default(),
            retention: RetentionConfig::default(),
            jobs: JobsConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

/// `catalog.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// A catalog directory; absent = the embedded example catalog.
    pub dir: Option<PathBuf>,
    pub unknown_types: UnknownTypes,
    pub validation: ValidationMode,
}

/// What ingest does with event types the catalog does not know.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTypes {
    #[default]
    Reject,
    Accept,
}

/// What ingest does with payloads that fail their schema.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    #[default]
    Reject,
    Warn,
    Off,
}

/// `retention.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Purge events ingested more than this many days ago; absent = keep everything.
    pub days: Option<u32>,
}

/// `jobs.*` (export and import jobs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Largest total upload of one import job, in bytes (default 1 GiB).
    pub max_import_bytes: u64,
    /// Seconds a worker's claim on a job holds without progress before another worker (or a
    /// restarted process) may take the job over.
    pub lease_secs: u64,
    /// Run the job worker in this process (turn off for API-only nodes, or in tests that drive
    /// the worker step by step).
    pub worker: bool,
    /// Events an export writes per step (one checkpoint each).
    pub export_chunk: usize,
    /// Lines an import processes per step (one transaction and checkpoint each).
    pub import_chunk: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_import_bytes: 1 << 30,
            lease_secs: 30,
            worker: true,
            export_chunk: 20_000,
            import_chunk: 10_000,
        }
    }
}

/// `webhooks.*` (SPEC §10).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// CIDRs that may be targeted although not globally routable (e.g. `127.0.0.0/8` for tests).
    pub allow_private_targets: Vec<String>,
    /// Seconds between attempts after each failure (±20 % jitter); its length is the retry count.
    pub retry_schedule_secs: Vec<u64>,
    /// Seconds one attempt may take (connect + answer).
    pub attempt_timeout_secs: u64,
    /// Auto-pause after this many attempts in a row failed …
    pub pause_after_consecutive_failures: u32,
    /// … and the first of them is at least this old.
    pub pause_min_failing_secs: u64,
    /// Default attempts in flight per webhook.
    pub max_in_flight: u32,
    /// Base64 of 32 bytes sealing signing secrets at rest; absent = `webhook-secrets.key` (0600)
    /// in `data_dir`, created on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: Vec::new(),
            retry_schedule_secs: crate::domain::webhook::DEFAULT_RETRY_SCHEDULE.to_vec(),
            attempt_timeout_secs: 15,
            pause_after_consecutive_failures: 20,
            pause_min_failing_secs: 3600,
            max_in_flight: 8,
            encryption_key: None,
        }
    }
}

impl WebhooksConfig {
    fn validate(&self) -> Result<(), String> {
        crate::domain::ssrf::AllowList::parse(&self.allow_private_targets)
            .map_err(|e| format!("invalid configuration: webhooks.allow_private_targets: {e}"))?;
        if self.retry_schedule_secs.len() > 50 {
            return Err(
                "invalid configuration: webhooks.retry_schedule_secs has more than 50 entries"
                    .into(),
            );
        }
        if !(1..=300).contains(&self.attempt_timeout_secs) {
            return Err(
                "invalid configuration: webhooks.attempt_timeout_secs must be 1..=300".into(),
            );
        }
        if !(1..=256).contains(&self.max_in_flight) {
            return Err("invalid configuration: webhooks.max_in_flight must be 1..=256".into());
        }
        if self.pause_after_consecutive_failures == 0 {
            return Err("invalid configuration: webhooks.pause_after_consecutive_failures must be at least 1".into());
        }
        if let Some(k) = &self.encryption_key {
            crate::domain::sealing::Sealer::from_base64(k)
                .map_err(|e| format!("invalid configuration: webhooks.encryption_key: {e}"))?;
        }
        Ok(())
    }
}

/// Values given as command-line flags (highest precedence).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<FlagCatalog>,
}

/// `--catalog` as a nested flag value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagCatalog {
    pub dir: PathBuf,
}

impl Config {
    /// Loads the layers. `file` is `--config`; without it, `./ipm.toml` is read when present.
    pub fn load(file: Option<&Path>, flags: Flags) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) if !f.exists() => {
                return Err(format!("config file {} does not exist", f.display()));
            }
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None => fig = fig.merge(Toml::file("ipm.toml")),
        }
        let env = Env::prefixed("IPM_").split("__").filter(|k| {
            !NON_CONFIG_ENV
                .iter()
                .any(|n| k.as_str().eq_ignore_ascii_case(n))
        });
        let config: Config = fig
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("invalid configuration: listen `{}`: {e}", self.listen))?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err("invalid configuration: database_url must start with sqlite:, postgres:// or postgresql://".into());
        }
        if self.jobs.export_chunk == 0 || self.jobs.import_chunk == 0 {
            return Err(
                "invalid configuration: jobs.export_chunk and jobs.import_chunk must be at least 1"
                    .into(),
            );
        }
        if self.retention.days == Some(0) {
            return Err("invalid configuration: retention.days must be at least 1".into());
        }
        self.webhooks.validate()?;
        Ok(())
    }

    /// The SQLite file path this config points at.
    pub fn sqlite_path(&self) -> PathBuf {
        match self
            .database_url
            .as_deref()
            .and_then(|u| u.strip_prefix("sqlite:"))
        {
            Some(p) => PathBuf::from(p.trim_start_matches("//")),
            None => self.data_dir.join("ipm.sqlite3"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)]
    fn layers_and_unknown_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ipm.toml",
                "listen = \"127.0.0.1:9000\"\n[retention]\ndays = 7\n",
            )?;
            jail.set_env("IPM_RETENTION__DAYS", "9");
            jail.set_env("IPM_ADMIN_KEY", "ignored");
            let c = Config::load(None, Flags::default()).map_err(figment::Error::from)?;
            assert_eq!(c.listen, "127.0.0.1:9000");
            assert_eq!(c.retention.days, Some(9));
            let c = Config::load(
                None,
                Flags {
                    listen: Some("127.0.0.1:1".into()),
                    ..Default::default()
                },
            )
            .map_err(figment::Error::from)?;
            assert_eq!(c.listen, "127.0.0.1:1");
            jail.create_file("ipm.toml", "lisen = \"x\"\n")?;
            let e = Config::load(None, Flags::default()).unwrap_err();
            assert!(e.contains("lisen"), "{e}");
            Ok(())
        });
    }
}
