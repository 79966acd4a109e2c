//! The mapping debugger over HTTP: a message in, the normalized measurements, the
//! Observations that would be written and every error out, with no side effects (nothing is
//! published, stored or sent to FHIR).
//!
//! Body: `{"message": <JSON> | "messageText": "<raw text>", "deviceMapping": <mapping or its
//! text>, "fhirMapping": ..., "properties": {...}, "systemProperties": {...}}`. On
//! `POST /{instance}/debug` a mapping left out is the instance's stored one; on `POST /debug`
//! both are required. A mapping given as text keeps its lines, so errors point into it.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use hds_core::auth::Permission;
use serde_json::{Map, Value};

use super::{instance, read_body, ApiState, Caller};
use crate::config::store;
use crate::debug::{debug, DebugError, DebugReport, Stage};
use crate::envelope::DeviceEvent;
use crate::error::MedtechError;

struct Request {
    device_mapping: Option<String>,
    fhir_mapping: Option<String>,
    event: Result<DeviceEvent, String>,
}

fn mapping_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn object(v: Option<&Value>, what: &str) -> Result<Map<String, Value>, MedtechError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(MedtechError::BadRequest(format!(
            "'{what}' must be an object"
        ))),
    }
}

fn parse_request(body: &[u8]) -> Result<Request, MedtechError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| MedtechError::BadRequest(format!("the body is not JSON: {e}")))?;
    let Value::Object(o) = &v else {
        return Err(MedtechError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    let properties = object(o.get("properties"), "properties")?;
    let system = object(o.get("systemProperties"), "systemProperties")?;
    let event = match (o.get("message"), o.get("messageText")) {
        (Some(m), None) => Ok(DeviceEvent::from_body(m.clone(), properties, system)),
        (None, Some(Value::String(text))) => {
            DeviceEvent::new(text.as_bytes(), properties, system).map_err(|e| e.to_string())
        }
        _ => {
            return Err(MedtechError::BadRequest(
                "give the device message as 'message' (JSON) or 'messageText' (a string)".into(),
            ))
        }
    };
    Ok(Request {
        device_mapping: mapping_text(o.get("deviceMapping")),
        fhir_mapping: mapping_text(o.get("fhirMapping")),
        event,
    })
}

fn run(device: &str, fhir: &str, event: Result<DeviceEvent, String>) -> DebugReport {
    match event {
        Ok(e) => debug(device, fhir, &e, Utc::now()),
        Err(message) => DebugReport {
            errors: vec![DebugError {
                stage: Stage::Normalization,
                path: None,
                line: None,
                column: None,
                message,
            }],
            ..DebugReport::default()
        },
    }
}

/// `POST /debug`: both mappings in the body.
pub async fn debug_any(
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Payload,
) -> Result<HttpResponse, MedtechError> {
    caller.require(Permission::Read)?;
    let r = parse_request(&read_body(body, state.settings.max_body_bytes).await?)?;
    let (Some(device), Some(fhir)) = (r.device_mapping, r.fhir_mapping) else {
        return Err(MedtechError::BadRequest(
            "'deviceMapping' and 'fhirMapping' are required (or use /{instance}/debug)".into(),
        ));
    };
    Ok(HttpResponse::Ok().json(run(&device, &fhir, r.event)))
}

/// `POST /{instance}/debug`: mappings left out are the instance's.
pub async fn debug_instance(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Payload,
) -> Result<HttpResponse, MedtechError> {
    caller.require(Permission::Read)?;
    let name = instance(&req, &state).await?;
    let r = parse_request(&read_body(body, state.settings.max_body_bytes).await?)?;
    let stored = store::get(&state.db, &name.to_string()).await?;
    let device = r
        .device_mapping
        .or(stored.device_mapping)
        .ok_or(MedtechError::NotConfigured("device mapping"))?;
    let fhir = r
        .fhir_mapping
        .or(stored.fhir_mapping)
        .ok_or(MedtechError::NotConfigured("FHIR destination mapping"))?;
    Ok(HttpResponse::Ok().json(run(&device, &fhir, r.event)))
}
