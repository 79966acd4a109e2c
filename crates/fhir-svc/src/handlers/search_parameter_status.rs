//! `GET [base]/SearchParameter/$status`: the instance's custom search parameters and where
//! each stands (Azure's endpoint of the same name): `Supported` (indexed on write, searchable
//! after a `$reindex`) or `Enabled`. R4's own parameters are always enabled and not listed.

use actix_web::{web, HttpResponse};
use hds_core::auth::Permission;
use serde_json::{json, Value};

use super::FhirCaller;
use crate::error::FhirError;
use crate::http::{FhirState, Instance, FHIR_JSON};

pub async fn status(
    caller: FhirCaller,
    Instance(instance): Instance,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let catalog = state.store.catalog(&instance).await?;
    let parameter: Vec<Value> = catalog
        .custom()
        .registered()
        .iter()
        .map(|r| {
            json!({"name": "searchParameter", "part": [
                {"name": "url", "valueString": r.definition.url},
                {"name": "code", "valueString": r.definition.code},
                {"name": "resource", "valueString": format!("SearchParameter/{}", r.id)},
                {"name": "status", "valueString": r.status.as_str()},
            ]})
        })
        .collect();
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(json!({"resourceType": "Parameters", "parameter": parameter}).to_string()))
}
