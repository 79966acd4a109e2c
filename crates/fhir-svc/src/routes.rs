//! Where URLs meet handlers: the FHIR RESTful API under `/{workspace}-{service}/`.

use actix_web::web;

use crate::handlers::{
    bundle, capabilities, create, delete, export, history, patch, purge_history, read, reindex,
    search, search_parameter_status, update, validate, vread,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // A query string that does not parse is a client mistake: 400 as an OperationOutcome.
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _req| {
        crate::error::FhirError::invalid(format!("the query string is invalid: {err}")).into()
    }));
    // One scope around the API, for the middleware that finds the instance and applies its
    // CORS policy; paths it does not route fall through to the service's not-found answer.
    let api = web::scope("")
        .wrap(actix_web::middleware::from_fn(
            crate::instance_middleware::around,
        ))
        .route(
            "/{instance}/metadata",
            web::get().to(capabilities::metadata),
        )
        .route("/{instance}/_history", web::get().to(history::system))
        .route("/{instance}/$reindex", web::post().to(reindex::start))
        .route("/{instance}/$export", web::get().to(export::system))
        .route(
            "/{instance}/Patient/$export",
            web::get().to(export::patient),
        )
        .route(
            "/{instance}/Group/{id}/$export",
            web::get().to(export::group),
        )
        .route(
            "/{instance}/_operations/export/{id}",
            web::get().to(export::status),
        )
        .route(
            "/{instance}/_operations/export/{id}",
            web::delete().to(export::cancel),
        )
        .route(
            "/{instance}/_operations/export/{id}/{file}",
            web::get().to(export::file),
        )
        .route(
            "/{instance}/_operations/reindex/{id}",
            web::get().to(reindex::status),
        )
        .route("/{instance}", web::post().to(bundle::process))
        .route("/{instance}", web::get().to(search::search_system))
        .route("/{instance}/", web::get().to(search::search_system))
        // Operations before the interactions whose `{id}` they would otherwise fill.
        .route(
            "/{instance}/SearchParameter/$status",
            web::get().to(search_parameter_status::status),
        )
        .route(
            "/{instance}/{type}/$validate",
            web::post().to(validate::validate_type),
        )
        .route(
            "/{instance}/{type}/{id}/$validate",
            web::post().to(validate::validate_instance),
        )
        .route(
            "/{instance}/{type}/{id}/$validate",
            web::get().to(validate::validate_stored),
        )
        .route(
            "/{instance}/{type}/_search",
            web::post().to(search::search_type_post),
        )
        .route("/{instance}/{type}", web::get().to(search::search_type))
        .route("/{instance}/{type}", web::post().to(create::create))
        .route(
            "/{instance}/{type}",
            web::put().to(update::conditional_update),
        )
        .route(
            "/{instance}/{type}",
            web::delete().to(delete::conditional_delete),
        )
        .route(
            "/{instance}/{type}",
            web::patch().to(patch::conditional_patch),
        )
        .route(
            "/{instance}/{type}/_history",
            web::get().to(history::of_type),
        )
        .route("/{instance}/{type}/{id}", web::get().to(read::read))
        .route("/{instance}/{type}/{id}", web::put().to(update::update))
        .route("/{instance}/{type}/{id}", web::delete().to(delete::delete))
        .route("/{instance}/{type}/{id}", web::patch().to(patch::patch))
        .route(
            "/{instance}/{type}/{id}/_history",
            web::get().to(history::of_instance),
        )
        .route(
            "/{instance}/{type}/{id}/_history/{vid}",
            web::get().to(vread::vread),
        )
        .route(
            "/{instance}/{compartment}/{id}/{type}",
            web::get().to(search::search_compartment),
        )
        .route(
            "/{instance}/{type}/{id}/$purge-history",
            web::post().to(purge_history::purge_history),
        );
    cfg.service(api);
}
