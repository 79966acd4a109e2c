//! Where URLs meet handlers.
//!
//! `GET /instances` lists the FHIR services this process serves (for operators and the
//! end-to-end tests). Every path under `/{workspace}-{service}/` belongs to that instance;
//! the FHIR interactions themselves come with the FHIR REST issue.

mod instances;

use std::sync::Arc;

use actix_web::{web, HttpRequest};
use hds_core::auth::Authenticator;
use hds_core::names::InstanceName;
use hds_core::provisioning::InstanceRegistry;

use crate::error::FhirError;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Authenticator>,
    pub registry: InstanceRegistry,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.app_data(web::Data::from(state.auth.clone()))
        .app_data(web::Data::new(state.registry.clone()))
        .route("/instances", web::get().to(instances::list))
        .default_service(web::to(unknown));
}

/// Anything unrouted: 404 as an OperationOutcome, naming the instance if it does not exist.
async fn unknown(
    req: HttpRequest,
    registry: web::Data<InstanceRegistry>,
) -> Result<actix_web::HttpResponse, FhirError> {
    let first = req
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    match first.parse::<InstanceName>() {
        Ok(name) if registry.get(&name).await?.is_none() => {
            Err(FhirError::UnknownInstance(name.to_string()))
        }
        _ => Err(FhirError::NotFound(format!(
            "{} {}",
            req.method(),
            req.path()
        ))),
    }
}
