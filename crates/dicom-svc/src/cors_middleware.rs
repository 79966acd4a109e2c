//! Applies the addressed instance's `corsConfiguration` (see [`hds_core::cors`]) around the
//! DICOMweb API: preflights are answered here, responses to allowed origins get the
//! `Access-Control-*` headers. The policy is read from the instance registry on each request,
//! so a new configuration applies as soon as the provisioning command is handled.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;
use hds_core::names::InstanceName;
use hds_core::provisioning::InstanceRegistry;

use hds_core::cors::CorsPolicy;

/// The CORS policy of the instance a path names, if it has one.
async fn policy_of(req: &ServiceRequest) -> Option<CorsPolicy> {
    let name: InstanceName = req
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let registry = req.app_data::<web::Data<InstanceRegistry>>()?.clone();
    match registry.get(&name).await {
        Ok(found) => CorsPolicy::from_properties(&found?.properties),
        Err(e) => {
            // The handler meets the same failure and answers it; CORS just stays off.
            tracing::warn!(error = %e, "instance lookup for CORS failed");
            None
        }
    }
}

/// The middleware, for `Scope::wrap(from_fn(around))` (innermost, so that it sees the
/// router's responses).
pub async fn around(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(policy) = policy_of(&req).await else {
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
