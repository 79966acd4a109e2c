//! Finding (or, in Create mode, making) the Patient, Device and Encounter an Observation
//! points at, as iomt-fhir's identity services do, with the answers cached:
//! - Lookup: the Device found by identifier (the destination's device identifier system and
//!   the message's device id) and the Patient it references; no Device is a permanent error.
//! - LookupWithEncounter: as Lookup, plus the Encounter found by the message's encounter id.
//! - Create: as Lookup when the Device exists; otherwise the Patient is found by identifier
//!   or written with `PUT Patient/{hash}`, then the Device with `PUT Device/{hash}` (the
//!   hashes iomt-fhir uses), so that concurrent first messages make one of each, not two.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::failure::{error_type, Failure, Stage};
use super::fhir_client::{CallError, Endpoint, FhirClient};
use crate::config::{Destination, ResolutionType};
use crate::grouping::GroupKey;
use crate::identity::{created_device, created_patient, Identifier, ResolvedIds, ResourceId};

pub struct Resolver {
    client: FhirClient,
    ttl: Duration,
    cache: Mutex<HashMap<CacheKey, (ResolvedIds, Instant)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    fhir_url: String,
    resolution: ResolutionType,
    system: Option<String>,
    device: String,
    patient: Option<String>,
    encounter: Option<String>,
}

fn resource_error(code: &'static str, message: String) -> Failure {
    Failure::permanent(
        Stage::FhirConversion,
        error_type::FHIR_RESOURCE,
        code,
        message,
    )
}

impl Resolver {
    pub fn new(client: FhirClient, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::default(),
        }
    }

    pub async fn resolve(
        &self,
        destination: &Destination,
        fhir: &Endpoint,
        key: &GroupKey,
    ) -> Result<ResolvedIds, Failure> {
        let cache_key = CacheKey {
            fhir_url: fhir.url.clone(),
            resolution: destination.resolution_type,
            system: destination.device_identifier_system.clone(),
            device: key.device_id.clone(),
            patient: key.patient_id.clone(),
            encounter: key.encounter_id.clone(),
        };
        if let Some((ids, at)) = self.cached(&cache_key) {
            if at.elapsed() < self.ttl {
                return Ok(ids);
            }
        }
        let ids = self.resolve_uncached(destination, fhir, key).await?;
        if let Ok(mut cache) = self.cache.lock() {
            // Bounded: a flood of distinct devices must not grow memory without end.
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(cache_key, (ids.clone(), Instant::now()));
        }
        Ok(ids)
    }

    fn cached(&self, key: &CacheKey) -> Option<(ResolvedIds, Instant)> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    async fn resolve_uncached(
        &self,
        destination: &Destination,
        fhir: &Endpoint,
        key: &GroupKey,
    ) -> Result<ResolvedIds, Failure> {
        let system = destination.device_identifier_system.as_deref();
        let device_identifier = Identifier::new(system, &key.device_id);
        let device = self
            .find_one(fhir, "Device", &search_value(&device_identifier))
            .await?;
        match destination.resolution_type {
            ResolutionType::Lookup | ResolutionType::LookupWithEncounter => {
                let device = device.ok_or_else(|| {
                    resource_error(
                        "DeviceNotFound",
                        format!(
                            "no Device has the identifier '{}'",
                            search_value(&device_identifier)
                        ),
                    )
                })?;
                let (device_id, patient) = device_and_patient(&device)?;
                let patient = patient.ok_or_else(|| {
                    resource_error(
                        "PatientNotLinked",
                        format!("Device/{device_id} references no Patient"),
                    )
                })?;
                let encounter =
                    if destination.resolution_type == ResolutionType::LookupWithEncounter {
                        Some(self.encounter(fhir, key).await?)
                    } else {
                        None
                    };
                Ok(ResolvedIds {
                    patient,
                    device: device_id,
                    encounter,
                })
            }
            ResolutionType::Create => self.create(fhir, key, system, device).await,
        }
    }

    async fn encounter(&self, fhir: &Endpoint, key: &GroupKey) -> Result<ResourceId, Failure> {
        let encounter_id = key.encounter_id.as_deref().ok_or_else(|| {
            resource_error(
                "EncounterIdentityNotDefined",
                "LookupWithEncounter resolution needs an encounter id, and the measurement has none".into(),
            )
        })?;
        let found = self.find_one(fhir, "Encounter", encounter_id).await?;
        let encounter = found.ok_or_else(|| {
            resource_error(
                "EncounterNotFound",
                format!("no Encounter has the identifier '{encounter_id}'"),
            )
        })?;
        id_of(&encounter, "Encounter")
    }

    async fn create(
        &self,
        fhir: &Endpoint,
        key: &GroupKey,
        system: Option<&str>,
        device: Option<Value>,
    ) -> Result<ResolvedIds, Failure> {
        if let Some(device) = &device {
            if let (device_id, Some(patient)) = device_and_patient(device)? {
                return Ok(ResolvedIds {
                    patient,
                    device: device_id,
                    encounter: None,
                });
            }
        }
        let patient_id = key.patient_id.as_deref().ok_or_else(|| {
            resource_error(
                "PatientIdentityNotDefined",
                format!(
                    "the measurements of device '{}' have no patient id, which Create resolution needs",
                    key.device_id
                ),
            )
        })?;
        let patient = match self.find_one(fhir, "Patient", patient_id).await? {
            Some(p) => id_of(&p, "Patient")?,
            None => {
                let made = created_patient(patient_id);
                self.put_new(fhir, &made).await?;
                id_of(&made, "Patient")?
            }
        };
        let device_id = match device {
            // An existing Device without a Patient gets this one, as iomt-fhir does.
            Some(mut existing) => {
                let id = id_of(&existing, "Device")?;
                existing["patient"] =
                    serde_json::json!({"reference": format!("Patient/{patient}")});
                self.put_new(fhir, &existing).await?;
                id
            }
            None => {
                let made = created_device(&key.device_id, system, &patient);
                self.put_new(fhir, &made).await?;
                id_of(&made, "Device")?
            }
        };
        Ok(ResolvedIds {
            patient,
            device: device_id,
            encounter: None,
        })
    }

    /// Writes a resource that was not found. Its id is a hash of its identifier, so a
    /// concurrent writer of the same resource writes the same thing: a lost race (409) is
    /// as good as a success.
    async fn put_new(&self, fhir: &Endpoint, resource: &Value) -> Result<(), Failure> {
        match self.client.put(fhir, resource, None).await {
            Ok(_) | Err(CallError::Conflict) => Ok(()),
            Err(CallError::Failed(f)) => Err(f),
        }
    }

    /// The one resource with the identifier; several are an error, as in iomt-fhir.
    async fn find_one(
        &self,
        fhir: &Endpoint,
        resource_type: &str,
        identifier: &str,
    ) -> Result<Option<Value>, Failure> {
        let mut found = self
            .client
            .find_by_identifier(fhir, resource_type, identifier)
            .await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(resource_error(
                "MultipleResourcesFound",
                format!("several {resource_type} resources have the identifier '{identifier}'"),
            )),
        }
    }
}

/// `system|value`, or the bare value (any system) when there is no system.
fn search_value(identifier: &Identifier) -> String {
    match &identifier.system {
        Some(system) => format!("{system}|{}", identifier.value),
        None => identifier.value.clone(),
    }
}

fn id_of(resource: &Value, resource_type: &str) -> Result<ResourceId, Failure> {
    resource
        .get("id")
        .and_then(Value::as_str)
        .map(ResourceId::new)
        .ok_or_else(|| {
            resource_error(
                "InvalidFhirResource",
                format!("the FHIR service returned a {resource_type} without an id"),
            )
        })
}

/// A Device's id and the id of the Patient it references, if any.
fn device_and_patient(device: &Value) -> Result<(ResourceId, Option<ResourceId>), Failure> {
    let id = id_of(device, "Device")?;
    let patient = device
        .pointer("/patient/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit_once("Patient/").map(|(_, id)| id))
        .map(|id| ResourceId::new(id.split('/').next().unwrap_or(id)));
    Ok((id, patient))
}
