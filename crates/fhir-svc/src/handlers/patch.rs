//! patch: `PATCH [base]/[type]/[id]` with a JSON Patch document (RFC 6902,
//! `application/json-patch+json`) or a FHIRPath Patch (a `Parameters` resource,
//! `application/fhir+json`; R4 fhirpatch.html). The patch applies to the current version as a
//! whole or not at all; the result must still be the same resource (type and id), and is
//! stored as a new version. `If-Match` makes it conditional; without it, a concurrent write
//! makes the patch apply again to the newer version. Under the instance's `versioned-update`
//! policy a patch without `If-Match` is refused (412, see [`crate::versioning`]).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::Value;

use super::conditional::{several, Matches};
use super::FhirCaller;
use crate::domain::{parse_etag, ResourceId, ResourceType};
use crate::error::{FhirError, Issue};
use crate::http::{
    base_url, prefer_return, read_body, resource_id, resource_type, version_response, Config,
    FhirState, Instance,
};
use crate::instance_config::InstanceConfig;
use crate::search::query;
use crate::store::Method;
use crate::versioning;

/// Attempts when concurrent writes keep moving the resource on under an unconditional patch.
const ATTEMPTS: usize = 5;

pub async fn patch(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    path: web::Path<(String, String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Write)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let patch = read_patch(&req, body, &state).await?;
    patch_resource(&req, &state, &config, &instance, &rt, &id, &patch).await
}

/// Conditional patch: `PATCH [base]/[type]?[search]` patches the one resource the search
/// matches (none: 404, several: 412).
pub async fn conditional_patch(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Write)?;
    let rt = resource_type(&path.1)?;
    let conditions = query::parse(
        &state.store.catalog(&instance).await?,
        &rt,
        req.query_string(),
    )?;
    let patch = read_patch(&req, body, &state).await?;
    let id = match Matches::of(state.store.find(&instance, &rt, &conditions, 2).await?) {
        Matches::One(id) => resource_id(&id)?,
        Matches::None => {
            return Err(FhirError::ResourceNotFound {
                resource_type: rt.to_string(),
                id: format!("(matching '{}')", req.query_string()),
            })
        }
        Matches::Several => return Err(several("patch")),
    };
    patch_resource(&req, &state, &config, &instance, &rt, &id, &patch).await
}

async fn read_patch(
    req: &HttpRequest,
    body: web::Payload,
    state: &FhirState,
) -> Result<Patch, FhirError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let raw = read_body(req, body, state.max_body_bytes).await?;
    Patch::parse(&ct, &raw)
}

async fn patch_resource(
    req: &HttpRequest,
    state: &FhirState,
    config: &InstanceConfig,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    patch: &Patch,
) -> Result<HttpResponse, FhirError> {
    let if_match = match req.headers().get(header::IF_MATCH) {
        Some(h) => Some(h.to_str().ok().and_then(parse_etag).ok_or_else(|| {
            FhirError::invalid("If-Match must be a version ETag such as W/\"1\"")
        })?),
        None => None,
    };
    for _ in 0..ATTEMPTS {
        let current = state.store.read(instance, rt, id).await?.ok_or_else(|| {
            FhirError::ResourceNotFound {
                resource_type: rt.to_string(),
                id: id.to_string(),
            }
        })?;
        let Some(mut doc) = current.body.clone() else {
            return Err(FhirError::Gone {
                resource_type: rt.to_string(),
                id: id.to_string(),
                version: current.version,
            });
        };
        versioning::check_update(config, rt, if_match, true)?;
        if let Some(wanted) = if_match {
            if wanted != current.version {
                return Err(FhirError::VersionMismatch {
                    current: current.version,
                    wanted,
                });
            }
        }
        patch.apply(&mut doc, rt, id)?;
        match state
            .store
            .write(
                instance,
                rt,
                id,
                doc,
                Method::Patch,
                Some(current.version),
                versioning::history(config, rt),
            )
            .await
        {
            Ok(written) => {
                let base = base_url(req, state, instance);
                return Ok(version_response(
                    HttpResponse::Ok(),
                    &written.version,
                    &base,
                    false,
                    prefer_return(req),
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

/// A patch document of either kind FHIR R4 defines.
#[derive(Debug, Clone)]
pub(crate) enum Patch {
    /// RFC 6902, `application/json-patch+json`.
    Json(json_patch::Patch),
    /// A `Parameters` resource of `operation`s (R4 fhirpatch.html).
    FhirPath(Value),
}

impl Patch {
    /// The patch in a PATCH request's body, by its Content-Type.
    pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Self, FhirError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => serde_json::from_slice(body)
                .map(Patch::Json)
                .map_err(|e| {
                    FhirError::invalid(format!("the body is not a JSON Patch document: {e}"))
                }),
            "application/fhir+json" | "application/json" => {
                let parameters: Value = serde_json::from_slice(body)
                    .map_err(|e| FhirError::invalid(format!("the body is not JSON: {e}")))?;
                Self::fhirpath(parameters)
            }
            other => Err(FhirError::UnsupportedMediaType(format!(
                "{other} (PATCH takes application/json-patch+json or a FHIRPath Patch as application/fhir+json)"
            ))),
        }
    }

    /// A FHIRPath Patch: the body must be a `Parameters` resource.
    pub(crate) fn fhirpath(parameters: Value) -> Result<Self, FhirError> {
        if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(FhirError::invalid(
                "a FHIRPath Patch is a Parameters resource",
            ));
        }
        Ok(Patch::FhirPath(parameters))
    }

    /// Applies the patch to a resource as a whole or not at all; the result must still be
    /// the same resource (type and id).
    pub(crate) fn apply(
        &self,
        doc: &mut Value,
        rt: &ResourceType,
        id: &ResourceId,
    ) -> Result<(), FhirError> {
        let cannot = |e: &dyn std::fmt::Display| {
            FhirError::Invalid(vec![Issue {
                code: "processing",
                diagnostics: format!("the patch cannot be applied: {e}"),
                expression: None,
            }])
        };
        match self {
            Patch::Json(operations) => {
                json_patch::patch(doc, operations).map_err(|e| cannot(&e))?
            }
            Patch::FhirPath(parameters) => {
                *doc = fhirpath::patch::apply(doc, parameters).map_err(|e| cannot(&e))?
            }
        }
        if doc.get("resourceType").and_then(Value::as_str) != Some(rt.as_str())
            || doc.get("id").and_then(Value::as_str) != Some(id.as_str())
        {
            return Err(FhirError::invalid(
                "a patch may not change the resource's type or id",
            ));
        }
        Ok(())
    }
}
