//! A new Observation from an observation group, with elements in FHIR's order.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{identifier, ObservationError};
use crate::fhir_mapping::value::{self, codings_json, concept_json, ValueData};
use crate::fhir_mapping::{CodeValueTemplate, Coding};
use crate::grouping::ObservationGroup;
use crate::identity::{ResolvedIds, SERVICE_SYSTEM};
use crate::time::format_round_trip;

/// `code` (or a component's): the template's codes, then the service's own coding of `name`
/// (system [`SERVICE_SYSTEM`], code and display `name`), with `name` as text.
pub(crate) fn code(name: &str, codes: &[Coding]) -> Value {
    let mut coding = codings_json(codes);
    coding.push(json!({"system": SERVICE_SYSTEM, "code": name, "display": name}));
    json!({"coding": coding, "text": name})
}

pub(crate) fn period(start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    json!({"start": format_round_trip(start), "end": format_round_trip(end)})
}

pub(crate) fn categories(template: &CodeValueTemplate) -> Option<Value> {
    (!template.category.is_empty())
        .then(|| Value::Array(template.category.iter().map(concept_json).collect()))
}

pub(crate) fn reference(kind: &str, id: &impl std::fmt::Display) -> Value {
    json!({"reference": format!("{kind}/{id}")})
}

/// The Observation of `group`. `issued` is when it is written (iomt-fhir's `UtcNow`).
pub fn build(
    template: &CodeValueTemplate,
    group: &ObservationGroup,
    ids: &ResolvedIds,
    issued: DateTime<Utc>,
) -> Result<Value, ObservationError> {
    let identifier = identifier(group, ids);
    let window = (group.start, group.end);
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert("id".into(), json!(identifier.resource_id()));
    o.insert("identifier".into(), json!([identifier.to_json()]));
    o.insert("status".into(), json!("final"));
    if let Some(c) = categories(template) {
        o.insert("category".into(), c);
    }
    o.insert(
        "code".into(),
        code(group.type_name.as_str(), &template.codes),
    );
    o.insert("subject".into(), reference("Patient", &ids.patient));
    if let Some(encounter) = &ids.encounter {
        o.insert("encounter".into(), reference("Encounter", encounter));
    }
    o.insert("effectivePeriod".into(), period(group.start, group.end));
    o.insert(
        "issued".into(),
        json!(format_round_trip(issued).replace('Z', "+00:00")),
    );
    if let Some(v) = &template.value {
        if let Some(values) = v.value_name.as_deref().and_then(|n| group.values_of(n)) {
            let data = ValueData {
                data_period: window,
                observation_period: window,
                values,
            };
            let element = value::element_name(&v.kind);
            let made = value::create(&v.kind, &data).map_err(|source| ObservationError::Value {
                element: element.into(),
                source,
            })?;
            o.insert(element.into(), made);
        }
    }
    o.insert("device".into(), reference("Device", &ids.device));
    let mut components = Vec::new();
    for c in &template.components {
        let Some(name) = c.value.value_name.as_deref() else {
            continue;
        };
        let Some(values) = group.values_of(name) else {
            continue;
        };
        let data = ValueData {
            data_period: window,
            observation_period: window,
            values,
        };
        let element = value::element_name(&c.value.kind);
        let made =
            value::create(&c.value.kind, &data).map_err(|source| ObservationError::Value {
                element: format!("component '{name}' {element}"),
                source,
            })?;
        components.push(json!({"code": code(name, &c.codes), element: made}));
    }
    if !components.is_empty() {
        o.insert("component".into(), Value::Array(components));
    }
    Ok(Value::Object(o))
}
