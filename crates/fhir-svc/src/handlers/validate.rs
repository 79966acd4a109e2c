//! $validate (R4 `resource-operation-validate`): would this resource be accepted?
//!
//! `POST [base]/[type]/$validate` and `POST [base]/[type]/[id]/$validate` take the resource
//! itself or a `Parameters` with `resource` (and optionally `mode`, `profile`);
//! `GET [base]/[type]/[id]/$validate` checks the stored current version. The answer is
//! `200 OK` with an `OperationOutcome`: every problem as an error issue with its path, or one
//! information issue when there is none. The checks are those every write passes (see
//! `crate::validation`); `mode=update` also wants the URL's id in the resource, and
//! `mode=delete` only that the resource exists.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use serde::Deserialize;
use serde_json::{json, Value};

use super::FhirCaller;
use crate::domain::{ResourceId, ResourceType};
use crate::error::{operation_outcome, FhirError, Issue};
use crate::http::{read_resource, resource_id, resource_type, FhirState, Instance, FHIR_JSON};

/// The `mode` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No mode: is the content valid at all.
    General,
    Create,
    Update,
    Delete,
}

impl Mode {
    fn parse(raw: Option<&str>) -> Result<Self, FhirError> {
        match raw {
            None => Ok(Mode::General),
            Some("create") => Ok(Mode::Create),
            Some("update") => Ok(Mode::Update),
            Some("delete") => Ok(Mode::Delete),
            Some(other) => Err(FhirError::invalid(format!(
                "mode '{other}' is not one of create, update, delete"
            ))),
        }
    }
}

/// What a POST asks to validate.
struct Request {
    resource: Option<Value>,
    mode: Mode,
    profile: Option<String>,
}

impl Request {
    /// The body is the resource, or (for any type but Parameters) a Parameters wrapping it.
    fn from_body(rt: &ResourceType, body: Value) -> Result<Self, FhirError> {
        let is_parameters = body.get("resourceType").and_then(Value::as_str) == Some("Parameters");
        if !is_parameters || rt.as_str() == "Parameters" {
            return Ok(Request {
                resource: Some(body),
                mode: Mode::General,
                profile: None,
            });
        }
        let params = body
            .get("parameter")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let named = |name: &str| params.iter().find(|p| p["name"] == name);
        let text = |name: &str, key: &str| {
            named(name)
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Request {
            resource: named("resource").and_then(|p| p.get("resource")).cloned(),
            mode: Mode::parse(text("mode", "valueCode").as_deref())?,
            profile: text("profile", "valueUri").or_else(|| text("profile", "valueCanonical")),
        })
    }
}

#[derive(Deserialize)]
pub struct ValidateQuery {
    mode: Option<String>,
    profile: Option<String>,
}

pub async fn validate_type(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(_instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    let body = read_resource(&req, body, state.max_body_bytes).await?;
    let request = Request::from_body(&rt, body)?;
    if request.mode == Mode::Delete {
        return Err(FhirError::invalid(
            "mode=delete needs a resource: POST [type]/[id]/$validate",
        ));
    }
    Ok(answer(check(&rt, None, &request)))
}

pub async fn validate_instance(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let body = read_resource(&req, body, state.max_body_bytes).await?;
    let request = Request::from_body(&rt, body)?;
    if request.mode == Mode::Delete {
        return stored(&state, &instance, &rt, &id).await.map(|_| all_ok());
    }
    Ok(answer(check(&rt, Some(&id), &request)))
}

pub async fn validate_stored(
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String)>,
    query: web::Query<ValidateQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let mode = Mode::parse(query.mode.as_deref())?;
    let resource = stored(&state, &instance, &rt, &id).await?;
    if mode == Mode::Delete {
        return Ok(all_ok());
    }
    let request = Request {
        resource: Some(resource),
        mode,
        profile: query.profile.clone(),
    };
    Ok(answer(check(&rt, Some(&id), &request)))
}

/// The current version of a resource that exists (404 or 410 otherwise).
async fn stored(
    state: &FhirState,
    instance: &hds_core::names::InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
) -> Result<Value, FhirError> {
    let current =
        state
            .store
            .read(instance, rt, id)
            .await?
            .ok_or_else(|| FhirError::ResourceNotFound {
                resource_type: rt.to_string(),
                id: id.to_string(),
            })?;
    let version = current.version;
    current.body.ok_or_else(|| FhirError::Gone {
        resource_type: rt.to_string(),
        id: id.to_string(),
        version,
    })
}

/// The issues of a validation request: errors, then warnings.
fn check(rt: &ResourceType, id: Option<&ResourceId>, request: &Request) -> Vec<Value> {
    let Some(resource) = &request.resource else {
        return vec![issue(
            "error",
            &Issue::invalid("no resource to validate (a Parameters needs a 'resource' parameter)"),
        )];
    };
    let mut issues: Vec<Value> = Vec::new();
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t != rt.as_str() => issues.push(issue(
            "error",
            &Issue::invalid(format!(
                "resourceType '{t}' does not match the URL's type '{rt}'"
            ))
            .at("resourceType"),
        )),
        _ => {}
    }
    if let (Mode::Update, Some(id)) = (request.mode, id) {
        if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            issues.push(issue(
                "error",
                &Issue::invalid(format!("an update of {rt}/{id} needs the id '{id}'"))
                    .at(format!("{rt}.id")),
            ));
        }
    }
    issues.extend(
        crate::validation::problems(resource)
            .iter()
            .map(|p| issue("error", p)),
    );
    if let Some(profile) = &request.profile {
        issues.push(json!({
            "severity": "warning",
            "code": "not-supported",
            "diagnostics": format!(
                "profile '{profile}' was not checked: only the base R4 definitions are"
            ),
        }));
    }
    issues
}

fn issue(severity: &str, i: &Issue) -> Value {
    let mut v = json!({"severity": severity, "code": i.code, "diagnostics": i.diagnostics});
    if let Some(e) = &i.expression {
        v["expression"] = json!([e]);
    }
    v
}

fn answer(issues: Vec<Value>) -> HttpResponse {
    if issues.is_empty() {
        return all_ok();
    }
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(operation_outcome(issues).to_string())
}

fn all_ok() -> HttpResponse {
    HttpResponse::Ok().content_type(FHIR_JSON).body(
        operation_outcome(vec![json!({
            "severity": "information",
            "code": "informational",
            "diagnostics": "All OK",
        })])
        .to_string(),
    )
}
