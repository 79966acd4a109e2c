//! Loading a FHIR destination mapping. Templates and codes are read strictly (unknown members
//! are errors, as Json.NET reads Azure's `CodeValueFhirTemplate`); value objects leniently
//! (Azure reads them with settings that ignore unknown members).
//!
//! Beyond Azure's load-time checks, things that fail every time they are used are reported
//! here: a component without a value or value name, a SampledData value without
//! `defaultPeriod`, an unknown `valueType`.

use serde_json::{Number, Value};

use super::{
    CodeValueTemplate, Coding, ComponentTemplate, ConceptTemplate, FhirMapping, PeriodInterval,
    ValueKind, ValueTemplate,
};
use crate::identity::TypeName;
use crate::mapping_doc::{Doc, InvalidMapping, Loc, Obj};
use crate::template::parse::{container, names_match};

pub(super) fn fhir_mapping(source: &str) -> Result<FhirMapping, InvalidMapping> {
    let (root, mut doc) = Doc::parse(source)?;
    let mut templates: Vec<CodeValueTemplate> = Vec::new();
    if let Some((template_type, type_loc, body, body_loc)) =
        container(&mut doc, &root, &Loc::default())
    {
        if !names_match(&template_type, "CollectionFhirTemplate") {
            doc.error(
                &type_loc,
                format!(
                    "expected templateType value CollectionFhirTemplate, actual {template_type}"
                ),
            );
        } else if let Some(items) = doc.array(body, &body_loc, "the templates of CollectionFhir") {
            for (i, item) in items.iter().enumerate() {
                let loc = body_loc.index(i);
                let Some(t) = code_value_template(&mut doc, item, &loc) else {
                    continue;
                };
                if templates
                    .iter()
                    .any(|other| other.type_name.matches(&t.type_name))
                {
                    doc.error(
                        &loc.key("template"),
                        format!(
                            "duplicate template defined for type name: '{}'",
                            t.type_name
                        ),
                    );
                } else {
                    templates.push(t);
                }
            }
        }
    }
    doc.finish(FhirMapping { templates })
}

fn code_value_template(doc: &mut Doc<'_>, value: &Value, loc: &Loc) -> Option<CodeValueTemplate> {
    let (template_type, type_loc, body, body_loc) = container(doc, value, loc)?;
    if !names_match(&template_type, "CodeValueFhirTemplate") {
        doc.error(
            &type_loc,
            format!("expected templateType value CodeValueFhirTemplate, actual {template_type}"),
        );
        return None;
    }
    let mut obj = doc.object(body, &body_loc, "the template of CodeValueFhir")?;
    let type_name = doc
        .string(&mut obj, "typeName", true)
        .and_then(|(s, _)| TypeName::new(&s));
    let period_interval = period_interval(doc, &mut obj);
    let codes = match obj.get("codes") {
        Some((v, l)) => codings(doc, v, &l),
        None => {
            doc.error(&body_loc, "required property 'codes' is missing");
            None
        }
    };
    let category = match obj.get("category") {
        None | Some((Value::Null, _)) => Some(Vec::new()),
        Some((v, l)) => doc.array(v, &l, "category").and_then(|items| {
            items
                .iter()
                .enumerate()
                .map(|(i, c)| concept(doc, c, &l.index(i), true))
                .collect::<Vec<_>>()
                .into_iter()
                .collect()
        }),
    };
    let value = match obj.get("value") {
        None | Some((Value::Null, _)) => Some(None),
        Some((v, l)) => value_template(doc, v, &l, false).map(Some),
    };
    let components = match obj.get("components") {
        None | Some((Value::Null, _)) => Some(Vec::new()),
        Some((v, l)) => doc.array(v, &l, "components").and_then(|items| {
            items
                .iter()
                .enumerate()
                .map(|(i, c)| component(doc, c, &l.index(i)))
                .collect::<Vec<_>>()
                .into_iter()
                .collect()
        }),
    };
    doc.unknown_members(&obj, "CodeValueFhirTemplate", &[]);
    Some(CodeValueTemplate {
        type_name: type_name?,
        period_interval: period_interval?,
        codes: codes?,
        category: category?,
        value: value?,
        components: components?,
    })
}

fn period_interval(doc: &mut Doc<'_>, obj: &mut Obj<'_>) -> Option<PeriodInterval> {
    let Some((value, loc)) = obj.get("periodInterval") else {
        return Some(PeriodInterval::Single);
    };
    let by_number = |n: i64| match n {
        -1 => Some(PeriodInterval::CorrelationId),
        0 => Some(PeriodInterval::Single),
        60 => Some(PeriodInterval::Hourly),
        1440 => Some(PeriodInterval::Daily),
        _ => None,
    };
    let found = match value {
        Value::Null => Some(PeriodInterval::Single),
        Value::Number(n) => n.as_i64().and_then(by_number),
        Value::String(s) => s.trim().parse().ok().and_then(by_number).or_else(|| {
            [
                ("CorrelationId", PeriodInterval::CorrelationId),
                ("Single", PeriodInterval::Single),
                ("Hourly", PeriodInterval::Hourly),
                ("Daily", PeriodInterval::Daily),
            ]
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
            .map(|(_, p)| p)
        }),
        _ => None,
    };
    if found.is_none() {
        doc.error(
            &loc,
            format!("periodInterval {value} is not supported (-1, 0, 60 or 1440)"),
        );
    }
    found
}

fn codings(doc: &mut Doc<'_>, value: &Value, loc: &Loc) -> Option<Vec<Coding>> {
    let items = doc.array(value, loc, "codes")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut obj = doc.object(item, &loc.index(i), "a code")?;
            let code = doc.string(&mut obj, "code", false).map(|(s, _)| s);
            let system = doc.string(&mut obj, "system", false).map(|(s, _)| s);
            let display = doc.string(&mut obj, "display", false).map(|(s, _)| s);
            doc.unknown_members(&obj, "FhirCode", &[]);
            Some(Coding {
                system,
                code,
                display,
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}

fn concept(doc: &mut Doc<'_>, value: &Value, loc: &Loc, strict: bool) -> Option<ConceptTemplate> {
    let mut obj = doc.object(value, loc, "a codeable concept")?;
    let text = doc.string(&mut obj, "text", false).map(|(s, _)| s);
    let codes = match obj.get("codes") {
        None | Some((Value::Null, _)) => Some(Vec::new()),
        Some((v, l)) => codings(doc, v, &l),
    };
    if strict {
        doc.unknown_members(&obj, "FhirCodeableConcept", &[]);
    }
    Some(ConceptTemplate {
        text,
        codes: codes?,
    })
}

fn component(doc: &mut Doc<'_>, value: &Value, loc: &Loc) -> Option<ComponentTemplate> {
    let mut obj = doc.object(value, loc, "a component")?;
    let codes = match obj.get("codes") {
        Some((v, l)) => codings(doc, v, &l),
        None => {
            doc.error(loc, "required property 'codes' is missing");
            None
        }
    };
    let value = match obj.get("value") {
        Some((v, l)) if !v.is_null() => value_template(doc, v, &l, true),
        _ => {
            doc.error(loc, "a component needs a value");
            None
        }
    };
    doc.unknown_members(&obj, "CodeValueMapping", &[]);
    Some(ComponentTemplate {
        codes: codes?,
        value: value?,
    })
}

fn value_template(
    doc: &mut Doc<'_>,
    value: &Value,
    loc: &Loc,
    needs_name: bool,
) -> Option<ValueTemplate> {
    let mut obj = doc.object(value, loc, "a value")?;
    let value_name = doc
        .string(&mut obj, "valueName", needs_name)
        .map(|(s, _)| s);
    if needs_name && value_name.is_none() {
        return None;
    }
    let (value_type, type_loc) = doc.string(&mut obj, "valueType", true)?;
    let text = |doc: &mut Doc<'_>, obj: &mut Obj<'_>, name: &str| {
        doc.string(obj, name, false).map(|(s, _)| s)
    };
    let kind = if value_type.eq_ignore_ascii_case("Quantity") {
        ValueKind::Quantity {
            unit: text(doc, &mut obj, "unit"),
            system: text(doc, &mut obj, "system"),
            code: text(doc, &mut obj, "code"),
        }
    } else if value_type.eq_ignore_ascii_case("SampledData") {
        let unit = text(doc, &mut obj, "unit");
        let default_period = match obj.get("defaultPeriod") {
            Some((Value::Number(n), _)) if n.as_f64().is_some_and(|p| p > 0.0) => n.clone(),
            Some((Value::String(s), l)) => match serde_json::from_str::<Number>(s.trim()) {
                Ok(n) if n.as_f64().is_some_and(|p| p > 0.0) => n,
                _ => {
                    doc.error(
                        &l,
                        "defaultPeriod must be a positive number of milliseconds",
                    );
                    return None;
                }
            },
            Some((_, l)) => {
                doc.error(
                    &l,
                    "defaultPeriod must be a positive number of milliseconds",
                );
                return None;
            }
            None => {
                doc.error(
                    loc,
                    "a SampledData value needs a defaultPeriod (milliseconds)",
                );
                return None;
            }
        };
        ValueKind::SampledData {
            default_period,
            unit,
        }
    } else if value_type.eq_ignore_ascii_case("String") {
        ValueKind::String
    } else if value_type.eq_ignore_ascii_case("CodeableConcept") {
        ValueKind::CodeableConcept(concept(doc, value, loc, false)?)
    } else {
        doc.error(
            &type_loc,
            format!("unknown valueType '{value_type}' (Quantity, SampledData, String or CodeableConcept)"),
        );
        return None;
    };
    Some(ValueTemplate { value_name, kind })
}
