//! `[medtech]`: how the pipeline runs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MedtechSettings {
    /// The fhir-svc a destination without its own `fhirBaseUrl` writes to.
    #[serde(default = "default_fhir_base_url")]
    pub fhir_base_url: String,
    /// How long a window collects messages before its Observations are written. Azure
    /// waits minutes; a second keeps latency low while still merging bursts.
    #[serde(
        default = "default_flush_interval_ms",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub flush_interval_ms: u64,
    /// A window is written as soon as it holds this many messages.
    #[serde(
        default = "default_flush_messages",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub flush_messages: usize,
    /// How often configuration changes made by other replicas are looked for (changes made
    /// through this process take effect at once).
    #[serde(
        default = "default_reload_interval_ms",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub reload_interval_ms: u64,
    /// How long a resolved Patient/Device/Encounter id is reused without asking FHIR again.
    #[serde(
        default = "default_identity_cache_secs",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub identity_cache_secs: u64,
    /// Timeout of one request to the FHIR service.
    #[serde(
        default = "default_fhir_timeout_ms",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub fhir_timeout_ms: u64,
    /// Largest body `POST /{instance}/ingest` and the debugger accept.
    #[serde(
        default = "default_max_body_bytes",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub max_body_bytes: usize,
    /// Longest wait between retries of a failing FHIR write.
    #[serde(
        default = "default_max_retry_ms",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub max_retry_ms: u64,
    /// Device messages read ahead of the window being written. The consumer keeps polling
    /// while a window is written (Kafka drops a member that stops polling for
    /// `max.poll.interval.ms`); this bounds what it holds meanwhile.
    #[serde(
        default = "default_read_ahead_messages",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub read_ahead_messages: usize,
    /// FHIR requests of a window in flight at once: identity lookups, searches for existing
    /// Observations, batch bundles of writes.
    #[serde(
        default = "default_concurrent_writes",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub concurrent_writes: usize,
    /// With the read-ahead full, the consumer still polls (taking one message) this often, to
    /// stay in its group: keep it well under the bus' `max_poll_interval_ms`.
    #[serde(
        default = "default_poll_keepalive_ms",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub poll_keepalive_ms: u64,
    /// Where the private key that signs this service's tokens to fhir-svc lives
    /// (`signing-key.pem`, as `hds token` keeps it), when `auth.enabled`. By default the
    /// folder of `auth.public_key_file`, where `hds up --auth` puts both.
    #[serde(default)]
    pub signing_key_dir: Option<std::path::PathBuf>,
}

fn default_fhir_base_url() -> String {
    format!("http://127.0.0.1:{}", 8081)
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_flush_messages() -> usize {
    1_000
}
fn default_reload_interval_ms() -> u64 {
    5_000
}
fn default_identity_cache_secs() -> u64 {
    300
}
fn default_fhir_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_retry_ms() -> u64 {
    30_000
}
fn default_concurrent_writes() -> usize {
    8
}
fn default_read_ahead_messages() -> usize {
    10_000
}
fn default_poll_keepalive_ms() -> u64 {
    5_000
}

impl Default for MedtechSettings {
    fn default() -> Self {
        Self {
            fhir_base_url: default_fhir_base_url(),
            flush_interval_ms: default_flush_interval_ms(),
            flush_messages: default_flush_messages(),
            reload_interval_ms: default_reload_interval_ms(),
            identity_cache_secs: default_identity_cache_secs(),
            fhir_timeout_ms: default_fhir_timeout_ms(),
            max_body_bytes: default_max_body_bytes(),
            max_retry_ms: default_max_retry_ms(),
            read_ahead_messages: default_read_ahead_messages(),
            concurrent_writes: default_concurrent_writes(),
            poll_keepalive_ms: default_poll_keepalive_ms(),
            signing_key_dir: None,
        }
    }
}
