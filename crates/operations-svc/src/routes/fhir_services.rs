//! FHIR services of a workspace: list, get, create or update, update (tags, identity),
//! delete. Each is the fhir-svc instance `{workspace}-{name}`; its `properties` go to
//! fhir-svc in the provisioning command.

use actix_web::web;
use serde_json::Value;

use super::resource::{self, Kind};
use super::GROUP;
use crate::body::{enum_member, is_string_array, object_member, typed_member, PutBody};
use crate::error::ArmError;
use crate::resource_id::ResourceType;

/// hds implements FHIR R4 only.
const FHIR_R4: &str = "fhir-R4";

const KIND: Kind = Kind {
    rtype: ResourceType::FhirService,
    validate,
};

fn validate(body: &mut PutBody) -> Result<(), ArmError> {
    match body.kind.as_deref() {
        None => body.kind = Some(FHIR_R4.into()),
        Some(FHIR_R4) => {}
        Some(other) => {
            return Err(ArmError::body(
                "kind",
                format!("The FHIR service kind '{other}' is not supported; use '{FHIR_R4}'."),
            ))
        }
    }
    let p = &body.properties;
    object_member(p, "authenticationConfiguration", false)?;
    object_member(p, "exportConfiguration", false)?;
    object_member(p, "importConfiguration", false)?;
    object_member(p, "acrConfiguration", false)?;
    if let Some(cors) = object_member(p, "corsConfiguration", false)? {
        let at = "properties.corsConfiguration";
        for list in ["origins", "headers", "methods"] {
            typed_member(cors, at, list, "an array of strings", is_string_array)?;
        }
        typed_member(cors, at, "maxAge", "an integer from 0 to 99999", |v| {
            v.as_u64().is_some_and(|n| n <= 99_999)
        })?;
        typed_member(cors, at, "allowCredentials", "a boolean", Value::is_boolean)?;
    }
    if let Some(policy) = object_member(p, "resourceVersionPolicyConfiguration", false)? {
        const POLICIES: [&str; 3] = ["no-version", "versioned", "versioned-update"];
        let at = "properties.resourceVersionPolicyConfiguration";
        enum_member(policy, at, "default", &POLICIES, false)?;
        if let Some(overrides) = policy
            .get("resourceTypeOverrides")
            .and_then(Value::as_object)
        {
            for name in overrides.keys() {
                enum_member(
                    overrides,
                    &format!("{at}.resourceTypeOverrides"),
                    name,
                    &POLICIES,
                    true,
                )?;
            }
        }
    }
    enum_member(
        p,
        "properties",
        "publicNetworkAccess",
        &["Enabled", "Disabled"],
        false,
    )?;
    // Read-only (a client may echo what it read): hds has no events or private endpoints.
    body.properties.remove("eventState");
    body.properties.remove("privateEndpointConnections");
    Ok(())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource::collection(
        &format!("{GROUP}/workspaces/{{workspace}}/fhirservices"),
        KIND,
    ))
    .service(resource::item(
        &format!("{GROUP}/workspaces/{{workspace}}/fhirservices/{{service}}"),
        KIND,
        true,
    ));
}
