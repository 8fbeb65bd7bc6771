//! Configuration: one typed struct, layered defaults < `ipm.toml` / `--config` < `IPM_*` env < flags.
//! Unknown keys are an error.
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod env;
mod server;

pub use server::{ServerConfig, Worker, WorkersConfig};

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
    pub server: ServerConfig,
    pub workers: WorkersConfig,
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
            server: ServerConfig::default(),
            workers: WorkersConfig::default(),
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
    /// Deprecated: `false` is the old spelling of `workers.enabled = false` (an API-only node);
    /// see [`WorkersConfig`].
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
            return Err(format!(
                "invalid configuration: webhooks.retry_schedule_secs has {} entries: at most 50",
                self.retry_schedule_secs.len()
            ));
        }
        if !(1..=300).contains(&self.attempt_timeout_secs) {
            return Err(format!(
                "invalid configuration: webhooks.attempt_timeout_secs = {}: must be 1..=300",
                self.attempt_timeout_secs
            ));
        }
        if !(1..=256).contains(&self.max_in_flight) {
            return Err(format!(
                "invalid configuration: webhooks.max_in_flight = {}: must be 1..=256",
                self.max_in_flight
            ));
        }
        if self.pause_after_consecutive_failures == 0 {
            return Err(
                "invalid configuration: webhooks.pause_after_consecutive_failures = 0: \
                 must be at least 1"
                    .into(),
            );
        }
        if let Some(k) = &self.encryption_key {
            crate::domain::sealing::Sealer::from_base64(k).map_err(|e| {
                format!(
                    "invalid configuration: webhooks.encryption_key: {e} (expected base64 of 32 \
                     random bytes, e.g. from `openssl rand -base64 32`)"
                )
            })?;
        }
        Ok(())
    }
}

/// `url` with its password replaced by `***` (for messages and logs).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => match url.split_once('@') {
            // Unparseable: keep the scheme and host part only.
            Some((_, host)) => format!("…@{host}"),
            None => url.to_string(),
        },
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

/// Where the config file came from (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    Flag,
    /// `IPM_CONFIG=FILE`.
    Env,
}

/// A loaded config and the warnings to print once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// One line each: ignored `IPM_*` variables, deprecated keys.
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads the layers. `file` is `--config`; without it, `./ipm.toml` is read when present.
    pub fn load(file: Option<&Path>, flags: Flags) -> Result<Config, String> {
        Self::load_reporting(file.map(|f| (f, ConfigSource::Flag)), flags).map(|l| l.config)
    }

    /// Loads the layers and reports what an operator should know: `IPM_*` variables that are not
    /// config keys are ignored with a warning (see [`env`]), a missing config file names the flag
    /// or variable that pointed at it, and every error names the source, the key and the value.
    pub fn load_reporting(
        file: Option<(&Path, ConfigSource)>,
        flags: Flags,
    ) -> Result<Loaded, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some((f, from)) if !f.exists() => {
                let via = match from {
                    ConfigSource::Flag => "--config",
                    ConfigSource::Env => "IPM_CONFIG",
                };
                return Err(format!(
                    "config file {} (from {via}) does not exist",
                    f.display()
                ));
            }
            Some((f, _)) => fig = fig.merge(Toml::file_exact(f)),
            None => fig = fig.merge(Toml::file("ipm.toml")),
        }
        // The names as set (figment's `Env` lower-cases them), prefix matched like figment's.
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("IPM_")))
            .filter_map(|k| k.get(4..).filter(|r| !r.is_empty()).map(str::to_string))
            .collect();
        let scan = env::scan(names.iter().map(String::as_str));
        let keep = scan.config;
        let env = Env::prefixed("IPM_")
            .filter(move |k| keep.iter().any(|c| k.as_str().eq_ignore_ascii_case(c)))
            .split("__");
        let config: Config = fig
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(env::describe)?;
        config.validate()?;
        let mut warnings = scan.warnings;
        if !config.jobs.worker {
            warnings.push(
                "jobs.worker is deprecated: `jobs.worker = false` makes an API-only node (no \
                 background worker of any kind); write `workers.enabled = false` instead, or \
                 `workers.jobs = false` to stop only the job worker"
                    .into(),
            );
        }
        Ok(Loaded { config, warnings })
    }

    /// Whether this node runs the background worker `w` (`workers.*`; the deprecated
    /// `jobs.worker = false` turns every worker off).
    pub fn runs(&self, w: Worker) -> bool {
        let on = self.workers.enabled && self.jobs.worker;
        on && match w {
            Worker::Delivery => self.workers.delivery,
            Worker::Jobs => self.workers.jobs,
            Worker::Retention => self.workers.retention,
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.listen.parse::<std::net::SocketAddr>().map_err(|e| {
            format!(
                "invalid configuration: listen = \"{}\": {e} (expected IP:PORT, e.g. \
                 127.0.0.1:8080 or 0.0.0.0:8080)",
                self.listen
            )
        })?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "invalid configuration: database_url = \"{}\": must start with sqlite:, \
                 postgres:// or postgresql://",
                redact_url(url)
            ));
        }
        for (key, v) in [
            ("export_chunk", self.jobs.export_chunk),
            ("import_chunk", self.jobs.import_chunk),
        ] {
            if v == 0 {
                return Err(format!(
                    "invalid configuration: jobs.{key} = 0: must be at least 1"
                ));
            }
        }
        if self.retention.days == Some(0) {
            return Err(
                "invalid configuration: retention.days = 0: must be at least 1 (or \
                 absent to keep everything)"
                    .into(),
            );
        }
        self.webhooks.validate()?;
        self.server.validate()?;
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
