//! Loading a device mapping: the `CollectionContent` envelope, each template by its type, and
//! every expression compiled (a JSONPath or JMESPath that does not parse is a mapping error
//! here, where Azure would fail each message at run time).

use serde_json::Value;

use super::{ContentTemplate, DeviceMapping, Located, TemplateKind, ValueExpression};
use crate::expression::{Expression, Language};
use crate::identity::TypeName;
use crate::mapping_doc::{Doc, InvalidMapping, Loc, Obj};

/// Azure's template names: the name itself or with `Template` appended, in any case.
pub(crate) fn names_match(actual: &str, expected: &str) -> bool {
    actual.eq_ignore_ascii_case(expected)
        || format!("{actual}Template").eq_ignore_ascii_case(expected)
}

const KINDS: [(&str, TemplateKind); 4] = [
    ("JsonPathContentTemplate", TemplateKind::JsonPathContent),
    ("CalculatedContent", TemplateKind::CalculatedContent),
    (
        "IotJsonPathContentTemplate",
        TemplateKind::IotJsonPathContent,
    ),
    (
        "IotCentralJsonPathContent",
        TemplateKind::IotCentralJsonPathContent,
    ),
];

/// Json.NET's reading of `{"templateType": ..., "template": ...}`: the type and the body.
pub(crate) fn container<'v>(
    doc: &mut Doc<'_>,
    value: &'v Value,
    loc: &Loc,
) -> Option<(String, Loc, &'v Value, Loc)> {
    let mut obj = doc.object(value, loc, "a template")?;
    let (template_type, type_loc) = doc.string(&mut obj, "templateType", true)?;
    let Some((body, body_loc)) = obj.get("template") else {
        doc.error(loc, "required property 'template' is missing");
        return None;
    };
    Some((template_type, type_loc, body, body_loc))
}

pub(super) fn device_mapping(source: &str) -> Result<DeviceMapping, InvalidMapping> {
    let (root, mut doc) = Doc::parse(source)?;
    let root_loc = Loc::default();
    let mut templates = Vec::new();
    if let Some((template_type, type_loc, body, body_loc)) = container(&mut doc, &root, &root_loc) {
        if !names_match(&template_type, "CollectionContentTemplate") {
            doc.error(
                &type_loc,
                format!(
                    "expected templateType value CollectionContentTemplate, actual {template_type}"
                ),
            );
        } else if let Some(items) = doc.array(body, &body_loc, "the templates of CollectionContent")
        {
            for (i, item) in items.iter().enumerate() {
                if let Some(t) = content_template(&mut doc, item, &body_loc.index(i)) {
                    templates.push(t);
                }
            }
        }
    }
    doc.finish(DeviceMapping { templates })
}

fn content_template(doc: &mut Doc<'_>, value: &Value, loc: &Loc) -> Option<ContentTemplate> {
    let (template_type, type_loc, body, body_loc) = container(doc, value, loc)?;
    let Some(kind) = KINDS
        .iter()
        .find(|(name, _)| names_match(&template_type, name))
        .map(|(_, kind)| *kind)
    else {
        doc.error(
            &type_loc,
            format!("no template type named '{template_type}' (expected JsonPathContent, CalculatedContent, IotJsonPathContent or IotCentralJsonPathContent)"),
        );
        return None;
    };
    let mut obj = doc.object(body, &body_loc, &format!("the template of {template_type}"))?;
    let template = if kind == TemplateKind::CalculatedContent {
        calculated(doc, &mut obj, loc)
    } else {
        json_path_family(doc, &mut obj, kind, loc)
    };
    let (class, ignored): (&str, &[&str]) = match kind {
        TemplateKind::JsonPathContent => ("JsonPathContentTemplate", &[]),
        TemplateKind::CalculatedContent => ("CalculatedFunctionContentTemplate", &[]),
        TemplateKind::IotJsonPathContent => (
            "IotJsonPathContentTemplate",
            &["deviceIdExpression", "timestampExpression"],
        ),
        TemplateKind::IotCentralJsonPathContent => (
            "IotCentralJsonPathContentTemplate",
            &["deviceIdExpression", "timestampExpression"],
        ),
    };
    doc.unknown_members(&obj, class, ignored);
    template
}

fn compile(doc: &mut Doc<'_>, source: &str, language: Language, loc: &Loc) -> Option<Located> {
    match Expression::compile(source, language) {
        Ok(expression) => Some(Located {
            expression,
            path: loc.to_string(),
        }),
        Err(message) => {
            doc.error(loc, message);
            None
        }
    }
}

/// A fixed expression of the IoT templates (not written by the user, so it cannot fail).
fn fixed(source: &str, template: &Loc) -> Vec<Located> {
    Expression::compile(source, Language::JsonPath)
        .map(|expression| Located {
            expression,
            path: template.to_string(),
        })
        .into_iter()
        .collect()
}

/// `JsonPathContent` and its IoT variants: every expression a JSONPath string.
fn json_path_family(
    doc: &mut Doc<'_>,
    obj: &mut Obj<'_>,
    kind: TemplateKind,
    loc: &Loc,
) -> Option<ContentTemplate> {
    let string_expr = |doc: &mut Doc<'_>, obj: &mut Obj<'_>, name: &str, required: bool| {
        doc.string(obj, name, required)
            .filter(|(s, _)| !s.trim().is_empty())
            .and_then(|(s, l)| compile(doc, &s, Language::JsonPath, &l))
    };
    let type_name = type_name(doc, obj);
    let type_match = string_expr(doc, obj, "typeMatchExpression", true);
    let (device_id, timestamp) = match kind {
        TemplateKind::IotJsonPathContent => (
            fixed("$.SystemProperties.iothub-connection-device-id", loc),
            [
                fixed("$.Properties.iothub-creation-time-utc", loc),
                fixed("$.SystemProperties.iothub-enqueuedtime", loc),
            ]
            .concat(),
        ),
        TemplateKind::IotCentralJsonPathContent => {
            (fixed("$.deviceId", loc), fixed("$.enqueuedTime", loc))
        }
        _ => (
            string_expr(doc, obj, "deviceIdExpression", true)
                .into_iter()
                .collect(),
            string_expr(doc, obj, "timestampExpression", true)
                .into_iter()
                .collect(),
        ),
    };
    let patient_id = string_expr(doc, obj, "patientIdExpression", false);
    let encounter_id = string_expr(doc, obj, "encounterIdExpression", false);
    let correlation_id = string_expr(doc, obj, "correlationIdExpression", false);
    let values = values(doc, obj, |doc, value_obj| {
        string_expr(doc, value_obj, "valueExpression", true)
    });
    Some(ContentTemplate {
        kind,
        type_name: type_name?,
        path: loc.to_string(),
        type_match: type_match?,
        device_id: non_empty(device_id)?,
        timestamp: non_empty(timestamp)?,
        patient_id,
        encounter_id,
        correlation_id,
        values: values?,
    })
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn type_name(doc: &mut Doc<'_>, obj: &mut Obj<'_>) -> Option<TypeName> {
    doc.string(obj, "typeName", true)
        .and_then(|(s, _)| TypeName::new(&s))
}

/// The `values` array; `None` when any entry is invalid.
fn values(
    doc: &mut Doc<'_>,
    obj: &mut Obj<'_>,
    mut expression: impl FnMut(&mut Doc<'_>, &mut Obj<'_>) -> Option<Located>,
) -> Option<Vec<ValueExpression>> {
    let Some((value, loc)) = obj.get("values") else {
        return Some(Vec::new());
    };
    if value.is_null() {
        return Some(Vec::new());
    }
    let items = doc.array(value, &loc, "values")?;
    let mut out = Vec::new();
    let mut valid = true;
    for (i, item) in items.iter().enumerate() {
        let Some(mut value_obj) = doc.object(item, &loc.index(i), "a value") else {
            valid = false;
            continue;
        };
        let name = doc.string(&mut value_obj, "valueName", true);
        let expr = expression(doc, &mut value_obj);
        let required = doc.boolean(&mut value_obj, "required");
        doc.unknown_members(&value_obj, "value expression", &[]);
        match (name, expr) {
            (Some((name, _)), Some(expression)) => out.push(ValueExpression {
                name,
                expression,
                required,
            }),
            _ => valid = false,
        }
    }
    valid.then_some(out)
}

/// `CalculatedContent`: an expression is a string in the default language or
/// `{"value": ..., "language": "JsonPath" | "JmesPath"}`.
fn calculated(doc: &mut Doc<'_>, obj: &mut Obj<'_>, loc: &Loc) -> Option<ContentTemplate> {
    let default = match obj.get("defaultExpressionLanguage") {
        None | Some((Value::Null, _)) => Some(Language::JsonPath),
        Some((Value::String(s), l)) => Language::parse(s).or_else(|| {
            doc.error(
                &l,
                format!("unknown expression language '{s}' (JsonPath or JmesPath)"),
            );
            None
        }),
        Some((_, l)) => {
            doc.error(&l, "expected JsonPath or JmesPath");
            None
        }
    };
    let language = default.unwrap_or(Language::JsonPath);
    let expr = |doc: &mut Doc<'_>, obj: &mut Obj<'_>, name: &str, required: bool| {
        let Some((value, l)) = obj.get(name) else {
            if required {
                doc.error(&obj.loc, format!("required property '{name}' is missing"));
            }
            return None;
        };
        calculated_expression(doc, value, &l, name, required, language)
    };
    let type_name = type_name(doc, obj);
    let type_match = expr(doc, obj, "typeMatchExpression", true);
    let device_id = expr(doc, obj, "deviceIdExpression", true);
    let timestamp = expr(doc, obj, "timestampExpression", true);
    let patient_id = expr(doc, obj, "patientIdExpression", false);
    let encounter_id = expr(doc, obj, "encounterIdExpression", false);
    let correlation_id = expr(doc, obj, "correlationIdExpression", false);
    let values = values(doc, obj, |doc, value_obj| {
        expr(doc, value_obj, "valueExpression", true)
    });
    default?;
    Some(ContentTemplate {
        kind: TemplateKind::CalculatedContent,
        type_name: type_name?,
        path: loc.to_string(),
        type_match: type_match?,
        device_id: vec![device_id?],
        timestamp: vec![timestamp?],
        patient_id,
        encounter_id,
        correlation_id,
        values: values?,
    })
}

fn calculated_expression(
    doc: &mut Doc<'_>,
    value: &Value,
    loc: &Loc,
    name: &str,
    required: bool,
    default: Language,
) -> Option<Located> {
    match value {
        Value::Null if !required => None,
        Value::String(s) if s.trim().is_empty() && !required => None,
        Value::String(s) if s.trim().is_empty() => {
            doc.error(loc, format!("an expression must be set for '{name}'"));
            None
        }
        Value::String(s) => compile(doc, s, default, loc),
        Value::Object(_) => {
            let mut obj = doc.object(value, loc, name)?;
            let language = match obj.get("language") {
                None | Some((Value::Null, _)) => Some(default),
                Some((Value::String(s), l)) => Language::parse(s).or_else(|| {
                    doc.error(
                        &l,
                        format!("unknown expression language '{s}' (JsonPath or JmesPath)"),
                    );
                    None
                }),
                Some((_, l)) => {
                    doc.error(&l, "expected JsonPath or JmesPath");
                    None
                }
            };
            let (source, value_loc) = doc.string(&mut obj, "value", true)?;
            compile(doc, &source, language?, &value_loc)
        }
        _ => {
            doc.error(
                loc,
                format!("expected a string or an object with 'value' and 'language' for '{name}'"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names_match;

    #[test]
    fn template_names_as_azure_matches_them() {
        assert!(names_match("JsonPathContent", "JsonPathContentTemplate"));
        assert!(names_match(
            "jsonpathcontenttemplate",
            "JsonPathContentTemplate"
        ));
        assert!(names_match(
            "CollectionContent",
            "CollectionContentTemplate"
        ));
        assert!(names_match("CalculatedContent", "CalculatedContent"));
        assert!(!names_match("Calculated", "CalculatedContent"));
        assert!(!names_match("JsonPath", "JsonPathContentTemplate"));
    }
}
