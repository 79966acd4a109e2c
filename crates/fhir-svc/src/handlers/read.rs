//! read: `GET [base]/[type]/[id]` — 410 for a deleted resource; `If-None-Match` and
//! `If-Modified-Since` answer 304 when the client's copy is current.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use super::FhirCaller;
use crate::domain::parse_etag;
use crate::error::FhirError;
use crate::http::{
    base_url, resource_id, resource_type, stored_response, FhirState, Instance, Return,
};
use crate::store::Version;

pub async fn read(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let v = state
        .store
        .read_stored(&instance, &rt, &id)
        .await?
        .ok_or_else(|| FhirError::ResourceNotFound {
            resource_type: rt.to_string(),
            id: id.to_string(),
        })?;
    if v.is_deletion() {
        return Err(FhirError::Gone {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version: v.version.version,
        });
    }
    let base = base_url(&req, &state, &instance);
    if not_modified(&req, &v.version) {
        return Ok(stored_response(
            HttpResponse::NotModified(),
            &v,
            &base,
            false,
            Return::Minimal,
        ));
    }
    Ok(stored_response(
        HttpResponse::Ok(),
        &v,
        &base,
        false,
        Return::Representation,
    ))
}

/// The client's copy is current: its `If-None-Match` names this version, or (without one)
/// its `If-Modified-Since` is not before the last update.
fn not_modified(req: &HttpRequest, v: &Version) -> bool {
    if let Some(tags) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
    {
        return tags
            .split(',')
            .any(|t| t.trim() == "*" || parse_etag(t) == Some(v.version));
    }
    req.headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| httpdate::parse_http_date(h).ok())
        .is_some_and(|since| {
            // HTTP dates have whole seconds.
            v.last_updated.timestamp() <= chrono::DateTime::<chrono::Utc>::from(since).timestamp()
        })
}
