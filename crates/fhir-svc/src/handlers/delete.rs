//! delete: `DELETE [base]/[type]/[id]` — a soft delete (history keeps every version, read
//! answers 410); `?hardDelete=true` removes every version. 204 either way, also when there
//! was nothing to delete (as Azure's FHIR service answers).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use hds_core::auth::Permission;
use serde::Deserialize;

use super::FhirCaller;
use crate::domain::etag;
use crate::error::FhirError;
use crate::http::{resource_id, resource_type, FhirState, Instance};

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(rename = "hardDelete", default)]
    hard_delete: Option<String>,
}

pub async fn delete(
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    query: web::Query<DeleteQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    let hard = match query.hard_delete.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(FhirError::invalid(format!(
                "hardDelete must be true or false, not '{other}'"
            )))
        }
    };
    caller.require(if hard {
        Permission::HardDelete
    } else {
        Permission::Delete
    })?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let deleted = state.store.delete(&instance, &rt, &id, hard).await?;
    let mut res = HttpResponse::NoContent();
    if let Some(v) = deleted {
        res.insert_header((header::ETAG, etag(v.version)));
    }
    Ok(res.finish())
}
