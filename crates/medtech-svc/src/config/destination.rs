//! Where an instance writes its Observations and how it finds their Patient and Device.
//!
//! Its JSON form (`PUT /{instance}/destination`):
//! `{"resolutionType": "Create", "fhirService": "ws1-fhir", "fhirBaseUrl": "http://fhir:8081",
//!   "deviceIdentifierSystem": "urn:example", "fhirAudience": "https://fhir.example.org"}`;
//! `fhirBaseUrl`, `deviceIdentifierSystem` and `fhirAudience` are optional (the service's
//! `medtech.fhir_base_url`, no system, and the service's `auth.audience` by default).

use hds_core::names::InstanceName;
use serde::{Deserialize, Serialize};

use crate::mapping_doc::{Doc, InvalidMapping, Loc};
use crate::pipeline::fhir_client::Endpoint;

/// Azure's `resourceIdentityResolutionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResolutionType {
    /// Device (and through it Patient) must exist, found by identifier.
    Lookup,
    /// Patient and Device are created (with iomt-fhir's hashed ids) when not found.
    Create,
    /// As Lookup, and the Encounter of the message's encounter id must exist too.
    LookupWithEncounter,
}

impl ResolutionType {
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Lookup, Self::Create, Self::LookupWithEncounter]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "Lookup",
            Self::Create => "Create",
            Self::LookupWithEncounter => "LookupWithEncounter",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub resolution_type: ResolutionType,
    /// The FHIR service instance, `{workspace}-{service}`.
    pub fhir_service: String,
    /// The fhir-svc the instance lives on; the service's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_base_url: Option<String>,
    /// Azure's default device identifier system, used to find and create Devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_identifier_system: Option<String>,
    /// The audience the FHIR service expects in tokens (its `authenticationConfiguration`
    /// audience), when authentication is on and it is not the service's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_audience: Option<String>,
}

impl Destination {
    /// Reads and validates a destination document, naming the path and line of each problem.
    pub fn parse(source: &str) -> Result<Self, InvalidMapping> {
        let (value, mut doc) = Doc::parse(source)?;
        let root = Loc::default();
        let Some(mut obj) = doc.object(&value, &root, "the destination") else {
            return Err(doc.finish(()).err().unwrap_or_else(incomplete));
        };
        let resolution = doc
            .string(&mut obj, "resolutionType", true)
            .and_then(|(s, loc)| {
                let parsed = ResolutionType::parse(&s);
                if parsed.is_none() {
                    doc.error(
                        &loc,
                        format!("'{s}' is not a resolution type (Lookup, Create or LookupWithEncounter)"),
                    );
                }
                parsed
            });
        let service = doc
            .string(&mut obj, "fhirService", true)
            .and_then(|(s, loc)| match s.parse::<InstanceName>() {
                Ok(name) => Some(name.to_string()),
                Err(e) => {
                    doc.error(
                        &loc,
                        format!("'{s}' is not a FHIR service instance name: {e}"),
                    );
                    None
                }
            });
        let base = doc
            .string(&mut obj, "fhirBaseUrl", false)
            .and_then(|(s, loc)| match check_base_url(&s) {
                Ok(u) => Some(u),
                Err(message) => {
                    doc.error(&loc, message);
                    None
                }
            });
        let system = doc
            .string(&mut obj, "deviceIdentifierSystem", false)
            .map(|(s, _)| s)
            .filter(|s| !s.trim().is_empty());
        let audience = doc
            .string(&mut obj, "fhirAudience", false)
            .map(|(s, _)| s)
            .filter(|s| !s.trim().is_empty());
        doc.unknown_members(&obj, "Destination", &[]);
        let made = match (resolution, service) {
            (Some(resolution_type), Some(fhir_service)) => Some(Destination {
                resolution_type,
                fhir_service,
                fhir_base_url: base,
                device_identifier_system: system,
                fhir_audience: audience,
            }),
            _ => None,
        };
        doc.finish(made)?.ok_or_else(incomplete)
    }

    /// The FHIR base URL of the destination instance: `{base}/{fhirService}`.
    pub fn fhir_url(&self, default_base: &str) -> String {
        let base = self.fhir_base_url.as_deref().unwrap_or(default_base);
        format!("{}/{}", base.trim_end_matches('/'), self.fhir_service)
    }

    /// Where and as whom the pipeline writes: the base URL and the token audience.
    pub fn endpoint(&self, default_base: &str) -> Endpoint {
        Endpoint {
            url: self.fhir_url(default_base),
            audience: self.fhir_audience.clone(),
        }
    }
}

fn incomplete() -> InvalidMapping {
    InvalidMapping {
        errors: vec![crate::mapping_doc::MappingError {
            path: "$".into(),
            line: None,
            column: None,
            message: "the destination is incomplete".into(),
        }],
    }
}

/// An http(s) URL without query or fragment, returned without a trailing slash.
pub fn check_base_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("'{s}' is not an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("'{s}' must not have a query or fragment"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_destination() {
        let d = Destination::parse(
            r#"{"resolutionType": "create", "fhirService": "ws1-fhir", "fhirBaseUrl": "http://h:1/"}"#,
        )
        .unwrap();
        assert_eq!(d.resolution_type, ResolutionType::Create);
        assert_eq!(d.fhir_url("http://default"), "http://h:1/ws1-fhir");
    }

    #[test]
    fn names_each_problem_with_path_and_line() {
        let err = Destination::parse(
            "{\n  \"resolutionType\": \"Guess\",\n  \"fhirService\": \"nohyphen\",\n  \"extra\": 1\n}",
        )
        .unwrap_err();
        let found: Vec<_> = err
            .errors
            .iter()
            .map(|e| (e.path.as_str(), e.line))
            .collect();
        assert_eq!(
            found,
            [
                ("$.resolutionType", Some(2)),
                ("$.fhirService", Some(3)),
                ("$.extra", Some(4))
            ]
        );
    }
}
