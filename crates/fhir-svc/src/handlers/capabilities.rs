//! capabilities: `GET [base]/metadata` — the CapabilityStatement, listing only what this
//! server implements.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::domain::ResourceType;
use crate::error::FhirError;
use crate::http::{base_url, FhirState, Instance, FHIR_JSON};
use crate::search::params;

pub async fn metadata(
    req: HttpRequest,
    Instance(instance): Instance,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    let base = base_url(&req, &state, &instance);
    let interactions = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ];
    let resources: Vec<_> = ResourceType::all()
        .map(|t| {
            let params: Vec<_> = params::for_type(t)
                .iter()
                .map(|p| json!({"name": p.code, "type": format!("{:?}", p.kind).to_lowercase()}))
                .chain(
                    params::composites_for(t)
                        .iter()
                        .map(|c| json!({"name": c.code, "type": "composite"})),
                )
                .collect();
            json!({
                "type": t,
                "searchParam": params,
                "interaction": interactions.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
            })
        })
        .collect();
    let statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "publisher": "hds",
        "kind": "instance",
        "software": {"name": "hds fhir-svc", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": format!("FHIR service {instance}"), "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {"cors": false, "description": "Bearer tokens (JWT) with Azure's FHIR roles when authentication is enabled."},
            "resource": resources,
            "interaction": [{"code": "history-system"}, {"code": "batch"}, {"code": "transaction"}],
            "operation": [{
                "name": "purge-history",
                "definition": "http://azurehealthcareapis.com/data-extensions/OperationDefinition/purge-history",
            }, {
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            }, {
                "name": "reindex",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-reindex",
            }],
        }],
    });
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(statement.to_string()))
}
