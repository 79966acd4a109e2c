//! Retrieve metadata (PS3.18 10.4.1.1.2): `GET .../metadata` at study, series or instance
//! level, a DICOM JSON array of the instances' data sets as made at ingest (bulk data left
//! out). An `ETag` lets clients revalidate: a matching `If-None-Match` is answered 304.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use crate::dicomweb::media::{self, DICOM_JSON};
use crate::error::DicomError;
use crate::http::{scope, DicomCaller, DicomState};
use crate::partitions::Partitioned;

pub async fn metadata(
    req: HttpRequest,
    caller: DicomCaller,
    _version: crate::http::Version,
    Partitioned(partition): Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let scope = scope(&req)?;
    media::require_dicom_json(&req)?;
    let Some(found) = state.store.metadata(&partition, &scope).await? else {
        return Err(scope.not_found());
    };
    let unchanged = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == found.etag
        });
    if unchanged {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, found.etag))
            .finish());
    }
    // The stored JSON is joined as text: no parsing on the way out.
    let mut body =
        String::with_capacity(found.instances.iter().map(|m| m.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, m) in found.instances.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(m);
    }
    body.push(']');
    Ok(HttpResponse::Ok()
        .content_type(DICOM_JSON)
        .insert_header((header::ETAG, found.etag))
        .body(body))
}
