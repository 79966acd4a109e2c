//! The DICOM JSON model (PS3.18 Annex F), written from a parsed data set.
//!
//! Written here rather than with `dicom-json` because the metadata Azure serves has rules of
//! its own: attributes with bulk VRs (OB, OD, OF, OL, OV, OW, UN) are left out, DS and IS are
//! JSON numbers when they parse (strings otherwise, never a failure), string values keep a
//! NUL padding ("stored as is"), and attributes that failed v2 validation are dropped.

use std::collections::HashSet;

use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use serde_json::{json, Map, Value};

/// The key of a tag in DICOM JSON: eight uppercase hex digits.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// VRs whose values Azure's metadata leaves out.
pub fn is_bulk(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// The data set as a DICOM JSON object, without the top-level attributes in `drop` and
/// without group 0002 (file meta information is not part of the data set).
pub fn dataset(obj: &InMemDicomObject, drop: &HashSet<Tag>) -> Map<String, Value> {
    let mut out = Map::new();
    for elem in obj.iter() {
        let tag = elem.header().tag;
        if tag.group() == 0x0002 || drop.contains(&tag) {
            continue;
        }
        if let Some(v) = element(elem.vr(), elem.value()) {
            out.insert(tag_key(tag), v);
        }
    }
    out
}

fn element(
    vr: VR,
    value: &DicomValue<InMemDicomObject, dicom_object::mem::InMemFragment>,
) -> Option<Value> {
    if is_bulk(vr) {
        return None;
    }
    let mut attr = Map::new();
    attr.insert("vr".into(), Value::String(vr.to_string().to_owned()));
    match value {
        DicomValue::PixelSequence(_) => return None,
        DicomValue::Sequence(seq) => {
            let items: Vec<Value> = seq
                .items()
                .iter()
                .map(|item| Value::Object(dataset(item, &HashSet::new())))
                .collect();
            if !items.is_empty() {
                attr.insert("Value".into(), Value::Array(items));
            }
        }
        DicomValue::Primitive(p) => {
            if let Some(values) = primitive(vr, p) {
                attr.insert("Value".into(), Value::Array(values));
            }
        }
    }
    Some(Value::Object(attr))
}

/// The raw string values of a text element: split at backslashes by the parser, trailing
/// spaces (padding) removed, NUL padding kept as Azure keeps it.
pub fn strings(p: &PrimitiveValue) -> Vec<String> {
    match p {
        PrimitiveValue::Str(s) => vec![s.trim_end_matches(' ').to_owned()],
        PrimitiveValue::Strs(v) => v
            .iter()
            .map(|s| s.trim_end_matches(' ').to_owned())
            .collect(),
        other => other.to_multi_str().into_owned(),
    }
}

fn primitive(vr: VR, p: &PrimitiveValue) -> Option<Vec<Value>> {
    if matches!(p, PrimitiveValue::Empty) {
        return None;
    }
    let values: Vec<Value> = match (vr, p) {
        (VR::AT, PrimitiveValue::Tags(tags)) => {
            tags.iter().map(|t| Value::String(tag_key(*t))).collect()
        }
        (VR::PN, p) => strings(p)
            .into_iter()
            .map(|s| {
                if s.is_empty() {
                    Value::Null
                } else {
                    person_name(&s)
                }
            })
            .collect(),
        (VR::DS | VR::IS, p) => strings(p)
            .into_iter()
            .map(|s| decimal_string(s.trim_matches([' ', '\0'])))
            .collect(),
        // NUL is the padding PS3.5 prescribes for UIDs, not part of them.
        (VR::UI, p) => strings(p)
            .into_iter()
            .map(|s| s.trim_end_matches('\0').to_owned())
            .map(|s| {
                if s.is_empty() {
                    Value::Null
                } else {
                    Value::String(s)
                }
            })
            .collect(),
        (_, PrimitiveValue::Str(_) | PrimitiveValue::Strs(_)) => strings(p)
            .into_iter()
            .map(|s| {
                if s.is_empty() {
                    Value::Null
                } else {
                    Value::String(s)
                }
            })
            .collect(),
        (_, PrimitiveValue::U8(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::I16(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::U16(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::I32(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::U32(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::I64(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::U64(v)) => v.iter().map(|n| json!(n)).collect(),
        (_, PrimitiveValue::F32(v)) => v.iter().map(|n| float(f64::from(*n))).collect(),
        (_, PrimitiveValue::F64(v)) => v.iter().map(|n| float(*n)).collect(),
        (_, other) => other.to_multi_str().iter().map(|s| json!(s)).collect(),
    };
    (!values.is_empty()).then_some(values)
}

/// NaN and infinities have no JSON number: PS3.18 F.2.3.1 writes them as strings.
fn float(n: f64) -> Value {
    serde_json::Number::from_f64(n).map_or_else(|| Value::String(n.to_string()), Value::Number)
}

/// A DS or IS value as a JSON number with its digits as written, or as the string it is when
/// it is not a number (such a value is reported by validation, not lost).
fn decimal_string(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    let canonical = s.strip_prefix('+').unwrap_or(s);
    if let Ok(n) = serde_json::from_str::<serde_json::Number>(canonical) {
        return Value::Number(n);
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => float(f),
        _ => Value::String(s.to_owned()),
    }
}

/// A PN value: its component groups as Alphabetic, Ideographic, Phonetic.
fn person_name(s: &str) -> Value {
    let mut obj = Map::new();
    for (key, group) in ["Alphabetic", "Ideographic", "Phonetic"]
        .iter()
        .zip(s.split('='))
    {
        if !group.is_empty() {
            obj.insert((*key).into(), Value::String(group.to_owned()));
        }
    }
    Value::Object(obj)
}

/// The first string value of `tag` in a DICOM JSON object (PN: its alphabetic group).
pub fn first_string(json: &Map<String, Value>, tag: Tag) -> Option<String> {
    let v = json.get(&tag_key(tag))?.get("Value")?.get(0)?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(pn) => pn
            .get("Alphabetic")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// The attributes of `tags` that `json` has, as a DICOM JSON object.
pub fn subset(json: &Map<String, Value>, tags: &[Tag]) -> Map<String, Value> {
    tags.iter()
        .filter_map(|t| {
            let k = tag_key(*t);
            json.get(&k).map(|v| (k, v.clone()))
        })
        .collect()
}

/// One attribute of a response data set.
pub fn attr(vr: &str, values: Vec<Value>) -> Value {
    json!({ "vr": vr, "Value": values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::tags;

    #[test]
    fn writes_azure_flavoured_dicom_json() {
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("Doe^John")),
            DataElement::new(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::from("2.50")),
            DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                dicom_core::dicom_value!(Strs, ["ORIGINAL", "PRIMARY"]),
            ),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512_u16)),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.3\0"),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8(vec![0; 4].into()),
            ),
        ]);
        let json = Value::Object(dataset(&obj, &HashSet::new())).to_string();
        assert_eq!(
            json,
            r#"{"00080008":{"vr":"CS","Value":["ORIGINAL","PRIMARY"]},"00080018":{"vr":"UI","Value":["1.2.3"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe^John"}]},"00180050":{"vr":"DS","Value":[2.50]},"00280010":{"vr":"US","Value":[512]}}"#
        );
    }
}
