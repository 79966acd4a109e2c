//! The mapping debugger (Azure has one in its portal): a device mapping, a FHIR destination
//! mapping and a message in, the normalized measurements, the Observations that would be
//! written and every error out, with no side effects.
//!
//! Patient and Device ids are those Create resolution gives (hashed from the message's ids):
//! Lookup resolution needs the FHIR service, which the debugger does not touch.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::envelope::DeviceEvent;
use crate::fhir_mapping::FhirMapping;
use crate::grouping::{group_measurements, observation_groups, MeasurementGroup};
use crate::identity::{create_mode_ids, ResolvedIds};
use crate::mapping_doc::InvalidMapping;
use crate::measurement::Measurement;
use crate::observation;
use crate::template::DeviceMapping;

/// Which step an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stage {
    DeviceMapping,
    FhirMapping,
    Normalization,
    FhirConversion,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DebugError {
    pub stage: Stage,
    /// Where in the mapping, when the error is the mapping's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DebugReport {
    pub measurements: Vec<Measurement>,
    pub observations: Vec<Value>,
    pub errors: Vec<DebugError>,
}

impl DebugReport {
    fn error(&mut self, stage: Stage, path: Option<String>, message: String) {
        self.errors.push(DebugError {
            stage,
            path,
            line: None,
            column: None,
            message,
        });
    }

    fn mapping_errors(&mut self, stage: Stage, invalid: InvalidMapping) {
        self.errors
            .extend(invalid.errors.into_iter().map(|e| DebugError {
                stage,
                path: Some(e.path),
                line: e.line,
                column: e.column,
                message: e.message,
            }));
    }
}

/// Why a measurement group gave no Observation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConversionError {
    #[error("no FHIR template for the type '{0}'")]
    TemplateNotFound(String),
    #[error("{0}")]
    Grouping(#[from] crate::grouping::GroupingError),
    #[error("{0}")]
    Observation(#[from] observation::ObservationError),
}

/// The new Observations a measurement group becomes, for resolved `ids`.
pub fn observations(
    fhir: &FhirMapping,
    group: &MeasurementGroup,
    ids: &ResolvedIds,
    issued: DateTime<Utc>,
) -> Result<Vec<Value>, ConversionError> {
    let template = fhir
        .template_for(&group.key.type_name)
        .ok_or_else(|| ConversionError::TemplateNotFound(group.key.type_name.to_string()))?;
    observation_groups(group, template.period_interval)?
        .iter()
        .map(|g| observation::build(template, g, ids, issued).map_err(ConversionError::from))
        .collect()
}

pub fn debug(
    device_mapping: &str,
    fhir_mapping: &str,
    event: &DeviceEvent,
    issued: DateTime<Utc>,
) -> DebugReport {
    let mut report = DebugReport::default();
    let device = DeviceMapping::parse(device_mapping)
        .map_err(|e| report.mapping_errors(Stage::DeviceMapping, e))
        .ok();
    let fhir = FhirMapping::parse(fhir_mapping)
        .map_err(|e| report.mapping_errors(Stage::FhirMapping, e))
        .ok();
    let Some(device) = device else {
        return report;
    };
    let normalized = device.normalize(event);
    for e in normalized.errors {
        let path = e.expression_path.clone().or(Some(e.template_path.clone()));
        report.error(Stage::Normalization, path, e.to_string());
    }
    report.measurements = normalized.measurements;
    let Some(fhir) = fhir else {
        return report;
    };
    for group in group_measurements(report.measurements.clone()) {
        let Some(patient) = group.key.patient_id.as_deref() else {
            report.error(
                Stage::FhirConversion,
                None,
                format!(
                    "the '{}' measurements of device '{}' have no patient id, which Create resolution needs",
                    group.key.type_name, group.key.device_id
                ),
            );
            continue;
        };
        let ids = create_mode_ids(patient, &group.key.device_id, None, None);
        match observations(&fhir, &group, &ids, issued) {
            Ok(made) => report.observations.extend(made),
            Err(e) => report.error(Stage::FhirConversion, None, e.to_string()),
        }
    }
    report
}
