//! A normalized measurement: what a device mapping extracts from one match in one event.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::identity::TypeName;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    #[serde(rename = "type")]
    pub type_name: TypeName,
    #[serde(serialize_with = "round_trip")]
    pub occurrence_time_utc: DateTime<Utc>,
    pub device_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub properties: Vec<MeasurementProperty>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasurementProperty {
    pub name: String,
    pub value: String,
}

fn round_trip<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::format_round_trip(*t))
}
