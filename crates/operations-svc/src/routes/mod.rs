//! Where URLs meet handlers: the `Microsoft.HealthcareApis` resource-provider paths.
//!
//! Every answer of the management API carries `x-ms-request-id` (and echoes
//! `x-ms-client-request-id`), errors included, as ARM's RPC asks.

mod dicom_services;
mod fhir_destinations;
mod fhir_services;
mod iot_connectors;
mod operation_results;
mod provider_operations;
mod resource;
mod workspaces;

use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest};
use hds_core::auth::Authenticator;
use hds_core::db::Database;
use hds_core::outbox::RelayWaker;
use serde::Deserialize;

use crate::error::ArmError;
use crate::resources::ServiceUrls;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Authenticator>,
    pub db: Database,
    pub relay: RelayWaker,
    /// Seconds a client should wait before polling an operation again.
    pub retry_after_secs: u32,
    /// Items on a list page when the client sends no `$top`.
    pub page_size: usize,
    /// Where the data plane serves instances, for `serviceUrl`.
    pub service_urls: ServiceUrls,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    let scope = web::scope("")
        .app_data(web::QueryConfig::default().error_handler(|err, _req| {
            ArmError::InvalidQuery(err.to_string()).into()
        }))
        .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
        .app_data(web::Data::from(state.auth.clone()))
        .app_data(web::Data::new(state.db.clone()))
        .app_data(web::Data::new(state.clone()))
        .wrap_fn(|req, srv| {
            let client_id = req.headers().get(&CLIENT_REQUEST_ID).cloned();
            let fut = srv.call(req);
            async move {
                let mut res = fut.await?;
                let id = uuid::Uuid::new_v4().to_string();
                let headers = res.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&id) {
                    headers.insert(REQUEST_ID, v);
                }
                if let Some(c) = client_id {
                    headers.insert(CLIENT_REQUEST_ID, c);
                }
                Ok(res)
            }
        })
        .route(
            "/subscriptions/{subscription}/providers/Microsoft.HealthcareApis/locations/{location}/operationresults/{operation}",
            web::get().to(operation_results::get),
        )
        .route(
            "/providers/Microsoft.HealthcareApis/operations",
            web::get().to(provider_operations::list),
        )
        .configure(workspaces::configure)
        .configure(fhir_services::configure)
        .configure(dicom_services::configure)
        .configure(iot_connectors::configure)
        .configure(fhir_destinations::configure)
        .default_service(web::to(unknown));
    cfg.service(scope);
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

async fn method_not_allowed(req: HttpRequest) -> Result<actix_web::HttpResponse, ArmError> {
    Err(ArmError::MethodNotAllowed(req.method().to_string()))
}

/// The prefix of the resource-group paths.
const GROUP: &str =
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.HealthcareApis";
