//! The configuration as Azure's control plane carries it, for operations-svc's
//! `OperationCommand.properties`: an IotConnector's properties hold
//! `deviceMapping.content`; a FhirDestination's hold `resourceIdentityResolutionType`,
//! `fhirServiceResourceId` (`.../workspaces/{ws}/fhirservices/{name}`) and
//! `fhirMapping.content`. Either (or both merged) may be given; what is absent stays as it is.

use hds_core::names::InstanceName;
use serde_json::Value;

use super::store::Part;
use super::Destination;
use crate::fhir_mapping::FhirMapping;
use crate::mapping_doc::{InvalidMapping, MappingError};
use crate::template::DeviceMapping;

/// The parts the properties set, each validated. Errors name the property path, followed by
/// the path inside the mapping.
pub fn parts_from_properties(properties: &Value) -> Result<Vec<(Part, String)>, InvalidMapping> {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    let nested = |prefix: &str, e: InvalidMapping, errors: &mut Vec<MappingError>| {
        errors.extend(e.errors.into_iter().map(|m| MappingError {
            path: format!("{prefix}{}", m.path.trim_start_matches('$')),
            line: None,
            column: None,
            message: m.message,
        }))
    };
    if let Some(content) = properties.pointer("/deviceMapping/content") {
        let text = content.to_string();
        match DeviceMapping::parse(&text) {
            Ok(_) => parts.push((Part::DeviceMapping, text)),
            Err(e) => nested("$.deviceMapping.content", e, &mut errors),
        }
    }
    if let Some(content) = properties.pointer("/fhirMapping/content") {
        let text = content.to_string();
        match FhirMapping::parse(&text) {
            Ok(_) => parts.push((Part::FhirMapping, text)),
            Err(e) => nested("$.fhirMapping.content", e, &mut errors),
        }
    }
    let resolution = properties.get("resourceIdentityResolutionType");
    let service = properties.get("fhirServiceResourceId");
    if resolution.is_some() || service.is_some() {
        let instance = service
            .and_then(Value::as_str)
            .map(fhir_instance_of_resource_id)
            .transpose();
        let instance = match instance {
            Ok(i) => i,
            Err(message) => {
                errors.push(error("$.fhirServiceResourceId", message));
                return Err(InvalidMapping { errors });
            }
        };
        let mut doc = serde_json::json!({
            "resolutionType": resolution.cloned().unwrap_or(Value::String("Lookup".into())),
            "fhirService": instance.unwrap_or_default(),
        });
        for (from, to) in [
            ("fhirBaseUrl", "fhirBaseUrl"),
            ("deviceIdentifierSystem", "deviceIdentifierSystem"),
            ("fhirAudience", "fhirAudience"),
        ] {
            if let Some(v) = properties.get(from) {
                doc[to] = v.clone();
            }
        }
        match Destination::parse(&doc.to_string()) {
            Ok(d) => parts.push((
                Part::Destination,
                serde_json::to_string(&d).unwrap_or_default(),
            )),
            Err(e) => errors.extend(e.errors.into_iter().map(|m| {
                let path = match m.path.as_str() {
                    "$.resolutionType" => "$.resourceIdentityResolutionType".to_owned(),
                    "$.fhirService" => "$.fhirServiceResourceId".to_owned(),
                    other => other.to_owned(),
                };
                error(&path, m.message)
            })),
        }
    }
    if errors.is_empty() {
        Ok(parts)
    } else {
        Err(InvalidMapping { errors })
    }
}

fn error(path: &str, message: impl Into<String>) -> MappingError {
    MappingError {
        path: path.into(),
        line: None,
        column: None,
        message: message.into(),
    }
}

/// `/subscriptions/.../workspaces/{ws}/fhirservices/{name}` -> `{ws}-{name}`.
pub fn fhir_instance_of_resource_id(id: &str) -> Result<String, String> {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    let find = |name: &str| {
        segments
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .and_then(|i| segments.get(i + 1))
            .copied()
    };
    let (Some(ws), Some(svc)) = (find("workspaces"), find("fhirservices")) else {
        return Err(format!(
            "'{id}' is not a FHIR service resource id (.../workspaces/{{ws}}/fhirservices/{{name}})"
        ));
    };
    format!("{ws}-{svc}")
        .parse::<InstanceName>()
        .map(|n| n.to_string())
        .map_err(|e| format!("'{id}' names no valid FHIR service: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_fhir_destinations_properties() {
        let parts = parts_from_properties(&json!({
            "resourceIdentityResolutionType": "Create",
            "fhirServiceResourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HealthcareApis/workspaces/ws1/fhirservices/fhir",
            "fhirMapping": {"content": {"templateType": "CollectionFhir", "template": []}}
        }))
        .unwrap();
        assert_eq!(parts.len(), 2);
        let destination: Destination = serde_json::from_str(&parts[1].1).unwrap();
        assert_eq!(destination.fhir_service, "ws1-fhir");
    }

    #[test]
    fn names_the_property_of_each_problem() {
        let err = parts_from_properties(&json!({
            "deviceMapping": {"content": {"templateType": "CollectionContent", "template": [{"templateType": "Nope"}]}},
            "fhirServiceResourceId": "/subscriptions/s"
        }))
        .unwrap_err();
        let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths[0].starts_with("$.deviceMapping.content.template[0]"),
            "{paths:?}"
        );
        assert!(paths.contains(&"$.fhirServiceResourceId"), "{paths:?}");
    }
}
