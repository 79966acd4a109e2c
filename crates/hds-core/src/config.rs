//! Settings from a TOML file, then `HDS_*` environment variables, then command-line flags
//! (each overriding the one before), deserialized into a service's own settings struct.
//!
//! Environment variables nest with `__`: `HDS_DATABASE__URL=postgres://...` sets
//! `database.url`, `HDS_BUS__KAFKA__BROKERS=...` sets `bus.kafka.brokers`. Every struct
//! denies unknown fields, so a misspelt key is reported with its path instead of ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::blob::local::LocalBlobSettings;
use crate::blob::s3::S3Settings;
use crate::bus::embedded::EmbeddedBusSettings;
use crate::bus::kafka::KafkaSettings;

pub const ENV_PREFIX: &str = "HDS_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment reports one error per bad key; name them all.
        let all: Vec<String> = e.into_iter().map(describe).collect();
        ConfigError::Invalid(all.join("; "))
    }
}

fn describe(e: figment::Error) -> String {
    let key = if e.path.is_empty() {
        None
    } else {
        Some(e.path.join("."))
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(s) => format!(" (from {} {s})", m.name),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    match key {
        Some(k) => format!("key '{k}': {}{source}", e.kind),
        None => format!("{}{source}", e.kind),
    }
}

/// Loads settings: `defaults`, then `file` (which must exist if given), then `HDS_*`
/// environment variables, then `flags` (`("http.bind", "0.0.0.0:8080")`, ...).
pub fn load<T>(
    defaults: &T,
    file: Option<&Path>,
    flags: Vec<(&'static str, figment::value::Value)>,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError::MissingFile(file.to_owned()));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(settings_env(defaults));
    for (key, value) in flags {
        figment = figment.merge((key, value));
    }
    Ok(figment.extract()?)
}

/// Deserializes a number or boolean from itself or from its text: environment variables are
/// text, TOML files have types, and both must fill the same fields.
pub fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ValueOrText<T> {
        Value(T),
        Text(String),
    }
    match ValueOrText::<T>::deserialize(deserializer)? {
        ValueOrText::Value(v) => Ok(v),
        ValueOrText::Text(s) => s
            .trim()
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}"))),
    }
}

/// `HDS_SECTION__KEY` variables whose first segment is one of the settings' own sections.
/// Other `HDS_*` variables (`HDS_CONFIG`, the test suite's `HDS_TEST_*`) are not settings.
///
/// Values stay text: figment's own `Env` guesses types, which turns a password `true` into a
/// boolean and `[x]` into an array. Text still fills numeric and boolean fields.
fn settings_env<T: Serialize>(defaults: &T) -> EnvText {
    let sections: Vec<String> = match serde_json::to_value(defaults) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let prefix = ENV_PREFIX.to_ascii_lowercase();
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter_map(|(key, value)| {
            let lower = key.to_ascii_lowercase();
            let path = lower.strip_prefix(&prefix)?.replace("__", ".");
            let section = path.split('.').next()?;
            sections
                .iter()
                .any(|s| s == section)
                .then_some((path, value))
        })
        .collect();
    EnvText { vars }
}

struct EnvText {
    vars: Vec<(String, String)>,
}

impl figment::Provider for EnvText {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable(s)")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        fn insert(dict: &mut figment::value::Dict, path: &[&str], value: &str) {
            match path {
                [] => {}
                [last] => {
                    dict.insert((*last).to_owned(), value.into());
                }
                [first, rest @ ..] => {
                    let entry = dict
                        .entry((*first).to_owned())
                        .or_insert_with(|| figment::value::Dict::new().into());
                    if let figment::value::Value::Dict(_, inner) = entry {
                        insert(inner, rest, value);
                    }
                }
            }
        }
        let mut dict = figment::value::Dict::new();
        for (path, value) in &self.vars {
            let parts: Vec<&str> = path.split('.').collect();
            insert(&mut dict, &parts, value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on. Anything but loopback requires `auth.enabled = true`.
    pub bind: SocketAddr,
    /// The base URL clients use (for links and Location headers), if not `http://{bind}`.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default = "default_shutdown_secs")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub shutdown_timeout_secs: u64,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub max_body_bytes: usize,
    /// How long an idle client connection stays open. Clients pool connections; a short
    /// server keep-alive closes pooled ones just as a client reuses them.
    #[serde(default = "default_keep_alive")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub keep_alive_secs: u64,
    /// How long a client may take to send a request's head once it started one.
    #[serde(default = "default_request_timeout")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub request_timeout_secs: u64,
}

fn default_shutdown_secs() -> u64 {
    30
}
fn default_request_timeout() -> u64 {
    60
}
fn default_keep_alive() -> u64 {
    75
}
fn default_max_body() -> usize {
    64 * 1024 * 1024
}

impl HttpSettings {
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            public_base_url: None,
            shutdown_timeout_secs: default_shutdown_secs(),
            max_body_bytes: default_max_body(),
            keep_alive_secs: default_keep_alive(),
            request_timeout_secs: default_request_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Embedded,
    Kafka,
}

/// `[bus]`: `kind` picks the implementation, its own table configures it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub kind: BusKind,
    #[serde(default)]
    pub kafka: Option<KafkaSettings>,
    #[serde(default)]
    pub embedded: Option<EmbeddedBusSettings>,
}

/// The bus a [`BusConfig`] names, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum BusSettings {
    Kafka(KafkaSettings),
    Embedded(EmbeddedBusSettings),
}

impl BusConfig {
    pub fn embedded(database_url: impl Into<String>) -> Self {
        Self {
            kind: BusKind::Embedded,
            kafka: None,
            embedded: Some(EmbeddedBusSettings::new(database_url)),
        }
    }
    pub fn kafka(brokers: impl Into<String>) -> Self {
        Self {
            kind: BusKind::Kafka,
            kafka: Some(KafkaSettings::new(brokers)),
            embedded: None,
        }
    }
    pub fn resolve(&self) -> Result<BusSettings, ConfigError> {
        match self.kind {
            BusKind::Kafka => self.kafka.clone().map(BusSettings::Kafka).ok_or_else(|| {
                ConfigError::Invalid(
                    "key 'bus.kafka.brokers': required when bus.kind = \"kafka\"".into(),
                )
            }),
            BusKind::Embedded => {
                self.embedded
                    .clone()
                    .map(BusSettings::Embedded)
                    .ok_or_else(|| {
                        ConfigError::Invalid(
                        "key 'bus.embedded.database_url': required when bus.kind = \"embedded\""
                            .into(),
                    )
                    })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Local,
    S3,
}

/// `[blobs]`: `kind` picks the implementation, its own table configures it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlobConfig {
    pub kind: BlobKind,
    #[serde(default)]
    pub local: Option<LocalBlobSettings>,
    #[serde(default)]
    pub s3: Option<S3Settings>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BlobSettings {
    Local(LocalBlobSettings),
    S3(S3Settings),
}

impl BlobConfig {
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self {
            kind: BlobKind::Local,
            local: Some(LocalBlobSettings { path: path.into() }),
            s3: None,
        }
    }
    pub fn resolve(&self) -> Result<BlobSettings, ConfigError> {
        match self.kind {
            BlobKind::Local => self.local.clone().map(BlobSettings::Local).ok_or_else(|| {
                ConfigError::Invalid("key 'blobs.local.path': required when blobs.kind = \"local\"".into())
            }),
            BlobKind::S3 => self.s3.clone().map(BlobSettings::S3).ok_or_else(|| {
                ConfigError::Invalid(
                    "key 'blobs.s3': bucket, access_key_id and secret_access_key are required when blobs.kind = \"s3\"".into(),
                )
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    #[serde(default)]
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,fhir_svc=debug`. `RUST_LOG` overrides it.
    #[serde(default = "default_log_filter")]
    pub log_filter: String,
}

fn default_log_filter() -> String {
    "info".into()
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: default_log_filter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        http: HttpSettings,
        bus: BusConfig,
    }

    fn demo() -> Demo {
        Demo {
            http: HttpSettings::new("127.0.0.1:8080".parse().unwrap()),
            bus: BusConfig::embedded("sqlite://bus.db"),
        }
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.toml");
        std::fs::write(
            &file,
            "[http]\nbind = \"127.0.0.1:9000\"\n[bus]\nkind = \"kafka\"\n[bus.kafka]\nbrokers = \"k:9092\"\n",
        )
        .unwrap();
        let s: Demo = load(&demo(), Some(&file), vec![]).unwrap();
        assert_eq!(s.http.bind.port(), 9000);
        assert_eq!(
            s.bus.resolve().unwrap(),
            BusSettings::Kafka(KafkaSettings::new("k:9092"))
        );
        let s: Demo = load(
            &demo(),
            Some(&file),
            vec![("http.bind", "127.0.0.1:9001".into())],
        )
        .unwrap();
        assert_eq!(s.http.bind.port(), 9001);
    }

    #[test]
    fn errors_name_the_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.toml");
        std::fs::write(&file, "[http]\nbind = \"not an address\"\n").unwrap();
        let err = load(&demo(), Some(&file), vec![]).unwrap_err().to_string();
        assert!(err.contains("http.bind"), "{err}");

        std::fs::write(&file, "[http]\nbindd = \"127.0.0.1:1\"\n").unwrap();
        let err = load(&demo(), Some(&file), vec![]).unwrap_err().to_string();
        assert!(err.contains("bindd"), "{err}");

        let err = load(&demo(), Some(&dir.path().join("nope.toml")), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn kafka_without_brokers_is_named() {
        let mut d = demo();
        d.bus.kind = BusKind::Kafka;
        let err = d.bus.resolve().unwrap_err().to_string();
        assert!(err.contains("bus.kafka.brokers"), "{err}");
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    /// Section names of this test's own, since the environment is process-wide.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Secretive {
        envtestdb: crate::db::DatabaseSettings,
        envtesthttp: HttpSettings,
    }

    #[test]
    fn env_values_keep_their_text() {
        let defaults = Secretive {
            envtestdb: crate::db::DatabaseSettings::new("sqlite://x.db"),
            envtesthttp: HttpSettings::new("127.0.0.1:1".parse().unwrap()),
        };
        std::env::set_var("HDS_ENVTESTDB__URL", "12345");
        std::env::set_var("HDS_ENVTESTDB__SCHEMA", "true");
        std::env::set_var("HDS_ENVTESTHTTP__SHUTDOWN_TIMEOUT_SECS", "7");
        std::env::set_var("HDS_ENVTESTHTTP__MAX_BODY_BYTES", "[1]");
        let s = load(&defaults, None, vec![]);
        std::env::set_var("HDS_ENVTESTHTTP__MAX_BODY_BYTES", "1024");
        let ok: Secretive = load(&defaults, None, vec![]).unwrap();
        for k in [
            "DB__URL",
            "DB__SCHEMA",
            "HTTP__SHUTDOWN_TIMEOUT_SECS",
            "HTTP__MAX_BODY_BYTES",
        ] {
            std::env::remove_var(format!("HDS_ENVTEST{k}"));
        }
        let err = s.unwrap_err().to_string();
        assert!(err.contains("envtesthttp.max_body_bytes"), "{err}");
        assert_eq!(ok.envtestdb.url, "12345");
        assert_eq!(ok.envtestdb.schema.as_deref(), Some("true"));
        assert_eq!(ok.envtesthttp.shutdown_timeout_secs, 7);
        assert_eq!(ok.envtesthttp.max_body_bytes, 1024);
    }
}
