//! Which `IPM_*` environment variables are configuration, and configuration errors in words an
//! operator can act on.
//!
//! The known keys come from the [`Config`] type itself (its serde field list and which fields
//! serialize as tables), so a section added to `Config` is picked up without touching this file.
//! Rules for a variable `IPM_<REST>` (matched case-insensitively, like figment's `Env`):
//! - `<REST>` is one of the non-config variables ([`NON_CONFIG_ENV`]) → not configuration, silent;
//! - the part before the first `__` is a top-level key of `Config` → configuration (a misspelt key
//!   inside a known section is then an error naming the variable);
//! - otherwise it is ignored with a warning (Kubernetes injects `IPM_PORT`, `IPM_SERVICE_HOST`, …
//!   for a Service named `ipm`), with a hint when it looks like a section joined by a single `_`
//!   (`IPM_RETENTION_DAYS` → `IPM_RETENTION__DAYS`).
use super::Config;
use serde::Deserializer;
use serde::de::{self, Visitor};

/// `IPM_*` variables that belong to the CLI client, bootstrap or logging, not to the config tree.
pub(super) const NON_CONFIG_ENV: &[&str] = &[
    "admin_key",
    "url",
    "key",
    "config",
    "log",
    "progress",
    "webhook_secret",
];

/// The field names serde's derive hands to `deserialize_struct` for `T` (every key `T` accepts).
fn struct_fields<'de, T: de::Deserialize<'de>>() -> &'static [&'static str] {
    struct Introspect<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Introspect<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("introspected"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect(&mut fields));
    fields
}

/// The top-level keys of [`Config`] and which of them are sections (tables).
pub(super) struct KnownKeys {
    keys: Vec<&'static str>,
    sections: Vec<String>,
}

impl KnownKeys {
    pub(super) fn of_config() -> Self {
        let keys = struct_fields::<Config>().to_vec();
        let sections = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(_, v)| v.is_object())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        };
        Self { keys, sections }
    }

    fn is_key(&self, k: &str) -> bool {
        self.keys.iter().any(|known| known.eq_ignore_ascii_case(k))
    }

    /// The config key path of `IPM_<rest>` when it is configuration (`None` when it is not).
    fn classify(&self, rest: &str) -> Class {
        let lower = rest.to_ascii_lowercase();
        if NON_CONFIG_ENV.contains(&lower.as_str()) {
            return Class::NotConfig;
        }
        let first = lower.split("__").next().unwrap_or_default();
        if self.is_key(first) {
            return Class::Config;
        }
        let hint = self
            .sections
            .iter()
            .find(|s| {
                lower
                    .strip_prefix(s.as_str())
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|r| !r.is_empty() && !r.starts_with('_'))
            })
            .map(|s| {
                format!(
                    "IPM_{}__{}",
                    s.to_uppercase(),
                    rest[s.len() + 1..].to_uppercase()
                )
            });
        Class::Stray { hint }
    }
}

enum Class {
    Config,
    NotConfig,
    Stray { hint: Option<String> },
}

/// The `IPM_*` variables (their part after `IPM_`, as set) that configure `Config`, and the
/// warnings about the ones ignored.
pub(super) struct EnvScan {
    /// Lower-cased `<REST>` of every variable that is configuration.
    pub(super) config: Vec<String>,
    /// One line for the stray variables, one per variable with a `__` hint.
    pub(super) warnings: Vec<String>,
}

/// Sorts the `IPM_*` variables `vars` (names without the prefix) into configuration and strays.
pub(super) fn scan<'a>(vars: impl IntoIterator<Item = &'a str>) -> EnvScan {
    let known = KnownKeys::of_config();
    let mut config = Vec::new();
    let mut stray = Vec::new();
    let mut warnings = Vec::new();
    for rest in vars {
        match known.classify(rest) {
            Class::Config => config.push(rest.to_ascii_lowercase()),
            Class::NotConfig => {}
            Class::Stray { hint: Some(h) } => warnings.push(format!(
                "ignoring IPM_{rest}: not a config key; did you mean {h}? (a section and its key \
                 are joined by a double underscore `__`)"
            )),
            Class::Stray { hint: None } => stray.push(format!("IPM_{rest}")),
        }
    }
    if !stray.is_empty() {
        stray.sort();
        warnings.insert(
            0,
            format!(
                "ignoring environment variables that are not config keys: {} (config variables \
                 are IPM_<KEY> or IPM_<SECTION>__<KEY>, e.g. IPM_LISTEN, IPM_RETENTION__DAYS)",
                stray.join(", ")
            ),
        );
    }
    EnvScan { config, warnings }
}

/// One line per problem of a failed extraction: where the value came from (file, variable or
/// flag), the key and what is wrong with it — without figment's profile prefix (`default.`).
pub(super) fn describe(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match &e.metadata {
                Some(md) if md.name.contains("environment") => {
                    format!(
                        "environment variable IPM_{}",
                        e.path.join("__").to_uppercase()
                    )
                }
                Some(md) => match md.source.as_ref() {
                    Some(figment::Source::File(p)) => format!("config file {}", p.display()),
                    _ if md.name.contains("Flags") => "command-line flag".to_string(),
                    _ => md.name.to_string(),
                },
                None => "configuration".to_string(),
            };
            use figment::error::Kind;
            let what = match &e.kind {
                Kind::UnknownField(_, expected) => {
                    let parent = &e.path[..e.path.len().saturating_sub(1)];
                    let place = if parent.is_empty() {
                        "at the top level".to_string()
                    } else {
                        format!("in [{}]", parent.join("."))
                    };
                    format!(
                        "unknown key `{key}`; the keys {place} are: {}",
                        list(expected)
                    )
                }
                Kind::UnknownVariant(found, expected) => {
                    format!("`{key}` = \"{found}\" is not one of: {}", list(expected))
                }
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    format!("`{key}`: expected {}, found {actual}", plain(expected))
                }
                Kind::InvalidLength(n, expected) => {
                    format!("`{key}`: expected {}, found {n} items", plain(expected))
                }
                Kind::Message(m) => format!("`{key}`: {}", plain(m)),
                other => format!("`{key}`: {}", plain(&other.to_string())),
            };
            format!("invalid configuration: {source}: {what}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

/// serde's "expected" texts quote with backticks (`one of `a`, `b``); drop them.
fn plain(s: &str) -> String {
    s.replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_come_from_the_type() {
        let k = KnownKeys::of_config();
        for key in [
            "listen",
            "data_dir",
            "database_url",
            "webhooks",
            "server",
            "workers",
        ] {
            assert!(k.is_key(key), "{key}");
        }
        assert!(k.sections.iter().any(|s| s == "retention"));
        assert!(!k.sections.iter().any(|s| s == "listen"));
    }

    #[test]
    fn strays_warn_once_and_single_underscores_get_a_hint() {
        let s = scan([
            "PORT",
            "SERVICE_HOST",
            "PORT_8080_TCP_ADDR",
            "PROGRESS",
            "WEBHOOK_SECRET",
            "RETENTION_DAYS",
            "WEBHOOKS__ATTEMPT_TIMOUT_SECS",
            "LISTEN",
            "ADMIN_KEY",
        ]);
        assert_eq!(
            s.config,
            vec!["webhooks__attempt_timout_secs".to_string(), "listen".into()]
        );
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(
            s.warnings[0].contains("IPM_PORT, IPM_PORT_8080_TCP_ADDR, IPM_SERVICE_HOST"),
            "{}",
            s.warnings[0]
        );
        assert!(
            s.warnings[1].contains("did you mean IPM_RETENTION__DAYS"),
            "{}",
            s.warnings[1]
        );
    }
}
