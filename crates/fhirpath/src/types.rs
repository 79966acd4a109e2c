//! What little of the FHIR R4 type system the evaluator needs: the names of the data types
//! a choice element (`value[x]`) can take, and which type specialises which.
//!
//! There is no model of the resources here: a node's type is known only when it came from
//! a choice key (`valueQuantity` is a `Quantity`), when it is a resource (`resourceType`), or
//! when it was computed (a date literal, `resolve()`); otherwise it is guessed from the JSON.

use serde_json::Value;

/// A type named in `is`, `as`, `ofType()`; `System.X` and the unqualified `String`, `Boolean`,
/// ... are folded onto the FHIR primitive of that kind (`System.String` is taken as `string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeSpec {
    pub name: String,
}

impl TypeSpec {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        let system = match name {
            "String" => Some("string"),
            "Boolean" => Some("boolean"),
            "Integer" => Some("integer"),
            "Decimal" => Some("decimal"),
            "Date" => Some("date"),
            "DateTime" => Some("dateTime"),
            "Time" => Some("time"),
            _ => None,
        };
        let name = match (namespace, system) {
            (Some("FHIR"), _) | (_, None) => name,
            (_, Some(fhir)) => fhir,
        };
        Self {
            name: name.to_string(),
        }
    }
}

/// The data types of R4 choice elements, as the suffix of the JSON key and as the type name.
const CHOICE_TYPES: [(&str, &str); 50] = [
    ("Base64Binary", "base64Binary"),
    ("Boolean", "boolean"),
    ("Canonical", "canonical"),
    ("Code", "code"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Decimal", "decimal"),
    ("Id", "id"),
    ("Instant", "instant"),
    ("Integer", "integer"),
    ("Markdown", "markdown"),
    ("Oid", "oid"),
    ("PositiveInt", "positiveInt"),
    ("String", "string"),
    ("Time", "time"),
    ("UnsignedInt", "unsignedInt"),
    ("Uri", "uri"),
    ("Url", "url"),
    ("Uuid", "uuid"),
    ("Address", "Address"),
    ("Age", "Age"),
    ("Annotation", "Annotation"),
    ("Attachment", "Attachment"),
    ("CodeableConcept", "CodeableConcept"),
    ("Coding", "Coding"),
    ("ContactDetail", "ContactDetail"),
    ("ContactPoint", "ContactPoint"),
    ("Contributor", "Contributor"),
    ("Count", "Count"),
    ("DataRequirement", "DataRequirement"),
    ("Distance", "Distance"),
    ("Dosage", "Dosage"),
    ("Duration", "Duration"),
    ("Expression", "Expression"),
    ("HumanName", "HumanName"),
    ("Identifier", "Identifier"),
    ("Meta", "Meta"),
    ("Money", "Money"),
    ("ParameterDefinition", "ParameterDefinition"),
    ("Period", "Period"),
    ("Quantity", "Quantity"),
    ("Range", "Range"),
    ("Ratio", "Ratio"),
    ("Reference", "Reference"),
    ("RelatedArtifact", "RelatedArtifact"),
    ("SampledData", "SampledData"),
    ("Signature", "Signature"),
    ("Timing", "Timing"),
    ("TriggerDefinition", "TriggerDefinition"),
    ("UsageContext", "UsageContext"),
];

/// The type of a choice key's suffix (`Quantity` in `valueQuantity`), if it is a data type.
pub(crate) fn choice_type(suffix: &str) -> Option<&'static str> {
    if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    CHOICE_TYPES
        .iter()
        .find(|(s, _)| *s == suffix)
        .map(|(_, t)| *t)
}

/// The type a data type specialises, in R4 (`code` < `string`, `Age` < `Quantity`).
fn parent(t: &str) -> Option<&'static str> {
    Some(match t {
        "code" | "id" | "markdown" => "string",
        "positiveInt" | "unsignedInt" => "integer",
        "url" | "canonical" | "oid" | "uuid" => "uri",
        "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity" | "MoneyQuantity" => {
            "Quantity"
        }
        _ => return None,
    })
}

/// `actual` is `wanted` or specialises it.
pub(crate) fn is_subtype(actual: &str, wanted: &str) -> bool {
    let mut t = Some(actual);
    while let Some(cur) = t {
        if cur == wanted {
            return true;
        }
        t = parent(cur);
    }
    false
}

/// The `resourceType` of a resource node.
pub(crate) fn resource_type(v: &Value) -> Option<&str> {
    v.as_object()?.get("resourceType")?.as_str()
}

/// A resource of type `rt` is a `wanted`.
pub(crate) fn resource_is(rt: &str, wanted: &str) -> bool {
    rt == wanted
        || wanted == "Resource"
        || (wanted == "DomainResource" && !matches!(rt, "Bundle" | "Binary" | "Parameters"))
}

/// Whether a node of unknown type may be a `wanted`, judging by its JSON alone: a JSON string
/// is any string-like primitive (dates and times only if it looks like one), a number is a
/// `decimal` (and an `integer` when integral), `true`/`false` a `boolean`. An object that is
/// not a resource has no known type.
pub(crate) fn loosely_is(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => match wanted {
            "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid"
            | "uuid" | "base64Binary" | "xhtml" => true,
            "date" => looks_like_date(s),
            "dateTime" => looks_like_datetime(s),
            "instant" => looks_like_datetime(s) && s.len() > 19,
            "time" => looks_like_time(s),
            _ => false,
        },
        Value::Bool(_) => wanted == "boolean",
        Value::Number(n) => {
            let text = n.to_string();
            let integral = !text.contains(['.', 'e', 'E']);
            match wanted {
                "decimal" => true,
                "integer" => integral,
                "unsignedInt" => integral && !text.starts_with('-'),
                "positiveInt" => {
                    integral && !text.starts_with('-') && !text.trim_start_matches('0').is_empty()
                }
                _ => false,
            }
        }
        Value::Object(_) => resource_type(v).is_some_and(|rt| resource_is(rt, wanted)),
        _ => false,
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
pub(crate) fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        4 => digits(0..4),
        7 => digits(0..4) && b[4] == b'-' && digits(5..7),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => false,
    }
}

/// A date, or a date, `T` and a time with an optional zone.
pub(crate) fn looks_like_datetime(s: &str) -> bool {
    match s.split_once('T') {
        None => looks_like_date(s),
        Some((d, t)) => {
            looks_like_date(d)
                && (t.is_empty() || {
                    let end = t.find(['Z', '+', '-']).unwrap_or(t.len());
                    looks_like_time(&t[..end])
                })
        }
    }
}

/// `hh`, `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fff`.
pub(crate) fn looks_like_time(s: &str) -> bool {
    let (hms, frac) = s.split_once('.').unwrap_or((s, "0"));
    !frac.is_empty()
        && frac.bytes().all(|c| c.is_ascii_digit())
        && hms.len() <= 8
        && hms
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()))
}
