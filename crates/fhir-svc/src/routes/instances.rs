//! `GET /instances`: the FHIR service instances this process serves.

use actix_web::{web, HttpResponse};
use hds_core::auth::Permission;
use hds_core::ops::Caller;
use hds_core::provisioning::InstanceRegistry;

use crate::error::FhirError;

pub async fn list(
    caller: Caller<FhirError>,
    registry: web::Data<InstanceRegistry>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "value": registry.list().await? })))
}
