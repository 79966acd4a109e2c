//! Setting and reading an instance's configuration. A PUT validates the document (every
//! problem answered at once, with its JSON path and line), stores it as written and hands it
//! to the running pipeline: the change applies to the next window, with no restart.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use super::{instance, read_body, text, ApiState, Caller};
use crate::config::store::{self, Part as StoredPart};
use crate::config::Destination;
use crate::error::MedtechError;
use crate::fhir_mapping::FhirMapping;
use crate::template::DeviceMapping;

/// The parts this API sets and reads. The ingestion endpoint is not among them: it is the
/// IotConnector's, set by provisioning only, and changing it moves the consumer group.
#[derive(Debug, Clone, Copy)]
enum Part {
    DeviceMapping,
    FhirMapping,
    Destination,
}

impl Part {
    fn stored(self) -> StoredPart {
        match self {
            Part::DeviceMapping => StoredPart::DeviceMapping,
            Part::FhirMapping => StoredPart::FhirMapping,
            Part::Destination => StoredPart::Destination,
        }
    }
}

async fn put(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Payload,
    part: Part,
) -> Result<HttpResponse, MedtechError> {
    caller.require(Permission::Manage)?;
    let name = instance(&req, &state).await?;
    let source = text(read_body(body, state.settings.max_body_bytes).await?)?;
    let stored = match part {
        Part::DeviceMapping => DeviceMapping::parse(&source)
            .map(|_| source)
            .map_err(|errors| invalid("InvalidDeviceMapping", "device mapping", errors))?,
        Part::FhirMapping => FhirMapping::parse(&source)
            .map(|_| source)
            .map_err(|errors| invalid("InvalidFhirMapping", "FHIR destination mapping", errors))?,
        Part::Destination => Destination::parse(&source)
            .map(|d| serde_json::to_string(&d).unwrap_or_default())
            .map_err(|errors| invalid("InvalidDestination", "destination", errors))?,
    };
    let revision = store::set(&state.db, &name.to_string(), &[(part.stored(), stored)]).await?;
    state.pipelines.refresh(&name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revision": revision })))
}

fn invalid(
    code: &'static str,
    what: &'static str,
    errors: crate::mapping_doc::InvalidMapping,
) -> MedtechError {
    MedtechError::Invalid { code, what, errors }
}

async fn get(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    part: Part,
) -> Result<HttpResponse, MedtechError> {
    caller.require(Permission::ManageRead)?;
    let name = instance(&req, &state).await?;
    let config = store::get(&state.db, &name.to_string()).await?;
    let body = match part {
        Part::DeviceMapping => config
            .device_mapping
            .ok_or(MedtechError::NotConfigured("device mapping"))?,
        Part::FhirMapping => config
            .fhir_mapping
            .ok_or(MedtechError::NotConfigured("FHIR destination mapping"))?,
        Part::Destination => serde_json::to_string(
            &config
                .destination
                .ok_or(MedtechError::NotConfigured("destination"))?,
        )
        .unwrap_or_default(),
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

pub async fn put_device_mapping(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Payload,
) -> Result<HttpResponse, MedtechError> {
    put(req, caller, state, body, Part::DeviceMapping).await
}

pub async fn put_fhir_mapping(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Payload,
) -> Result<HttpResponse, MedtechError> {
    put(req, caller, state, body, Part::FhirMapping).await
}

pub async fn put_destination(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Payload,
) -> Result<HttpResponse, MedtechError> {
    put(req, caller, state, body, Part::Destination).await
}

pub async fn get_device_mapping(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, MedtechError> {
    get(req, caller, state, Part::DeviceMapping).await
}

pub async fn get_fhir_mapping(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, MedtechError> {
    get(req, caller, state, Part::FhirMapping).await
}

pub async fn get_destination(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, MedtechError> {
    get(req, caller, state, Part::Destination).await
}
