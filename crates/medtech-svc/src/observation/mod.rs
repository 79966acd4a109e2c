//! Observations as iomt-fhir writes them: built from an observation group and its FHIR
//! template, identified by `{patient}.{device}.{type}.{window or correlation id}` under the
//! service's system (the Patient and Device parts are the resolved FHIR resource ids), with
//! the id hashed from that identifier; and merged into an existing Observation.

mod build;
mod merge;

use serde_json::Value;

pub use build::build;
pub use merge::{merge, MergeOutcome};

use crate::fhir_mapping::value::ValueError;
use crate::grouping::ObservationGroup;
use crate::identity::{Identifier, ResolvedIds, SERVICE_SYSTEM};

/// The identifier of the Observation of `group` for the resolved resources.
pub fn identifier(group: &ObservationGroup, ids: &ResolvedIds) -> Identifier {
    let value = format!(
        "{}.{}.{}.{}",
        ids.patient, ids.device, group.type_name, group.id_segment
    );
    Identifier::new(Some(SERVICE_SYSTEM), &value)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObservationError {
    #[error("{element}: {source}")]
    Value {
        element: String,
        #[source]
        source: ValueError,
    },
    #[error("the existing Observation cannot be merged: {0}")]
    Existing(String),
}

/// The Observation's `value[x]`: its element name and value, if it has one.
pub(crate) fn value_element(resource: &Value) -> Option<(&str, &Value)> {
    resource
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value") && k.len() > "value".len())
        .map(|(k, v)| (k.as_str(), v))
}
