//! Identifiers and resource ids exactly as iomt-fhir makes them, so that users leaving Azure
//! keep their Observation, Patient and Device ids: a resource id is the lowercase hex SHA-256
//! of `{identifier.system}_{identifier.value}` (an absent system is the empty string).

use std::fmt;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The system of the Observation identifiers and of the coding the service adds to every
/// code (iomt-fhir's `FhirImportService.ServiceSystem`).
pub const SERVICE_SYSTEM: &str = "https://azure.microsoft.com/en-us/services/iomt-fhir-connector/";

/// A measurement type, the link between a device template and a FHIR template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TypeName(String);

impl TypeName {
    pub fn new(name: &str) -> Option<Self> {
        (!name.trim().is_empty()).then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Azure looks FHIR templates up by type name in any case.
    pub fn matches(&self, other: &TypeName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A FHIR resource id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A FHIR Identifier (system and value).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub system: Option<String>,
    pub value: String,
}

impl Identifier {
    pub fn new(system: Option<&str>, value: &str) -> Self {
        Self {
            system: system.filter(|s| !s.trim().is_empty()).map(str::to_owned),
            value: value.to_owned(),
        }
    }

    /// The id iomt-fhir gives the resource this identifier names.
    pub fn resource_id(&self) -> ResourceId {
        let plain = format!("{}_{}", self.system.as_deref().unwrap_or(""), self.value);
        let digest = Sha256::digest(plain.as_bytes());
        ResourceId(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn to_json(&self) -> Value {
        match &self.system {
            Some(system) => json!({"system": system, "value": self.value}),
            None => json!({"value": self.value}),
        }
    }
}

/// The resources an Observation points at, as resolved (Lookup) or created (Create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedIds {
    pub patient: ResourceId,
    pub device: ResourceId,
    pub encounter: Option<ResourceId>,
}

/// Create mode: the Patient iomt-fhir creates for a patient id from a message.
pub fn created_patient(patient_id: &str) -> Value {
    let identifier = Identifier::new(None, patient_id);
    json!({
        "resourceType": "Patient",
        "id": identifier.resource_id(),
        "identifier": [identifier.to_json()],
    })
}

/// Create mode: the Device iomt-fhir creates for a device id, linked to its Patient.
/// `device_system` is the optional default device identifier system of the service.
pub fn created_device(device_id: &str, device_system: Option<&str>, patient: &ResourceId) -> Value {
    let identifier = Identifier::new(device_system, device_id);
    json!({
        "resourceType": "Device",
        "id": identifier.resource_id(),
        "identifier": [identifier.to_json()],
        "patient": {"reference": format!("Patient/{patient}")},
    })
}

/// The ids Create mode gives the Patient and Device of a measurement's ids.
pub fn create_mode_ids(
    patient_id: &str,
    device_id: &str,
    device_system: Option<&str>,
    encounter: Option<ResourceId>,
) -> ResolvedIds {
    ResolvedIds {
        patient: Identifier::new(None, patient_id).resource_id(),
        device: Identifier::new(device_system, device_id).resource_id(),
        encounter,
    }
}
