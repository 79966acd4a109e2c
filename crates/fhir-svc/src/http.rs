//! The FHIR HTTP conventions every handler shares: the instance in the path, request bodies,
//! `Prefer`, and resource responses with `ETag`, `Last-Modified` and `Location`.

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use hds_core::names::InstanceName;
use hds_core::provisioning::InstanceRegistry;
use serde_json::Value;
use std::sync::Arc;

use crate::domain::{etag, ResourceId, ResourceType};
use crate::error::FhirError;
use crate::instance_config::{InstanceConfig, Resolved};
use crate::store::{Store, Version};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Bodies above this size are parsed on the blocking pool.
const LARGE_BODY: usize = 256 * 1024;

/// What handlers need besides the request.
#[derive(Clone)]
pub struct FhirState {
    pub store: Store,
    pub reindexer: crate::reindex::Reindexer,
    pub exporter: crate::export::Exporter,
    pub max_body_bytes: usize,
    pub max_bundle_entries: usize,
    pub max_search_count: usize,
    pub public_base_url: Option<String>,
}

/// The FHIR service instance the request addresses (first path segment), known to exist.
pub struct Instance(pub InstanceName);

impl FromRequest for Instance {
    type Error = FhirError;
    type Future = LocalBoxFuture<'static, Result<Self, FhirError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let resolved = resolve(&req).await?;
            match resolved.config {
                Some(_) => Ok(Instance(resolved.name)),
                None => Err(FhirError::UnknownInstance(resolved.name.to_string())),
            }
        })
    }
}

/// The settings of the instance the request addresses, known to exist.
pub struct Config(pub Arc<InstanceConfig>);

impl FromRequest for Config {
    type Error = FhirError;
    type Future = LocalBoxFuture<'static, Result<Self, FhirError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let resolved = resolve(&req).await?;
            resolved
                .config
                .map(Config)
                .ok_or_else(|| FhirError::UnknownInstance(resolved.name.to_string()))
        })
    }
}

/// The request's instance: as the instance middleware found it, or looked up here (a route
/// outside the middleware).
pub async fn resolve(req: &HttpRequest) -> Result<Resolved, FhirError> {
    if let Some(r) = Resolved::from_request(req) {
        return Ok(r);
    }
    let raw = req.match_info().get("instance").unwrap_or_default();
    let name: InstanceName = raw
        .parse()
        .map_err(|_| FhirError::NotFound(format!("{} {}", req.method(), req.path())))?;
    let registry = req
        .app_data::<web::Data<InstanceRegistry>>()
        .ok_or_else(|| FhirError::Internal("no instance registry".into()))?;
    let found = registry.get(&name).await?;
    Ok(Resolved::of(name, found.as_ref()))
}

pub fn resource_type(raw: &str) -> Result<ResourceType, FhirError> {
    raw.parse().map_err(|e: String| FhirError::NotFound(e))
}

pub fn resource_id(raw: &str) -> Result<ResourceId, FhirError> {
    raw.parse().map_err(FhirError::invalid)
}

/// The most a body's buffer takes before its bytes arrive.
const PREALLOCATED_BODY: usize = 8 << 20;

/// Reads a request body of at most `limit` bytes (413 beyond).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, FhirError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<usize>().ok())
        .unwrap_or(0);
    // Room for the declared length at once (up to a few megabytes, whatever a client
    // declares): a bundle would otherwise be copied on every doubling of the buffer. The
    // limit is checked on what arrives.
    let mut body = web::BytesMut::with_capacity(declared.min(limit).min(PREALLOCATED_BODY));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| FhirError::invalid(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(FhirError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON resource body: content type checked, size limited, must be a JSON object.
pub async fn read_resource(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Value, FhirError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or_default().trim();
        if !matches!(
            mime,
            "application/fhir+json" | "application/json" | "application/json+fhir"
        ) {
            return Err(FhirError::UnsupportedMediaType(ct));
        }
    }
    let body = read_body(req, payload, limit).await?;
    let body_len = body.len();
    let parse = move || {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| FhirError::invalid(format!("the body is not valid JSON: {e}")))
    };
    // A large body takes a while to parse: off the async workers, so others are not stalled.
    let value = if body_len > LARGE_BODY {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| FhirError::Internal(format!("parsing the body: {e}")))??
    } else {
        parse()?
    };
    if !value.is_object() {
        return Err(FhirError::invalid(
            "the body must be a JSON object (a FHIR resource)",
        ));
    }
    Ok(value)
}

/// Checks `resourceType` of a body against the URL's type.
pub fn check_type(resource: &Value, rt: &ResourceType) -> Result<(), FhirError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rt.as_str() => Ok(()),
        Some(t) => Err(FhirError::invalid(format!(
            "resourceType '{t}' does not match the URL's type '{rt}'"
        ))),
        None => Err(FhirError::invalid("the resource has no resourceType")),
    }
}

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub fn prefer_return(req: &HttpRequest) -> Return {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| match p.trim() {
            "return=minimal" => Some(Return::Minimal),
            "return=representation" => Some(Return::Representation),
            "return=OperationOutcome" => Some(Return::OperationOutcome),
            _ => None,
        })
        .unwrap_or(Return::Representation)
}

/// The service's base URL for links: the configured public URL or the request's own.
pub fn base_url(req: &HttpRequest, state: &FhirState, instance: &InstanceName) -> String {
    let root = match &state.public_base_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    format!("{root}/{instance}")
}

fn http_date(v: &Version) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::from(v.last_updated))
}

/// A response carrying one version: `ETag`, `Last-Modified`, and for writes `Location`.
pub fn version_response(
    builder: actix_web::HttpResponseBuilder,
    v: &Version,
    base: &str,
    location: bool,
    ret: Return,
) -> HttpResponse {
    respond(
        builder,
        v,
        || v.body.as_ref().map(Value::to_string),
        base,
        location,
        ret,
    )
}

/// As [`version_response`], for a version whose body is its stored text: sent as it is.
pub fn stored_response(
    builder: actix_web::HttpResponseBuilder,
    s: &crate::store::Stored,
    base: &str,
    location: bool,
    ret: Return,
) -> HttpResponse {
    respond(builder, &s.version, || s.text.clone(), base, location, ret)
}

fn respond(
    mut builder: actix_web::HttpResponseBuilder,
    v: &Version,
    body: impl FnOnce() -> Option<String>,
    base: &str,
    location: bool,
    ret: Return,
) -> HttpResponse {
    builder.insert_header((header::ETAG, etag(v.version)));
    builder.insert_header((header::LAST_MODIFIED, http_date(v)));
    if location {
        let url = format!("{base}/{}/{}/_history/{}", v.resource_type, v.id, v.version);
        if let Ok(value) = HeaderValue::from_str(&url) {
            builder.insert_header((header::LOCATION, value));
        }
    }
    match ret {
        Return::Minimal => builder.finish(),
        Return::OperationOutcome => builder.content_type(FHIR_JSON).body(
            crate::error::operation_outcome(vec![serde_json::json!({
                "severity": "information",
                "code": "informational",
                "diagnostics": format!("{}/{} version {} stored", v.resource_type, v.id, v.version),
            })])
            .to_string(),
        ),
        Return::Representation => match body() {
            Some(text) => builder.content_type(FHIR_JSON).body(text),
            None => builder.finish(),
        },
    }
}
