//! The MedTech service's HTTP API, per instance (`/{workspace}-{service}/...`):
//! - `PUT|GET /{instance}/mappings/device`, `.../mappings/fhir`, `.../destination`: the
//!   instance's configuration ([`configure`]), validated on the way in;
//! - `POST /{instance}/ingest`: device messages over HTTP onto the device topic ([`ingest`]);
//! - `POST /{instance}/debug` and `POST /debug`: the mapping debugger ([`debugger`]).

pub mod configure;
pub mod debugger;
pub mod ingest;

use actix_web::{web, HttpRequest};
use futures::StreamExt;
use hds_core::bus::SharedBus;
use hds_core::db::Database;
use hds_core::names::InstanceName;
use hds_core::provisioning::InstanceRegistry;

use crate::error::MedtechError;
use crate::pipeline::Pipelines;
use crate::settings::MedtechSettings;

pub struct ApiState {
    pub db: Database,
    pub bus: SharedBus,
    pub registry: InstanceRegistry,
    pub pipelines: Pipelines,
    pub settings: MedtechSettings,
}

pub type Caller = hds_core::ops::Caller<MedtechError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/debug", web::post().to(debugger::debug_any))
        .route(
            "/{instance}/mappings/device",
            web::put().to(configure::put_device_mapping),
        )
        .route(
            "/{instance}/mappings/device",
            web::get().to(configure::get_device_mapping),
        )
        .route(
            "/{instance}/mappings/fhir",
            web::put().to(configure::put_fhir_mapping),
        )
        .route(
            "/{instance}/mappings/fhir",
            web::get().to(configure::get_fhir_mapping),
        )
        .route(
            "/{instance}/destination",
            web::put().to(configure::put_destination),
        )
        .route(
            "/{instance}/destination",
            web::get().to(configure::get_destination),
        )
        .route("/{instance}/ingest", web::post().to(ingest::ingest))
        .route(
            "/{instance}/debug",
            web::post().to(debugger::debug_instance),
        );
}

/// The instance the path names, if this service has it.
pub async fn instance(req: &HttpRequest, state: &ApiState) -> Result<InstanceName, MedtechError> {
    let raw = req.match_info().get("instance").unwrap_or_default();
    let name: InstanceName = raw
        .parse()
        .map_err(|_| MedtechError::NotFound(format!("{} {}", req.method(), req.path())))?;
    match state.registry.get(&name).await? {
        Some(_) => Ok(name),
        None => Err(MedtechError::UnknownInstance(name.to_string())),
    }
}

/// The request body, refused with 413 beyond `limit` bytes.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, MedtechError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| MedtechError::BadRequest(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(MedtechError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body that must be UTF-8 text (mappings keep their lines for error positions).
pub fn text(body: Vec<u8>) -> Result<String, MedtechError> {
    String::from_utf8(body)
        .map_err(|_| MedtechError::BadRequest("the body is not UTF-8 text".into()))
}
