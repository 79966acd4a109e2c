//! Where URLs meet handlers: the `Microsoft.HealthcareApis` resource-provider paths.

mod operation_results;

use std::sync::Arc;

use actix_web::{web, HttpRequest};
use hds_core::auth::Authenticator;
use hds_core::db::Database;
use serde::Deserialize;

use crate::error::ArmError;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Authenticator>,
    pub db: Database,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _req| {
        ArmError::InvalidQuery(err.to_string()).into()
    }))
    .app_data(web::Data::from(state.auth.clone()))
        .app_data(web::Data::new(state.db.clone()))
        .route(
            "/subscriptions/{subscription}/providers/Microsoft.HealthcareApis/locations/{location}/operationresults/{operation}",
            web::get().to(operation_results::get),
        )
        .default_service(web::to(unknown));
}

/// `?api-version=`: required on every ARM request, and only the version we implement.
#[derive(Debug, Deserialize)]
pub struct ApiVersion {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

impl ApiVersion {
    pub fn check(&self) -> Result<(), ArmError> {
        match self.api_version.as_deref() {
            None | Some("") => Err(ArmError::MissingApiVersion),
            Some(crate::API_VERSION) => Ok(()),
            Some(other) => Err(ArmError::InvalidApiVersion(other.to_owned())),
        }
    }
}

async fn unknown(req: HttpRequest) -> Result<actix_web::HttpResponse, ArmError> {
    Err(ArmError::PathNotFound(req.path().to_owned()))
}
