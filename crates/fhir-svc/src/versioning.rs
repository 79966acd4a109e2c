//! The instance's resource version policy applied to writes. Under `versioned-update` an
//! update or patch of an existing resource must name the version it replaces with `If-Match`;
//! without it Azure's FHIR service refuses the write with 412 and this message (its
//! `IfMatchHeaderRequiredForResource`). Creating a resource (update-as-create, or a resource
//! whose current version is a deletion) needs no version.
//!
//! Under `no-version` a write keeps only the version it makes: the ones it replaces are
//! dropped in its transaction (history and vread no longer find them), while
//! `meta.versionId` still counts up, as Azure documents.

use crate::domain::ResourceType;
use crate::error::FhirError;
use crate::instance_config::{InstanceConfig, VersionPolicy};
use crate::store::History;

/// Refuses an update of an existing resource of type `rt` without `If-Match` where the
/// instance's policy asks for one. `exists`: the resource has a current, undeleted version.
pub fn check_update(
    config: &InstanceConfig,
    rt: &ResourceType,
    if_match: Option<i64>,
    exists: bool,
) -> Result<(), FhirError> {
    if config.versions.of(rt) == VersionPolicy::VersionedUpdate && if_match.is_none() && exists {
        return Err(FhirError::IfMatchRequired {
            resource_type: rt.to_string(),
        });
    }
    Ok(())
}

/// Whether writes of `rt` must carry `If-Match` whenever the resource exists.
pub fn requires_if_match(config: &InstanceConfig, rt: &ResourceType) -> bool {
    config.versions.of(rt) == VersionPolicy::VersionedUpdate
}

/// Whether a write of `rt` keeps the versions it replaces.
pub fn history(config: &InstanceConfig, rt: &ResourceType) -> History {
    match config.versions.of(rt) {
        VersionPolicy::NoVersion => History::Discard,
        VersionPolicy::Versioned | VersionPolicy::VersionedUpdate => History::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versioned_update_needs_if_match_for_existing_resources_of_its_types() {
        let config = InstanceConfig::from_properties(&json!({
            "resourceVersionPolicyConfiguration": {
                "default": "versioned",
                "resourceTypeOverrides": {"Patient": "versioned-update"}
            }
        }));
        let patient: ResourceType = "Patient".parse().unwrap();
        let observation: ResourceType = "Observation".parse().unwrap();
        let err = check_update(&config, &patient, None, true).unwrap_err();
        assert!(matches!(err, FhirError::IfMatchRequired { .. }), "{err}");
        check_update(&config, &patient, Some(1), true).unwrap();
        check_update(&config, &patient, None, false).unwrap();
        check_update(&config, &observation, None, true).unwrap();
        assert!(requires_if_match(&config, &patient));
        assert!(!requires_if_match(&InstanceConfig::default(), &patient));
    }
}
