//! vread: `GET [base]/[type]/[id]/_history/[vid]` — one version; 410 for a deletion.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use super::FhirCaller;
use crate::error::FhirError;
use crate::http::{
    base_url, resource_id, resource_type, stored_response, FhirState, Instance, Return,
};

pub async fn vread(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let not_found = || FhirError::VersionNotFound {
        resource_type: rt.to_string(),
        id: id.to_string(),
        version: path.3.clone(),
    };
    let version: i64 = path.3.parse().map_err(|_| not_found())?;
    let v = state
        .store
        .vread_stored(&instance, &rt, &id, version)
        .await?
        .ok_or_else(not_found)?;
    if v.is_deletion() {
        return Err(FhirError::Gone {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
        });
    }
    let base = base_url(&req, &state, &instance);
    Ok(stored_response(
        HttpResponse::Ok(),
        &v,
        &base,
        false,
        Return::Representation,
    ))
}
