//! Operations - List: `GET /providers/Microsoft.HealthcareApis/operations`, the actions this
//! resource provider offers, as `OperationDetail`s.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::ApiVersion;
use crate::error::ArmError;
use crate::resource_id::ResourceType;

fn detail(rtype: &str, action: &str, resource: &str, verb: &str) -> Value {
    json!({
        "name": format!("Microsoft.HealthcareApis/{rtype}/{action}"),
        "isDataAction": false,
        "display": {
            "provider": "Microsoft.HealthcareApis",
            "resource": resource,
            "operation": format!("{verb} {resource}"),
            "description": format!("{verb}s {resource}."),
        },
        "origin": "user,system",
    })
}

fn display_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Workspace => "Workspace",
        ResourceType::FhirService => "FHIR Service",
        ResourceType::DicomService => "DICOM Service",
        ResourceType::IotConnector => "IoT Connector",
        ResourceType::FhirDestination => "IoT Connector FHIR Destination",
    }
}

/// Public like ARM's own operations list: it describes the API, not any resource.
pub async fn list(version: web::Query<ApiVersion>) -> Result<HttpResponse, ArmError> {
    version.check()?;
    let mut value = Vec::new();
    for t in ResourceType::ALL {
        let rtype = t.arm_type().trim_start_matches("Microsoft.HealthcareApis/");
        let name = display_name(t);
        value.push(detail(rtype, "read", name, "Read"));
        value.push(detail(rtype, "write", name, "Write"));
        value.push(detail(rtype, "delete", name, "Delete"));
    }
    value.push(detail(
        "locations/operationresults",
        "read",
        "Operation Result",
        "Read",
    ));
    value.push(detail("operations", "read", "Operation", "Read"));
    Ok(HttpResponse::Ok().json(json!({ "value": value })))
}
