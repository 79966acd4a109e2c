//! create: `POST [base]/[type]` — the server assigns the id; 201 with `Location`.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use super::FhirCaller;
use crate::domain::ResourceId;
use crate::error::FhirError;
use crate::http::{
    base_url, check_type, prefer_return, read_resource, resource_type, version_response, FhirState,
    Instance,
};
use crate::store::Method;

pub async fn create(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Write)?;
    let rt = resource_type(&path.1)?;
    let resource = read_resource(&req, body, state.max_body_bytes).await?;
    check_type(&resource, &rt)?;
    // A client-supplied id is ignored on create, as the spec allows.
    let id = ResourceId::generate();
    let written = state
        .store
        .write(&instance, &rt, &id, resource, Method::Post, None)
        .await?;
    let base = base_url(&req, &state, &instance);
    Ok(version_response(
        HttpResponse::Created(),
        &written.version,
        &base,
        true,
        prefer_return(&req),
    ))
}
