//! The configuration as Azure's control plane carries it, for operations-svc's
//! `OperationCommand.properties`: an IotConnector's properties hold
//! `deviceMapping.content`; a FhirDestination's hold `resourceIdentityResolutionType`,
//! `fhirServiceResourceId` (`.../workspaces/{ws}/fhirservices/{name}`) and
//! `fhirMapping.content`. Either (or both merged) may be given; what is absent stays as it is.
//! The connector's `ingestionEndpointConfiguration` is read by
//! [`IngestionEndpoint::from_properties`](super::ingestion::IngestionEndpoint::from_properties).

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

/// Azure permits one FHIR destination per MedTech service: a second one fails to provision
/// with "The maximum number of resource type iotconnectors/fhirdestinations has been reached"
/// ("Only one Destination resource is permitted per MedTech service",
/// <https://learn.microsoft.com/en-us/azure/healthcare-apis/iot/troubleshoot-errors-deployment>).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The maximum number of resource type iotconnectors/fhirdestinations has been reached: \
     a MedTech service has one FHIR destination, and this one would have {} ({}). Delete all \
     but one of them.",
    .names.len(),
    .names.join(", ")
)]
pub struct TooManyDestinations {
    pub names: Vec<String>,
}

impl TooManyDestinations {
    /// The ARM error code of a quota reached.
    pub const CODE: &'static str = "QuotaExceeded";
}

/// The connector's destinations, as operations-svc lists them under `fhirDestinations`
/// (name -> properties, every destination not being deleted): at most one is allowed.
/// Without that member (commands not from operations-svc) there is nothing to count.
pub fn check_one_destination(properties: &Value) -> Result<(), TooManyDestinations> {
    match properties
        .get("fhirDestinations")
        .and_then(Value::as_object)
    {
        Some(destinations) if destinations.len() > 1 => Err(TooManyDestinations {
            names: destinations.keys().cloned().collect(),
        }),
        _ => Ok(()),
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
    fn one_fhir_destination_per_connector() {
        let dest = json!({"resourceIdentityResolutionType": "Create"});
        assert!(check_one_destination(&json!({})).is_ok());
        assert!(check_one_destination(&json!({"fhirDestinations": {}})).is_ok());
        assert!(check_one_destination(&json!({"fhirDestinations": {"dest1": dest}})).is_ok());
        let err =
            check_one_destination(&json!({"fhirDestinations": {"dest1": dest, "dest2": dest}}))
                .unwrap_err();
        assert_eq!(err.names, ["dest1", "dest2"]);
        assert!(
            err.to_string().contains("iotconnectors/fhirdestinations"),
            "{err}"
        );
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
