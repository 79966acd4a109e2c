//! `$purge-history`: `POST [base]/[type]/[id]/$purge-history` removes every version of the
//! resource except the current one (Azure's operation).

use actix_web::{web, HttpResponse};
use hds_core::auth::Permission;

use super::FhirCaller;
use crate::error::FhirError;
use crate::http::{resource_id, resource_type, FhirState, Instance};

pub async fn purge_history(
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::HardDelete)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    if state.store.read(&instance, &rt, &id).await?.is_none() {
        return Err(FhirError::ResourceNotFound {
            resource_type: rt.to_string(),
            id: id.to_string(),
        });
    }
    let removed = state.store.purge_history(&instance, &rt, &id).await?;
    tracing::info!(resource = %format!("{rt}/{id}"), removed, "history purged");
    Ok(HttpResponse::NoContent().finish())
}
