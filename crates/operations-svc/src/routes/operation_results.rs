//! Operation Results - Get:
//! `GET /subscriptions/{s}/providers/Microsoft.HealthcareApis/locations/{location}/operationresults/{id}`
//! answers Azure's `OperationResultsDescription` for any long-running operation.

use actix_web::{web, HttpResponse};
use hds_core::auth::Permission;
use hds_core::ops::Caller;
use serde::Deserialize;

use super::{ApiVersion, AppState};
use crate::error::ArmError;
use crate::operations;

#[derive(Deserialize)]
pub struct Path {
    subscription: String,
    location: String,
    operation: String,
}

pub async fn get(
    caller: Caller<ArmError>,
    path: web::Path<Path>,
    version: web::Query<ApiVersion>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::ManageRead)?;
    let op = operations::get(&state.db, &path.operation)
        .await?
        .filter(|op| {
            op.subscription_id.eq_ignore_ascii_case(&path.subscription)
                && op.location.eq_ignore_ascii_case(&path.location)
        })
        .ok_or_else(|| ArmError::OperationNotFound(path.operation.clone()))?;
    let mut body = serde_json::json!({
        "id": format!(
            "/subscriptions/{}/providers/Microsoft.HealthcareApis/locations/{}/operationresults/{}",
            op.subscription_id, op.location, op.id
        ),
        "name": op.id,
        "status": op.status.as_str(),
        "startTime": op.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "properties": op.result.clone().unwrap_or_else(|| serde_json::json!({})),
    });
    if let Some(ended) = op.ended {
        body["endTime"] = ended
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
    }
    if let Some((code, message)) = op.error {
        body["error"] = serde_json::json!({ "code": code, "message": message });
    }
    let mut res = HttpResponse::Ok();
    if !op.status.is_terminal() {
        // Without it ARM clients wait their default (30 s with the Python SDK) per poll.
        res.insert_header(("Retry-After", state.retry_after_secs.to_string()));
    }
    Ok(res.json(body))
}
