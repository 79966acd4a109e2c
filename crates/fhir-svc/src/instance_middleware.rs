//! Around every request of the FHIR API: find the addressed instance once (its settings go
//! into the request's extensions for [`crate::http::Instance`], the caller's token check and
//! the handlers), and apply the instance's CORS policy: answer preflights, add the
//! `Access-Control-*` headers to responses of allowed origins.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use hds_core::names::InstanceName;
use hds_core::provisioning::InstanceRegistry;

use crate::error::FhirError;
use crate::instance_config::Resolved;
use hds_core::cors::CorsPolicy;

/// The instance a path names (its first segment), if it is an instance name at all.
fn instance_of(path: &str) -> Option<InstanceName> {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
}

/// Finds the request's instance in the registry; `None` for paths that name no instance.
async fn resolve(req: &ServiceRequest) -> Result<Option<Resolved>, FhirError> {
    let Some(name) = instance_of(req.path()) else {
        return Ok(None);
    };
    let registry = req
        .app_data::<web::Data<InstanceRegistry>>()
        .cloned()
        .ok_or_else(|| FhirError::Internal("no instance registry".into()))?;
    let found = registry.get(&name).await?;
    Ok(Some(Resolved::of(name, found.as_ref())))
}

/// The middleware, for `Scope::wrap(from_fn(around))`.
pub async fn around(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let resolved = match resolve(&req).await {
        Ok(r) => r,
        Err(e) => return Ok(req.error_response(e)),
    };
    let cors = resolved
        .as_ref()
        .and_then(|r| r.config.as_ref())
        .and_then(|c| c.cors.clone());
    if let Some(r) = resolved {
        req.extensions_mut().insert(r);
    }
    let Some(policy) = cors else {
        return next.call(req).await;
    };
    if CorsPolicy::is_preflight(req.method(), req.headers()) {
        let res = policy.preflight(req.headers());
        return Ok(req.into_response(res));
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = next.call(req).await?;
    policy.decorate(origin.as_ref(), res.headers_mut());
    Ok(res)
}
