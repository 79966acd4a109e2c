//! Request bodies of PUT and PATCH, checked against the shapes every resource shares
//! (`location`, `tags`, `kind`, `identity`, `properties`); what each type's `properties` may
//! hold is checked by its own route module.
//!
//! Read-only members a client echoes back (`id`, `name`, `type`, `etag`, `systemData`,
//! `properties.provisioningState`) are ignored, as ARM does.

use serde_json::{Map, Value};

use crate::error::ArmError;

/// What a PUT asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PutBody {
    pub location: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub kind: Option<String>,
    pub identity: Option<Value>,
    pub properties: Map<String, Value>,
}

/// What a PATCH may change: tags and the managed identity.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchBody {
    pub tags: Option<Map<String, Value>>,
    pub identity: Option<Value>,
}

/// ARM's limits on tags.
const MAX_TAGS: usize = 50;
const MAX_TAG_NAME: usize = 512;
const MAX_TAG_VALUE: usize = 256;

/// A request body must be JSON, as ARM requires; a request without a Content-Type is read as
/// JSON all the same.
pub fn check_media_type(req: &actix_web::HttpRequest) -> Result<(), ArmError> {
    let Some(ct) = req.headers().get(actix_web::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or_default();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ArmError::UnsupportedMediaType(ct.to_owned()))
    }
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ArmError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ArmError::InvalidBody {
            target: None,
            message: "The request content must be a JSON object.".into(),
        }),
        Err(e) => Err(ArmError::InvalidBody {
            target: None,
            message: format!("The request content is not valid JSON: {e}"),
        }),
    }
}

fn tags(v: Option<Value>) -> Result<Option<Map<String, Value>>, ArmError> {
    let tags = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ArmError::body(
                "tags",
                "'tags' must be an object of strings.",
            ))
        }
    };
    if tags.len() > MAX_TAGS {
        return Err(ArmError::body(
            "tags",
            "A resource may have at most 50 tags.",
        ));
    }
    for (name, value) in &tags {
        let Some(value) = value.as_str() else {
            return Err(ArmError::body(
                format!("tags.{name}"),
                format!("The value of tag '{name}' must be a string."),
            ));
        };
        if name.is_empty() || name.len() > MAX_TAG_NAME || value.len() > MAX_TAG_VALUE {
            return Err(ArmError::body(
                format!("tags.{name}"),
                "Tag names have 1 to 512 characters and values at most 256.",
            ));
        }
    }
    Ok(Some(tags))
}

const IDENTITY_TYPES: [&str; 4] = [
    "None",
    "SystemAssigned",
    "UserAssigned",
    "SystemAssigned,UserAssigned",
];

fn identity(v: Option<Value>) -> Result<Option<Value>, ArmError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            match m.get("type").and_then(Value::as_str) {
                Some(t) if IDENTITY_TYPES.contains(&t) => {}
                _ => {
                    return Err(ArmError::body(
                        "identity.type",
                        format!(
                            "'identity.type' must be one of {}.",
                            IDENTITY_TYPES.join(", ")
                        ),
                    ))
                }
            }
            Ok(Some(Value::Object(m)))
        }
        Some(_) => Err(ArmError::body("identity", "'identity' must be an object.")),
    }
}

fn string(v: Option<Value>, target: &str) -> Result<Option<String>, ArmError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ArmError::body(
            target,
            format!("'{target}' must be a string."),
        )),
    }
}

impl PutBody {
    pub fn parse(bytes: &[u8]) -> Result<Self, ArmError> {
        let mut m = json_object(bytes)?;
        let mut properties = match m.remove("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(ArmError::body(
                    "properties",
                    "'properties' must be an object.",
                ))
            }
        };
        properties.remove("provisioningState");
        Ok(PutBody {
            location: string(m.remove("location"), "location")?.filter(|l| !l.trim().is_empty()),
            tags: tags(m.remove("tags"))?,
            kind: string(m.remove("kind"), "kind")?,
            identity: identity(m.remove("identity"))?,
            properties,
        })
    }
}

impl PatchBody {
    pub fn parse(bytes: &[u8]) -> Result<Self, ArmError> {
        let mut m = json_object(bytes)?;
        Ok(PatchBody {
            tags: tags(m.remove("tags"))?,
            identity: identity(m.remove("identity"))?,
        })
    }
}

/// `properties.{name}` must be an object (when present, or always if `required`).
pub fn object_member<'a>(
    properties: &'a Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<&'a Map<String, Value>>, ArmError> {
    let target = format!("properties.{name}");
    match properties.get(name) {
        None | Some(Value::Null) if required => {
            Err(ArmError::body(target, format!("'{name}' is required.")))
        }
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ArmError::body(
            target,
            format!("'{name}' must be an object."),
        )),
    }
}

/// `{name}` of `parent` (for the message, `path`) must be one of `allowed` when present.
pub fn enum_member(
    parent: &Map<String, Value>,
    path: &str,
    name: &str,
    allowed: &[&str],
    required: bool,
) -> Result<(), ArmError> {
    let target = format!("{path}.{name}");
    match parent.get(name) {
        None | Some(Value::Null) if !required => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        _ => Err(ArmError::body(
            target,
            format!("'{name}' must be one of: {}.", allowed.join(", ")),
        )),
    }
}

/// `{name}` of `parent` must be of the JSON type `check` accepts, when present.
pub fn typed_member(
    parent: &Map<String, Value>,
    path: &str,
    name: &str,
    what: &str,
    check: fn(&Value) -> bool,
) -> Result<(), ArmError> {
    match parent.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if check(v) => Ok(()),
        Some(_) => Err(ArmError::body(
            format!("{path}.{name}"),
            format!("'{name}' must be {what}."),
        )),
    }
}

pub fn is_string_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

/// Location names compare as ARM compares them: "West US 2" is "westus2".
pub fn same_location(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_member_by_member() {
        let ok = PutBody::parse(
            br#"{"location":"westus","tags":{"a":"b"},"kind":"fhir-R4","properties":{"provisioningState":"Succeeded","x":{"b":1.50,"a":2}}}"#,
        )
        .unwrap();
        assert_eq!(ok.location.as_deref(), Some("westus"));
        assert!(!ok.properties.contains_key("provisioningState"));
        // Verbatim: member order and the number's digits survive.
        assert_eq!(
            Value::Object(ok.properties).to_string(),
            r#"{"x":{"b":1.50,"a":2}}"#
        );

        for (bad, target) in [
            (&br#"[1]"#[..], None),
            (br#"{"#, None),
            (br#"{"tags":{"a":1}}"#, Some("tags.a")),
            (br#"{"tags":"x"}"#, Some("tags")),
            (br#"{"properties":3}"#, Some("properties")),
            (br#"{"identity":{"type":"Magic"}}"#, Some("identity.type")),
            (br#"{"location":5}"#, Some("location")),
        ] {
            match PutBody::parse(bad) {
                Err(ArmError::InvalidBody { target: t, .. }) => {
                    assert_eq!(t.as_deref(), target, "{}", String::from_utf8_lossy(bad))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(same_location("West US 2", "westus2"));
        assert!(!same_location("westus", "eastus"));
    }
}
