//! Merging an observation group into the Observation already written for its identifier, as
//! iomt-fhir does: category replaced by the template's, `value[x]` and components merged
//! (components found by the service's coding of their value name), the effective period
//! widened to cover the new data; if anything changed the status becomes `amended`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::build::{categories, code, period};
use super::{value_element, ObservationError};
use crate::fhir_mapping::value::{self, ValueData};
use crate::fhir_mapping::{CodeValueTemplate, ValueTemplate};
use crate::grouping::ObservationGroup;
use crate::identity::SERVICE_SYSTEM;
use crate::time::parse_fhir_date_time;

#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    /// The merged Observation, `status: amended`.
    Amended(Value),
    /// The group adds nothing: there is nothing to write.
    Unchanged,
}

pub fn merge(
    template: &CodeValueTemplate,
    group: &ObservationGroup,
    existing: &Value,
) -> Result<MergeOutcome, ObservationError> {
    let mut merged = existing.clone();
    let (obs_start, obs_end) = effective(existing)?;
    let o = merged
        .as_object_mut()
        .ok_or_else(|| ObservationError::Existing("it is not a JSON object".into()))?;
    o.remove("category");
    if let Some(c) = categories(template) {
        o.insert("category".into(), c);
    }
    let data = |values| ValueData {
        data_period: (group.start, group.end),
        observation_period: (obs_start, obs_end),
        values,
    };
    if let Some(v) = &template.value {
        if let Some(values) = v.value_name.as_deref().and_then(|n| group.values_of(n)) {
            let current =
                value_element(&Value::Object(o.clone())).map(|(k, v)| (k.to_owned(), v.clone()));
            let new = merged_value(
                v,
                &data(values),
                current.as_ref().map(|(k, v)| (k.as_str(), v)),
                "value",
            )?;
            if let Some((k, _)) = &current {
                o.remove(k);
            }
            o.insert(value::element_name(&v.kind).into(), new);
        }
    }
    for c in &template.components {
        let Some(name) = c.value.value_name.as_deref() else {
            continue;
        };
        let Some(values) = group.values_of(name) else {
            continue;
        };
        let components = o
            .entry("component")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(components) = components else {
            return Err(ObservationError::Existing(
                "its component is not an array".into(),
            ));
        };
        let found = components
            .iter_mut()
            .find(|comp| has_service_code(comp, name));
        let what = format!("component '{name}'");
        match found {
            Some(comp) => {
                let current = value_element(comp).map(|(k, v)| (k.to_owned(), v.clone()));
                let new = merged_value(
                    &c.value,
                    &data(values),
                    current.as_ref().map(|(k, v)| (k.as_str(), v)),
                    &what,
                )?;
                if let Some(m) = comp.as_object_mut() {
                    if let Some((k, _)) = &current {
                        m.remove(k);
                    }
                    m.insert(value::element_name(&c.value.kind).into(), new);
                }
            }
            None => {
                let element = value::element_name(&c.value.kind);
                let new = value::create(&c.value.kind, &data(values)).map_err(|source| {
                    ObservationError::Value {
                        element: format!("{what} {element}"),
                        source,
                    }
                })?;
                components.push(serde_json::json!({"code": code(name, &c.codes), element: new}));
            }
        }
    }
    o.remove("effectiveDateTime");
    o.insert(
        "effectivePeriod".into(),
        period(obs_start.min(group.start), obs_end.max(group.end)),
    );
    if &merged == existing {
        return Ok(MergeOutcome::Unchanged);
    }
    if let Some(o) = merged.as_object_mut() {
        o.insert("status".into(), Value::String("amended".into()));
    }
    Ok(MergeOutcome::Amended(merged))
}

fn merged_value(
    template: &ValueTemplate,
    data: &ValueData<'_>,
    current: Option<(&str, &Value)>,
    what: &str,
) -> Result<Value, ObservationError> {
    let element = value::element_name(&template.kind);
    let result = match current {
        Some((k, v)) => value::merge(&template.kind, data, k, v),
        // iomt-fhir refuses to merge into a missing value.
        None => Err(value::ValueError::WrongExistingType {
            expected: element,
            actual: "missing".into(),
        }),
    };
    result.map_err(|source| ObservationError::Value {
        element: format!("{what} {element}"),
        source,
    })
}

fn has_service_code(component: &Value, name: &str) -> bool {
    component
        .pointer("/code/coding")
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("code").and_then(Value::as_str) == Some(name)
                    && c.get("system").and_then(Value::as_str) == Some(SERVICE_SYSTEM)
            })
        })
}

/// The existing Observation's effective time as a (start, end) period.
fn effective(existing: &Value) -> Result<(DateTime<Utc>, DateTime<Utc>), ObservationError> {
    let read = |v: Option<&Value>, what: &str| {
        v.and_then(Value::as_str)
            .and_then(parse_fhir_date_time)
            .ok_or_else(|| {
                ObservationError::Existing(format!("its {what} is missing or not a dateTime"))
            })
    };
    if let Some(dt) = existing.get("effectiveDateTime") {
        let t = read(Some(dt), "effectiveDateTime")?;
        return Ok((t, t));
    }
    let p = existing.get("effectivePeriod");
    Ok((
        read(p.and_then(|p| p.get("start")), "effectivePeriod.start")?,
        read(p.and_then(|p| p.get("end")), "effectivePeriod.end")?,
    ))
}
