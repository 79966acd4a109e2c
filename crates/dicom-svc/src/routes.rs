//! Where URLs meet handlers: the DICOMweb API of an instance under `/{instance}/v{version}/`.
//!
//! The DICOMweb routes are served twice: at the base URL and inside a data partition
//! (`/{instance}/v{n}/partitions/{partition}/...`, see `partitions`).
//!
//! Every route is versioned, as on Azure: a path without a version segment matches nothing
//! (404), an unknown version is 400 (`UnsupportedApiVersion`), and every versioned response
//! says `api-supported-versions`. Responses are gzip-compressed when the client accepts it,
//! except DICOM bodies (see `wado::retrieve`).

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::{web, Scope};

use crate::changefeed::{changefeed, latest};
use crate::delete::delete;
use crate::domain::ApiVersion;
use crate::partitions;
use crate::qido;
use crate::stow::store;
use crate::wado::{frames::frames, metadata::metadata, rendered::rendered, retrieve::retrieve};

const STUDY: &str = "/studies/{study}";
const SERIES: &str = "/studies/{study}/series/{series}";
const INSTANCE: &str = "/studies/{study}/series/{series}/instances/{sop}";

pub fn configure(cfg: &mut web::ServiceConfig) {
    let api = web::scope("/{instance}/{version:v[^/]+}")
        // Innermost: CORS headers land on every answer of the router, errors included.
        .wrap(actix_web::middleware::from_fn(
            crate::cors_middleware::around,
        ))
        .wrap(Compress::default())
        .wrap(DefaultHeaders::new().add(("api-supported-versions", ApiVersion::SUPPORTED)))
        // Azure's change feed: at the base URL whether or not partitions are on.
        .route("/changefeed", web::get().to(changefeed))
        .route("/changefeed/latest", web::get().to(latest))
        // Data partitions (`partitions`): the list, and the DICOMweb routes inside one. Both
        // sets of DICOMweb routes are served always; the handlers' `Partitioned` extractor
        // answers the set that does not fit the instance's setting as Azure does.
        .route("/partitions", web::get().to(partitions::list));
    cfg.service(dicomweb(dicomweb(api, ""), "/partitions/{partition}"));
}

/// The DICOMweb routes (STOW, QIDO, WADO, delete) under `prefix`.
fn dicomweb<T>(scope: Scope<T>, prefix: &str) -> Scope<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    let at = |path: &str| format!("{prefix}{path}");
    scope
        // Store (STOW-RS)
        .route(&at("/studies"), web::post().to(store))
        .route(&at(STUDY), web::post().to(store))
        // Search (QIDO-RS)
        .route(&at("/studies"), web::get().to(qido::studies))
        .route(&at("/series"), web::get().to(qido::series))
        .route(&at("/instances"), web::get().to(qido::instances))
        .route(&at(&format!("{STUDY}/series")), web::get().to(qido::series))
        .route(
            &at(&format!("{STUDY}/instances")),
            web::get().to(qido::instances),
        )
        .route(
            &at(&format!("{SERIES}/instances")),
            web::get().to(qido::instances),
        )
        // Retrieve (WADO-RS)
        .route(&at(STUDY), web::get().to(retrieve))
        .route(&at(SERIES), web::get().to(retrieve))
        .route(&at(INSTANCE), web::get().to(retrieve))
        .route(&at(&format!("{STUDY}/metadata")), web::get().to(metadata))
        .route(&at(&format!("{SERIES}/metadata")), web::get().to(metadata))
        .route(
            &at(&format!("{INSTANCE}/metadata")),
            web::get().to(metadata),
        )
        .route(
            &at(&format!("{INSTANCE}/frames/{{frames}}")),
            web::get().to(frames),
        )
        .route(
            &at(&format!("{INSTANCE}/rendered")),
            web::get().to(rendered),
        )
        .route(
            &at(&format!("{INSTANCE}/frames/{{frame}}/rendered")),
            web::get().to(rendered),
        )
        // Delete (Azure's extension)
        .route(&at(STUDY), web::delete().to(delete))
        .route(&at(SERIES), web::delete().to(delete))
        .route(&at(INSTANCE), web::delete().to(delete))
}
