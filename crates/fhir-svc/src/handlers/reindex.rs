//! `$reindex` as Azure's FHIR service offers it: `POST [base]/$reindex` queues a job that
//! rebuilds the search index of every resource (201, `Content-Location` naming its status);
//! `GET [base]/_operations/reindex/{id}` reports it as a Parameters resource.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{TimeZone, Utc};
use hds_core::auth::Permission;
use serde_json::{json, Value};

use super::FhirCaller;
use crate::domain::instant;
use crate::error::FhirError;
use crate::http::{base_url, FhirState, Instance, FHIR_JSON};
use crate::reindex::Job;

pub async fn start(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Reindex)?;
    let job = state.reindexer.queue(&instance).await?;
    let location = format!(
        "{}/_operations/reindex/{}",
        base_url(&req, &state, &instance),
        job.id
    );
    Ok(HttpResponse::Created()
        .insert_header((header::CONTENT_LOCATION, location))
        .content_type(FHIR_JSON)
        .body(parameters(&job).to_string()))
}

pub async fn status(
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Reindex)?;
    let job = state
        .reindexer
        .get(&instance, &path.1)
        .await?
        .ok_or_else(|| FhirError::NotFound(format!("reindex job {}", path.1)))?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(parameters(&job).to_string()))
}

/// The job as Azure reports one (its parameter names).
fn parameters(job: &Job) -> Value {
    let time = |ms: i64| Utc.timestamp_millis_opt(ms).single().map(instant);
    let progress = if job.total == 0 {
        100.0
    } else {
        (job.done as f64 * 100.0 / job.total as f64).min(100.0)
    };
    let mut p = vec![
        json!({"name": "id", "valueString": job.id}),
        json!({"name": "status", "valueString": format!("{:?}", job.status)}),
        json!({"name": "totalResourcesToReindex", "valueDecimal": job.total}),
        json!({"name": "resourcesSuccessfullyReindexed", "valueDecimal": job.done}),
        json!({"name": "progress", "valueDecimal": progress.round()}),
    ];
    for (name, ms) in [
        ("queuedTime", Some(job.queued_ms)),
        ("startTime", job.started_ms),
        ("endTime", job.ended_ms),
    ] {
        if let Some(t) = ms.and_then(time) {
            p.push(json!({"name": name, "valueDateTime": t}));
        }
    }
    if let Some(e) = &job.error {
        p.push(json!({"name": "error", "valueString": e}));
    }
    json!({"resourceType": "Parameters", "id": job.id, "parameter": p})
}
