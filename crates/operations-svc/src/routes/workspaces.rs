//! Workspaces: list by subscription and by resource group, get, create or update, update
//! (tags), delete. A workspace has no data-plane side, so its operations end at once.

use actix_web::web;

use super::resource::{self, Kind};
use super::GROUP;
use crate::body::{enum_member, PutBody};
use crate::error::ArmError;
use crate::resource_id::ResourceType;

pub const KIND: Kind = Kind {
    rtype: ResourceType::Workspace,
    validate,
};

fn validate(body: &mut PutBody) -> Result<(), ArmError> {
    body.kind = None;
    enum_member(
        &body.properties,
        "properties",
        "publicNetworkAccess",
        &["Enabled", "Disabled"],
        false,
    )?;
    // Read-only: private endpoints are not offered.
    body.properties.remove("privateEndpointConnections");
    Ok(())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource::workspace_collection(
        "/subscriptions/{subscription}/providers/Microsoft.HealthcareApis/workspaces",
    ))
    .service(resource::workspace_collection(&format!(
        "{GROUP}/workspaces"
    )))
    .service(resource::item(
        &format!("{GROUP}/workspaces/{{workspace}}"),
        KIND,
        true,
    ));
}
