//! The settings of one FHIR service instance, as its ARM `properties` give them (they arrive
//! with the provisioning command and are kept in the instance's row): who may call it
//! (`authenticationConfiguration`), CORS (`corsConfiguration`), how versions are kept
//! (`resourceVersionPolicyConfiguration`) and where `$export` writes (`exportConfiguration`).
//!
//! They are read from the instance registry on every request, so a PUT of the service
//! through the control plane takes effect as soon as fhir-svc has handled its command: at
//! once in the replica that handled it, within the registry's cache time in the others.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpMessage, HttpRequest};
use hds_core::auth::TokenExpectation;
use hds_core::names::InstanceName;
use hds_core::provisioning::Instance;
use serde_json::Value;

use crate::domain::ResourceType;
use hds_core::cors::CorsPolicy;

/// Azure's resource version policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionPolicy {
    /// Every version is kept (the default).
    #[default]
    Versioned,
    /// Every version is kept, and an update of an existing resource must say which version
    /// it replaces (`If-Match`).
    VersionedUpdate,
    /// Only the current version is kept (see [`crate::versioning::history`]).
    NoVersion,
}

impl VersionPolicy {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "versioned" => Some(Self::Versioned),
            "versioned-update" => Some(Self::VersionedUpdate),
            "no-version" => Some(Self::NoVersion),
            _ => None,
        }
    }
}

/// `resourceVersionPolicyConfiguration`: a default and per-type overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPolicies {
    default: VersionPolicy,
    overrides: HashMap<String, VersionPolicy>,
}

impl VersionPolicies {
    fn from_properties(properties: &Value) -> Self {
        let Some(c) = properties.get("resourceVersionPolicyConfiguration") else {
            return Self::default();
        };
        Self {
            default: c
                .get("default")
                .and_then(Value::as_str)
                .and_then(VersionPolicy::parse)
                .unwrap_or_default(),
            overrides: c
                .get("resourceTypeOverrides")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(t, p)| Some((t.clone(), VersionPolicy::parse(p.as_str()?)?)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn of(&self, rt: &ResourceType) -> VersionPolicy {
        self.overrides
            .get(rt.as_str())
            .copied()
            .unwrap_or(self.default)
    }
}

/// Everything an instance's properties set for fhir-svc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The issuer and audience its tokens must have; `None`: the service's `[auth]` ones.
    pub auth: Option<TokenExpectation>,
    pub cors: Option<CorsPolicy>,
    pub versions: VersionPolicies,
    /// `exportConfiguration.storageAccountName`: where `$export` writes (see `crate::export`).
    pub export_storage: Option<String>,
}

impl InstanceConfig {
    pub fn from_properties(properties: &Value) -> Self {
        let auth = properties.get("authenticationConfiguration").and_then(|a| {
            let text = |k: &str| {
                a.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned)
            };
            // Both or neither: half a configuration cannot be checked against.
            Some(TokenExpectation {
                authority: text("authority")?,
                audience: text("audience")?,
            })
        });
        Self {
            auth,
            cors: CorsPolicy::from_properties(properties),
            versions: VersionPolicies::from_properties(properties),
            export_storage: properties
                .pointer("/exportConfiguration/storageAccountName")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }
    }
}

/// The instance a request addresses, found once per request by the instance middleware
/// and kept in the request's extensions for the extractors.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: InstanceName,
    /// `None`: no such instance.
    pub config: Option<Arc<InstanceConfig>>,
}

impl Resolved {
    pub fn of(name: InstanceName, instance: Option<&Instance>) -> Self {
        Self {
            name,
            config: instance.map(|i| Arc::new(InstanceConfig::from_properties(&i.properties))),
        }
    }

    /// What the middleware found for this request, if it ran.
    pub fn from_request(req: &HttpRequest) -> Option<Self> {
        req.extensions().get::<Resolved>().cloned()
    }
}
