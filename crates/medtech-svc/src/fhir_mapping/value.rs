//! Making and merging an Observation's `value[x]` from a group's values, per value type, as
//! iomt-fhir's R4 value processors do: Quantity and String take exactly one value and replace
//! on merge; CodeableConcept is the template's concept (its presence is the value);
//! SampledData lays values into slots of `defaultPeriod` milliseconds from the Observation's
//! start (`E` where none), merging by slot time with the new value winning.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Map, Number, Value};

use super::{Coding, ConceptTemplate, ValueKind};

/// Slots a SampledData may have: a day at 1 ms would be 86 million, which no FHIR server
/// should be sent; such a mapping fails instead.
const MAX_SAMPLES: i64 = 1_000_000;

/// The data one value is made from.
pub struct ValueData<'a> {
    /// Where the new values lie (the group's window).
    pub data_period: (DateTime<Utc>, DateTime<Utc>),
    /// The Observation's effective period (the group's window when creating).
    pub observation_period: (DateTime<Utc>, DateTime<Utc>),
    pub values: &'a [(DateTime<Utc>, String)],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected 1 value, received {0}")]
    NotOneValue(usize),
    #[error("'{0}' is not a decimal number")]
    NotADecimal(String),
    #[error("the existing Observation's value is {actual}, expected {expected}")]
    WrongExistingType {
        expected: &'static str,
        actual: String,
    },
    #[error("the existing SampledData has more than one dimension")]
    SeveralDimensions,
    #[error("the existing SampledData has no data")]
    NoSampledData,
    #[error("a SampledData of more than {MAX_SAMPLES} samples")]
    TooManySamples,
}

/// The `value[x]` element name of a value type.
pub fn element_name(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::Quantity { .. } => "valueQuantity",
        ValueKind::SampledData { .. } => "valueSampledData",
        ValueKind::String => "valueString",
        ValueKind::CodeableConcept(_) => "valueCodeableConcept",
    }
}

pub fn codings_json(codes: &[Coding]) -> Vec<Value> {
    codes
        .iter()
        .map(|c| {
            let mut m = Map::new();
            insert_opt(&mut m, "system", &c.system);
            insert_opt(&mut m, "code", &c.code);
            insert_opt(&mut m, "display", &c.display);
            Value::Object(m)
        })
        .collect()
}

pub fn insert_opt(m: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        m.insert(key.into(), Value::String(v.clone()));
    }
}

/// A CodeableConcept; empty lists are left out, as FHIR serializers do.
pub fn concept_json(concept: &ConceptTemplate) -> Value {
    let mut m = Map::new();
    let coding = codings_json(&concept.codes);
    if !coding.is_empty() {
        m.insert("coding".into(), Value::Array(coding));
    }
    insert_opt(&mut m, "text", &concept.text);
    Value::Object(m)
}

pub fn create(kind: &ValueKind, data: &ValueData<'_>) -> Result<Value, ValueError> {
    match kind {
        ValueKind::Quantity { unit, system, code } => {
            let mut m = Map::new();
            m.insert(
                "value".into(),
                Value::Number(decimal(single(data.values)?)?),
            );
            insert_opt(&mut m, "unit", unit);
            insert_opt(&mut m, "system", system);
            insert_opt(&mut m, "code", code);
            Ok(Value::Object(m))
        }
        ValueKind::String => Ok(Value::String(single(data.values)?.to_owned())),
        ValueKind::CodeableConcept(concept) => Ok(concept_json(concept)),
        ValueKind::SampledData {
            default_period,
            unit,
        } => {
            let (start, end) = data.observation_period;
            let mut origin = Map::new();
            origin.insert("value".into(), json!(0));
            insert_opt(&mut origin, "unit", unit);
            Ok(json!({
                "origin": origin,
                "period": default_period,
                "dimensions": 1,
                "data": build_samples(data.values, start, end, default_period)?,
            }))
        }
    }
}

/// Merges new values into `existing` (the current `value[x]`, under `existing_element`).
pub fn merge(
    kind: &ValueKind,
    data: &ValueData<'_>,
    existing_element: &str,
    existing: &Value,
) -> Result<Value, ValueError> {
    let expected = element_name(kind);
    if existing_element != expected {
        return Err(ValueError::WrongExistingType {
            expected,
            actual: existing_element.to_owned(),
        });
    }
    let ValueKind::SampledData { default_period, .. } = kind else {
        return create(kind, data);
    };
    if existing
        .get("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        > 1
    {
        return Err(ValueError::SeveralDimensions);
    }
    let stream = existing
        .get("data")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .ok_or(ValueError::NoSampledData)?;
    let (obs_start, obs_end) = data.observation_period;
    let merge_start = data.data_period.0.min(obs_start);
    let merge_end = data.data_period.1.max(obs_end);
    let old = parse_samples(stream, obs_start, default_period)?;
    let merged = merge_samples(&old, data.values);
    let mut out = existing.clone();
    if let Some(m) = out.as_object_mut() {
        m.insert(
            "data".into(),
            Value::String(build_samples(
                &merged,
                merge_start,
                merge_end,
                default_period,
            )?),
        );
    }
    Ok(out)
}

fn single(values: &[(DateTime<Utc>, String)]) -> Result<&str, ValueError> {
    match values {
        [(_, v)] => Ok(v),
        _ => Err(ValueError::NotOneValue(values.len())),
    }
}

/// .NET's `decimal.Parse` with the invariant culture: an optional sign, digits with optional
/// group separators, an optional fraction; the digits of the fraction are kept.
pub fn decimal(text: &str) -> Result<Number, ValueError> {
    let invalid = || ValueError::NotADecimal(text.to_owned());
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let int: String = int.chars().filter(|c| *c != ',').collect();
    if (int.is_empty() && frac.is_empty())
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(invalid());
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let all_zero = int == "0" && frac.chars().all(|c| c == '0');
    let sign = if negative && !all_zero { "-" } else { "" };
    let text = if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    };
    serde_json::from_str(&text).map_err(|_| invalid())
}

fn period_ticks(period_ms: &Number) -> TimeDelta {
    let ms = period_ms.as_f64().unwrap_or(1.0);
    // .NET adds milliseconds in whole ticks; at least one, so that slots always advance.
    TimeDelta::nanoseconds(((ms * 10_000.0) as i64).max(1) * 100)
}

/// Slots from `start` to `end` (inclusive) every period; each takes the last value falling in
/// it, or `E`. Values must be in time order; as in iomt-fhir, a value before `start` stops
/// the filling (merging always starts at the earliest time, so it never happens there).
pub fn build_samples(
    values: &[(DateTime<Utc>, String)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    period_ms: &Number,
) -> Result<String, ValueError> {
    let step = period_ticks(period_ms);
    let span = (end - start).num_nanoseconds().unwrap_or(i64::MAX);
    let step_ns = step.num_nanoseconds().unwrap_or(i64::MAX);
    if span / step_ns >= MAX_SAMPLES {
        return Err(ValueError::TooManySamples);
    }
    let mut out: Vec<&str> = Vec::new();
    let (mut current, mut i) = (start, 0);
    while current <= end {
        let next = current + step;
        let mut slot = None;
        while let Some((_, v)) = values.get(i).filter(|(t, _)| *t >= current && *t < next) {
            slot = Some(v.as_str());
            i += 1;
        }
        out.push(slot.unwrap_or("E"));
        current = next;
    }
    Ok(out.join(" "))
}

/// The (time, value) of each filled slot of a SampledData stream.
pub fn parse_samples(
    stream: &str,
    start: DateTime<Utc>,
    period_ms: &Number,
) -> Result<Vec<(DateTime<Utc>, String)>, ValueError> {
    let step = period_ticks(period_ms);
    let tokens: Vec<&str> = stream.split(' ').collect();
    if i64::try_from(tokens.len()).unwrap_or(i64::MAX) > MAX_SAMPLES {
        return Err(ValueError::TooManySamples);
    }
    let mut time = start;
    let mut out = Vec::new();
    for token in tokens {
        if token != "E" {
            out.push((time, token.to_owned()));
        }
        time += step;
    }
    Ok(out)
}

/// Both series merged by time; at the same time the new value wins.
pub fn merge_samples(
    existing: &[(DateTime<Utc>, String)],
    new: &[(DateTime<Utc>, String)],
) -> Vec<(DateTime<Utc>, String)> {
    let mut out = Vec::with_capacity(existing.len() + new.len());
    let (mut e, mut n) = (existing.iter().peekable(), new.iter().peekable());
    loop {
        match (e.peek(), n.peek()) {
            (None, None) => return out,
            (Some(_), None) => out.extend(e.next().cloned()),
            (None, Some(_)) => out.extend(n.next().cloned()),
            (Some(a), Some(b)) if a.0 < b.0 => out.extend(e.next().cloned()),
            (Some(a), Some(b)) if a.0 > b.0 => out.extend(n.next().cloned()),
            _ => {
                out.extend(n.next().cloned());
                e.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn decimals_as_dotnet_parses_them() {
        assert_eq!(decimal("120").unwrap().to_string(), "120");
        assert_eq!(decimal(" 98.60 ").unwrap().to_string(), "98.60");
        assert_eq!(decimal("+007.5").unwrap().to_string(), "7.5");
        assert_eq!(decimal(".5").unwrap().to_string(), "0.5");
        assert_eq!(decimal("1,000").unwrap().to_string(), "1000");
        assert_eq!(decimal("-0").unwrap().to_string(), "0");
        for bad in ["", "abc", "1e3", "1.2.3", "-", "."] {
            assert!(decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn samples_fill_slots_and_merge_with_new_values_winning() {
        let period = Number::from(5000);
        let start = t("2020-01-01T10:00:00Z");
        let end = t("2020-01-01T10:00:20Z");
        let values = vec![
            (t("2020-01-01T10:00:00Z"), "60".to_owned()),
            (t("2020-01-01T10:00:11Z"), "62".to_owned()),
        ];
        let data = build_samples(&values, start, end, &period).unwrap();
        assert_eq!(data, "60 E 62 E E");
        let old = parse_samples(&data, start, &period).unwrap();
        assert_eq!(old[1], (t("2020-01-01T10:00:10Z"), "62".to_owned()));
        let merged = merge_samples(&old, &[(t("2020-01-01T10:00:10Z"), "70".to_owned())]);
        assert_eq!(
            build_samples(&merged, start, end, &period).unwrap(),
            "60 E 70 E E"
        );
        let hour_at_1ms = build_samples(&[], start, start + TimeDelta::days(1), &Number::from(1));
        assert_eq!(hour_at_1ms, Err(ValueError::TooManySamples));
    }
}
