//! Writing an observation group to FHIR as iomt-fhir does: read the Observation of its
//! identifier (its id is the identifier's hash); absent, write the new one; present, merge
//! and write only if something changed, with `If-Match` on the version read. A lost race
//! (409/412) reads again and merges again.

use chrono::Utc;
use serde_json::Value;

use super::failure::{error_type, Failure, Stage};
use super::fhir_client::{CallError, Endpoint, FhirClient};
use crate::fhir_mapping::CodeValueTemplate;
use crate::grouping::ObservationGroup;
use crate::identity::ResolvedIds;
use crate::observation::{self, MergeOutcome};

/// What a save did, Azure's `ResourceOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Updated,
    NoOperation,
}

impl Saved {
    pub fn as_str(self) -> &'static str {
        match self {
            Saved::Created => "Created",
            Saved::Updated => "Updated",
            Saved::NoOperation => "NoOperation",
        }
    }
}

/// Attempts before a persistent race is reported as transient (retried later).
const RACE_ATTEMPTS: usize = 5;

fn conversion(template: &CodeValueTemplate, e: observation::ObservationError) -> Failure {
    Failure::permanent(
        Stage::FhirConversion,
        error_type::FHIR_CONVERSION,
        "ObservationConversionFailed",
        e.to_string(),
    )
    .with_template(template.type_name.to_string())
}

pub async fn save(
    client: &FhirClient,
    fhir: &Endpoint,
    template: &CodeValueTemplate,
    group: &ObservationGroup,
    ids: &ResolvedIds,
) -> Result<Saved, Failure> {
    let fresh = observation::build(template, group, ids, Utc::now())
        .map_err(|e| conversion(template, e))?;
    let id = fresh
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    for _ in 0..RACE_ATTEMPTS {
        let outcome = match client.read(fhir, "Observation", &id).await? {
            None => client.put(fhir, &fresh, None).await.map(|_| Saved::Created),
            Some((existing, etag)) => {
                match observation::merge(template, group, &existing)
                    .map_err(|e| conversion(template, e))?
                {
                    MergeOutcome::Unchanged => return Ok(Saved::NoOperation),
                    MergeOutcome::Amended(merged) => {
                        let etag = etag.or_else(|| version_etag(&existing));
                        client
                            .put(fhir, &merged, etag.as_deref())
                            .await
                            .map(|_| Saved::Updated)
                    }
                }
            }
        };
        match outcome {
            Ok(saved) => return Ok(saved),
            Err(CallError::Conflict) => continue,
            Err(CallError::Failed(f)) => {
                return Err(f.with_template(template.type_name.to_string()))
            }
        }
    }
    Err(Failure::transient(
        "ObservationContention",
        format!("Observation/{id} kept changing under concurrent writers"),
    ))
}

/// `W/"{meta.versionId}"` when the read gave no ETag header.
fn version_etag(resource: &Value) -> Option<String> {
    resource
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .map(|v| format!("W/\"{v}\""))
}
