//! Operation Results - Get:
//! `GET /subscriptions/{s}/providers/Microsoft.HealthcareApis/locations/{location}/operationresults/{id}`
//! answers Azure's `OperationResultsDescription` for any long-running operation.

use actix_web::{web, HttpResponse};
use hds_core::auth::Permission;
use hds_core::db::Database;
use hds_core::ops::Caller;
use serde::Deserialize;

use super::ApiVersion;
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
    db: web::Data<Database>,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::ManageRead)?;
    let op = operations::get(&db, &path.operation)
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
        "properties": {},
    });
    if let Some(ended) = op.ended {
        body["endTime"] = ended
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
    }
    if let Some((code, message)) = op.error {
        body["error"] = serde_json::json!({ "code": code, "message": message });
    }
    Ok(HttpResponse::Ok().json(body))
}
