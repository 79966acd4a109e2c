//! IoT connectors (MedTech services) of a workspace: list, get, create or update, update
//! (tags, identity), delete. Each is the medtech-svc instance `{workspace}-{name}`; its
//! `deviceMapping.content` is stored and returned verbatim.

use actix_web::web;
use serde_json::Value;

use super::resource::{self, Kind};
use super::GROUP;
use crate::body::{object_member, typed_member, PutBody};
use crate::error::ArmError;
use crate::resource_id::ResourceType;

const KIND: Kind = Kind {
    rtype: ResourceType::IotConnector,
    validate,
};

fn validate(body: &mut PutBody) -> Result<(), ArmError> {
    body.kind = None;
    let p = &body.properties;
    if let Some(ingestion) = object_member(p, "ingestionEndpointConfiguration", false)? {
        let at = "properties.ingestionEndpointConfiguration";
        for name in [
            "eventHubName",
            "consumerGroup",
            "fullyQualifiedEventHubNamespace",
        ] {
            typed_member(ingestion, at, name, "a string", Value::is_string)?;
        }
    }
    if let Some(mapping) = object_member(p, "deviceMapping", false)? {
        typed_member(
            mapping,
            "properties.deviceMapping",
            "content",
            "an object",
            Value::is_object,
        )?;
    }
    Ok(())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource::collection(
        &format!("{GROUP}/workspaces/{{workspace}}/iotconnectors"),
        KIND,
    ))
    .service(resource::item(
        &format!("{GROUP}/workspaces/{{workspace}}/iotconnectors/{{service}}"),
        KIND,
        true,
    ));
}
