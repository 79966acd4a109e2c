//! Delete (Azure's extension to the Studies Service): `DELETE {s}/studies/{study}
//! [/series/{series}[/instances/{instance}]]` -> 204. The index rows go in one transaction
//! with a change-feed row and an `instance deleted` event per instance; then the blobs.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use crate::error::DicomError;
use crate::http::{scope, DicomCaller, DicomState};
use crate::partitions::Partitioned;

pub async fn delete(
    req: HttpRequest,
    caller: DicomCaller,
    _version: crate::http::Version,
    Partitioned(partition): Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Delete)?;
    let scope = scope(&req)?;
    state.store.delete(&partition, &scope).await?;
    Ok(HttpResponse::NoContent().finish())
}
