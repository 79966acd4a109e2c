//! FHIR destinations of an IoT connector: list, get, create or update, delete (no PATCH in
//! the API). A destination is configuration of its connector's MedTech instance: every
//! change re-sends the connector's settings with all its destinations. Its
//! `fhirServiceResourceId` must name a FHIR service of this deployment, and
//! `fhirMapping.content` is stored and returned verbatim.

use actix_web::web;
use serde_json::Value;

use super::resource::{self, Kind};
use super::GROUP;
use crate::body::{enum_member, object_member, PutBody};
use crate::error::ArmError;
use crate::resource_id::ResourceType;

const KIND: Kind = Kind {
    rtype: ResourceType::FhirDestination,
    validate,
};

fn validate(body: &mut PutBody) -> Result<(), ArmError> {
    body.kind = None;
    // IotFhirDestination has neither tags nor identity.
    body.tags = None;
    body.identity = None;
    let p = &body.properties;
    enum_member(
        p,
        "properties",
        "resourceIdentityResolutionType",
        &["Create", "Lookup"],
        true,
    )?;
    if !p.get("fhirServiceResourceId").is_some_and(Value::is_string) {
        return Err(ArmError::body(
            "properties.fhirServiceResourceId",
            "'fhirServiceResourceId' is required and must be a string.",
        ));
    }
    let content = object_member(p, "fhirMapping", true)?.and_then(|m| m.get("content"));
    if !content.is_some_and(Value::is_object) {
        return Err(ArmError::body(
            "properties.fhirMapping.content",
            "'fhirMapping.content' is required and must be an object.",
        ));
    }
    Ok(())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let connector = format!("{GROUP}/workspaces/{{workspace}}/iotconnectors/{{service}}");
    cfg.service(resource::collection(
        &format!("{connector}/fhirdestinations"),
        KIND,
    ))
    .service(resource::item(
        &format!("{connector}/fhirdestinations/{{destination}}"),
        KIND,
        false,
    ));
}
