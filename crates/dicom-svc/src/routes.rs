//! Where URLs meet handlers: the DICOMweb API of an instance under `/{instance}/v{version}/`.
//!
//! Every route is versioned, as on Azure: a path without a version segment matches nothing
//! (404), an unknown version is 400 (`UnsupportedApiVersion`), and every versioned response
//! says `api-supported-versions`. Responses are gzip-compressed when the client accepts it,
//! except DICOM bodies (see `wado::retrieve`).

use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::web;

use crate::changefeed::{changefeed, latest};
use crate::delete::delete;
use crate::domain::ApiVersion;
use crate::qido;
use crate::stow::store;
use crate::wado::{frames::frames, metadata::metadata, rendered::rendered, retrieve::retrieve};

const STUDY: &str = "/studies/{study}";
const SERIES: &str = "/studies/{study}/series/{series}";
const INSTANCE: &str = "/studies/{study}/series/{series}/instances/{sop}";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/{instance}/{version:v[^/]+}")
            // Innermost: CORS headers land on every answer of the router, errors included.
            .wrap(actix_web::middleware::from_fn(
                crate::cors_middleware::around,
            ))
            .wrap(Compress::default())
            .wrap(DefaultHeaders::new().add(("api-supported-versions", ApiVersion::SUPPORTED)))
            // Store (STOW-RS)
            .route("/studies", web::post().to(store))
            .route(STUDY, web::post().to(store))
            // Search (QIDO-RS)
            .route("/studies", web::get().to(qido::studies))
            .route("/series", web::get().to(qido::series))
            .route("/instances", web::get().to(qido::instances))
            .route(&format!("{STUDY}/series"), web::get().to(qido::series))
            .route(
                &format!("{STUDY}/instances"),
                web::get().to(qido::instances),
            )
            .route(
                &format!("{SERIES}/instances"),
                web::get().to(qido::instances),
            )
            // Azure's change feed
            .route("/changefeed", web::get().to(changefeed))
            .route("/changefeed/latest", web::get().to(latest))
            // Retrieve (WADO-RS)
            .route(STUDY, web::get().to(retrieve))
            .route(SERIES, web::get().to(retrieve))
            .route(INSTANCE, web::get().to(retrieve))
            .route(&format!("{STUDY}/metadata"), web::get().to(metadata))
            .route(&format!("{SERIES}/metadata"), web::get().to(metadata))
            .route(&format!("{INSTANCE}/metadata"), web::get().to(metadata))
            .route(
                &format!("{INSTANCE}/frames/{{frames}}"),
                web::get().to(frames),
            )
            .route(&format!("{INSTANCE}/rendered"), web::get().to(rendered))
            .route(
                &format!("{INSTANCE}/frames/{{frame}}/rendered"),
                web::get().to(rendered),
            )
            // Delete (Azure's extension)
            .route(STUDY, web::delete().to(delete))
            .route(SERIES, web::delete().to(delete))
            .route(INSTANCE, web::delete().to(delete)),
    );
}
