//! update: `PUT [base]/[type]/[id]` — a new version, or the resource created with the
//! client's id (update-as-create, 201). `If-Match: W/"n"` makes it conditional on the current
//! version: 412 if another write came first.
//!
//! Conditional update: `PUT [base]/[type]?[search]` — no match creates the resource (with the
//! body's id, or a new one), one match updates it (the body's id, if any, must be that one),
//! several are 412.
//!
//! Under the instance's `versioned-update` policy an update of an existing resource without
//! `If-Match` is refused (412, see [`crate::versioning`]).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use serde_json::Value;

use super::conditional::{update_target, Matches};
use super::FhirCaller;
use crate::domain::parse_etag;
use crate::error::FhirError;
use crate::http::{
    base_url, check_type, prefer_return, read_resource, resource_id, resource_type,
    version_response, Config, FhirState, Instance,
};
use crate::search::query;
use crate::store::Method;
use crate::versioning;

pub async fn update(
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
    let resource = read_resource(&req, body, state.max_body_bytes).await?;
    check_type(&resource, &rt)?;
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id.as_str() => {}
        Some(body_id) => {
            return Err(FhirError::invalid(format!(
                "the resource's id '{body_id}' does not match the URL's id '{id}'"
            )))
        }
        None => return Err(FhirError::invalid("an updated resource must carry its id")),
    }
    let expected = if_match(&req)?;
    if expected.is_none() && versioning::requires_if_match(&config, &rt) {
        // Creating needs no version: only an existing, undeleted resource is refused. (A
        // creation racing this read may still be replaced without If-Match.)
        let exists = state
            .store
            .read(&instance, &rt, &id)
            .await?
            .is_some_and(|v| v.body.is_some());
        versioning::check_update(&config, &rt, expected, exists)?;
    }
    let written = state
        .store
        .write(
            &instance,
            &rt,
            &id,
            resource,
            Method::Put,
            expected,
            versioning::history(&config, &rt),
        )
        .await?;
    let base = base_url(&req, &state, &instance);
    let builder = if written.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(version_response(
        builder,
        &written.version,
        &base,
        true,
        prefer_return(&req),
    ))
}

fn if_match(req: &HttpRequest) -> Result<Option<i64>, FhirError> {
    Ok(match req.headers().get(header::IF_MATCH) {
        Some(h) => Some(h.to_str().ok().and_then(parse_etag).ok_or_else(|| {
            FhirError::invalid("If-Match must be a version ETag such as W/\"1\"")
        })?),
        None => None,
    })
}

pub async fn conditional_update(
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
    let mut resource = read_resource(&req, body, state.max_body_bytes).await?;
    check_type(&resource, &rt)?;
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let found = Matches::of(state.store.find(&instance, &rt, &conditions, 2).await?);
    let exists = matches!(found, Matches::One(_));
    let id = update_target(found, body_id.as_deref())?;
    let expected = if_match(&req)?;
    versioning::check_update(&config, &rt, expected, exists)?;
    if let Value::Object(o) = &mut resource {
        o.insert("id".into(), Value::String(id.to_string()));
    }
    let written = state
        .store
        .write(
            &instance,
            &rt,
            &id,
            resource,
            Method::Put,
            expected,
            versioning::history(&config, &rt),
        )
        .await?;
    let base = base_url(&req, &state, &instance);
    let builder = if written.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(version_response(
        builder,
        &written.version,
        &base,
        true,
        prefer_return(&req),
    ))
}
