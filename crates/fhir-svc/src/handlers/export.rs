//! `$export` as FHIR Bulk Data Access 1.0 and Azure's FHIR service define it (see
//! [`crate::export`] for the job):
//! - kick-off: `GET [base]/$export`, `[base]/Patient/$export`, `[base]/Group/{id}/$export`
//!   with `Prefer: respond-async`; `_type`, `_since`, `_outputFormat` (NDJSON) and Azure's
//!   `_container`. 202 with `Content-Location` naming the job's status;
//! - status: `GET [base]/_operations/export/{id}`: 202 (with `X-Progress`) while it runs,
//!   200 with the manifest once complete, 500 with an OperationOutcome if it failed, 404 once
//!   cancelled;
//! - `DELETE` on the status URL cancels the job (or releases a complete one) and removes its
//!   files;
//! - each file of the manifest is served at `[status URL]/{file}`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, TimeZone, Utc};
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::{json, Value};

use super::FhirCaller;
use crate::domain::{instant, ResourceId, ResourceType};
use crate::error::FhirError;
use crate::export::{valid_container, Job, Level, Request};
use crate::http::{base_url, resource_id, Config, FhirState, Instance};
use crate::instance_config::InstanceConfig;
use crate::jobs::Status;

const NDJSON: &str = "application/fhir+ndjson";

pub async fn system(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    kick_off(
        &req,
        &caller,
        &instance,
        &config,
        &state,
        Level::System,
        Vec::new(),
    )
    .await
}

pub async fn patient(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    kick_off(
        &req,
        &caller,
        &instance,
        &config,
        &state,
        Level::Patient,
        Vec::new(),
    )
    .await
}

pub async fn group(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Export)?;
    let group_type: ResourceType = "Group".parse().map_err(FhirError::invalid)?;
    let id = resource_id(&path.1)?;
    let group = state
        .store
        .read(&instance, &group_type, &id)
        .await?
        .and_then(|v| v.body)
        .ok_or_else(|| FhirError::ResourceNotFound {
            resource_type: "Group".into(),
            id: id.to_string(),
        })?;
    let members = members(&group);
    kick_off(
        &req,
        &caller,
        &instance,
        &config,
        &state,
        Level::Group,
        members,
    )
    .await
}

/// The ids of the patients a Group's `member.entity` names (relative references).
fn members(group: &Value) -> Vec<String> {
    group["member"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|e| e["entity"]["reference"].as_str())
                .filter_map(|r| r.strip_prefix("Patient/"))
                .filter(|id| id.parse::<ResourceId>().is_ok())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

async fn kick_off(
    req: &HttpRequest,
    caller: &FhirCaller,
    instance: &InstanceName,
    config: &InstanceConfig,
    state: &FhirState,
    level: Level,
    patients: Vec<String>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Export)?;
    let respond_async = req
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "respond-async");
    if !respond_async {
        return Err(FhirError::invalid(
            "$export runs asynchronously: send 'Prefer: respond-async'",
        ));
    }
    let storage_account = config.export_storage.clone().ok_or_else(|| {
        FhirError::invalid(
            "$export needs the FHIR service's exportConfiguration.storageAccountName to be set",
        )
    })?;
    let mut request = Request {
        level,
        types: Vec::new(),
        since_ms: None,
        storage_account,
        container: None,
        url: format!(
            "{}{}",
            base_url(req, state, instance).trim_end_matches(&format!("/{instance}")),
            req.uri()
        ),
        patients,
    };
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "_type" => {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    let rt: ResourceType = t
                        .parse()
                        .map_err(|e: String| FhirError::invalid(format!("_type: {e}")))?;
                    request.types.push(rt.to_string());
                }
            }
            "_since" => {
                let since = DateTime::parse_from_rfc3339(&value).map_err(|_| {
                    FhirError::invalid(format!(
                        "_since must be an instant such as 2024-01-01T00:00:00Z, not '{value}'"
                    ))
                })?;
                request.since_ms = Some(since.with_timezone(&Utc).timestamp_millis());
            }
            "_outputFormat" => {
                if !matches!(
                    value.as_ref(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(FhirError::invalid(format!(
                        "_outputFormat '{value}' is not supported: NDJSON only"
                    )));
                }
            }
            "_container" => {
                if !valid_container(&value) {
                    return Err(FhirError::invalid(format!(
                        "_container '{value}' is not a container name (3 to 63 lowercase letters, digits and single hyphens)"
                    )));
                }
                request.container = Some(value.into_owned());
            }
            other => {
                return Err(FhirError::invalid(format!(
                    "'{other}' is not a parameter of $export here (supported: _type, _since, _outputFormat, _container)"
                )))
            }
        }
    }
    let job = state.exporter.queue(instance, request).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::CONTENT_LOCATION,
            status_url(req, state, instance, &job.id),
        ))
        .finish())
}

fn status_url(req: &HttpRequest, state: &FhirState, instance: &InstanceName, id: &str) -> String {
    format!("{}/_operations/export/{id}", base_url(req, state, instance))
}

async fn job_of(state: &FhirState, instance: &InstanceName, id: &str) -> Result<Job, FhirError> {
    state
        .exporter
        .get(instance, id)
        .await?
        .filter(|j| j.status != Status::Cancelled)
        .ok_or_else(|| FhirError::NotFound(format!("export job {id}")))
}

pub async fn status(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Export)?;
    let job = job_of(&state, &instance, &path.1).await?;
    match job.status {
        Status::Queued | Status::Running => Ok(HttpResponse::Accepted()
            .insert_header((
                "x-progress",
                format!(
                    "{} of {} types exported",
                    job.type_index.min(job.types.len() as i64),
                    job.types.len()
                ),
            ))
            .insert_header((header::RETRY_AFTER, "1"))
            .finish()),
        Status::Completed => {
            let url = status_url(&req, &state, &instance, &job.id);
            let output: Vec<Value> = job
                .output
                .iter()
                .map(|o| json!({"type": o.resource_type, "url": format!("{url}/{}", o.file), "count": o.count}))
                .collect();
            let at = Utc
                .timestamp_millis_opt(job.transaction_ms)
                .single()
                .unwrap_or_default();
            Ok(HttpResponse::Ok().json(json!({
                "transactionTime": instant(at),
                "request": job.request,
                // The files are served here, to callers who may export.
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            })))
        }
        Status::Failed => Err(FhirError::Internal(format!(
            "export job {} failed: {}",
            job.id,
            job.error.unwrap_or_default()
        ))),
        Status::Cancelled => Err(FhirError::NotFound(format!("export job {}", job.id))),
    }
}

pub async fn cancel(
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Export)?;
    // Also for a job cancelled already: if removing its files failed then (503), a DELETE
    // again finishes it.
    if !state.exporter.cancel(&instance, &path.1).await? {
        return Err(FhirError::NotFound(format!("export job {}", path.1)));
    }
    Ok(HttpResponse::Accepted().finish())
}

pub async fn file(
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Export)?;
    let job = job_of(&state, &instance, &path.1).await?;
    let body = state.exporter.file(&job, &path.2).await?;
    Ok(HttpResponse::Ok().content_type(NDJSON).streaming(body))
}
