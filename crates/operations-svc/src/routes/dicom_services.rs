//! DICOM services of a workspace: list, get, create or update, update (tags, identity),
//! delete. Each is the dicom-svc instance `{workspace}-{name}`.

use actix_web::web;
use serde_json::Value;

use super::resource::{self, Kind};
use super::GROUP;
use crate::body::{enum_member, is_string_array, object_member, typed_member, PutBody};
use crate::error::ArmError;
use crate::resource_id::ResourceType;

const KIND: Kind = Kind {
    rtype: ResourceType::DicomService,
    validate,
};

fn validate(body: &mut PutBody) -> Result<(), ArmError> {
    body.kind = None;
    let p = &body.properties;
    object_member(p, "authenticationConfiguration", false)?;
    object_member(p, "storageConfiguration", false)?;
    if let Some(cors) = object_member(p, "corsConfiguration", false)? {
        let at = "properties.corsConfiguration";
        for list in ["origins", "headers", "methods"] {
            typed_member(cors, at, list, "an array of strings", is_string_array)?;
        }
        typed_member(cors, at, "allowCredentials", "a boolean", Value::is_boolean)?;
    }
    typed_member(
        p,
        "properties",
        "enableDataPartitions",
        "a boolean",
        Value::is_boolean,
    )?;
    enum_member(
        p,
        "properties",
        "publicNetworkAccess",
        &["Enabled", "Disabled"],
        false,
    )?;
    // Read-only: filled in by the service (hds has no events or private endpoints).
    for read_only in ["serviceUrl", "eventState", "privateEndpointConnections"] {
        body.properties.remove(read_only);
    }
    Ok(())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource::collection(
        &format!("{GROUP}/workspaces/{{workspace}}/dicomservices"),
        KIND,
    ))
    .service(resource::item(
        &format!("{GROUP}/workspaces/{{workspace}}/dicomservices/{{service}}"),
        KIND,
        true,
    ));
}
