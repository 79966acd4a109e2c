//! patch: `PATCH [base]/[type]/[id]` with a JSON Patch document (RFC 6902,
//! `application/json-patch+json`). The patch applies to the current version as a whole or not
//! at all; the result must still be the same resource (type and id), and is stored as a new
//! version. `If-Match` makes it conditional; without it, a concurrent write makes the patch
//! apply again to the newer version.
//!
//! FHIRPath Patch (a `Parameters` body) needs the FHIRPath engine and is answered 415 until
//! it lands.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use serde_json::Value;

use super::FhirCaller;
use crate::domain::{parse_etag, ResourceId, ResourceType};
use crate::error::{FhirError, Issue};
use crate::http::{
    base_url, prefer_return, read_body, resource_id, resource_type, version_response, FhirState,
    Instance,
};
use crate::store::Method;

/// Attempts when concurrent writes keep moving the resource on under an unconditional patch.
const ATTEMPTS: usize = 5;

pub async fn patch(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Write)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !ct.starts_with("application/json-patch+json") {
        return Err(FhirError::UnsupportedMediaType(format!(
            "{ct} (PATCH takes application/json-patch+json; FHIRPath Patch is not supported yet)"
        )));
    }
    let raw = read_body(body, state.max_body_bytes).await?;
    let operations: json_patch::Patch = serde_json::from_slice(&raw)
        .map_err(|e| FhirError::invalid(format!("the body is not a JSON Patch document: {e}")))?;
    let if_match = match req.headers().get(header::IF_MATCH) {
        Some(h) => Some(h.to_str().ok().and_then(parse_etag).ok_or_else(|| {
            FhirError::invalid("If-Match must be a version ETag such as W/\"1\"")
        })?),
        None => None,
    };

    for _ in 0..ATTEMPTS {
        let current = state
            .store
            .read(&instance, &rt, &id)
            .await?
            .ok_or_else(|| FhirError::ResourceNotFound {
                resource_type: rt.to_string(),
                id: id.to_string(),
            })?;
        let Some(mut doc) = current.body.clone() else {
            return Err(FhirError::Gone {
                resource_type: rt.to_string(),
                id: id.to_string(),
                version: current.version,
            });
        };
        if let Some(wanted) = if_match {
            if wanted != current.version {
                return Err(FhirError::VersionMismatch {
                    current: current.version,
                    wanted,
                });
            }
        }
        apply(&mut doc, &operations, &rt, &id)?;
        match state
            .store
            .write(
                &instance,
                &rt,
                &id,
                doc,
                Method::Patch,
                Some(current.version),
            )
            .await
        {
            Ok(written) => {
                let base = base_url(&req, &state, &instance);
                return Ok(version_response(
                    HttpResponse::Ok(),
                    &written.version,
                    &base,
                    false,
                    prefer_return(&req),
                ));
            }
            // Someone wrote in between: patch the newer version (unless the client pinned one).
            Err(FhirError::VersionMismatch { .. }) if if_match.is_none() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FhirError::Conflict(format!(
        "{rt}/{id} kept changing; retry the patch"
    )))
}

/// Applies a JSON Patch to a resource as a whole or not at all; the result must still be the
/// same resource (type and id).
pub(crate) fn apply(
    doc: &mut Value,
    operations: &json_patch::Patch,
    rt: &ResourceType,
    id: &ResourceId,
) -> Result<(), FhirError> {
    json_patch::patch(doc, operations).map_err(|e| {
        FhirError::Invalid(vec![Issue {
            code: "processing",
            diagnostics: format!("the patch cannot be applied: {e}"),
            expression: None,
        }])
    })?;
    if doc.get("resourceType").and_then(Value::as_str) != Some(rt.as_str())
        || doc.get("id").and_then(Value::as_str) != Some(id.as_str())
    {
        return Err(FhirError::invalid(
            "a patch may not change the resource's type or id",
        ));
    }
    Ok(())
}
