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
        }
    }
}
