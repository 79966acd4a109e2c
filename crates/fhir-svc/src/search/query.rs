//! A search query (`identifier=http://x|123&birthdate=ge2000`) parsed into typed conditions
//! of one resource type, and the SQL that finds the current resources matching all of them.
//!
//! Each repetition of a parameter is an AND; comma-separated values within one are an OR.
//! Conditional operations use this parser strictly: a parameter or modifier it does not know
//! is an error, never silently ignored (ignoring one could match, and overwrite, the wrong
//! resource).

use hds_core::names::InstanceName;
use sqlx::{Any, Row};

use super::cursor::{Cursor, SortValue};
use super::custom::Catalog;
use super::index::{
    date_range, is_absolute, localize, normalize, reference_target, split_reference,
};
use super::keys;
use super::params::{self, ParamType};
use crate::domain::ResourceType;
use crate::error::FhirError;

/// One parameter's test; its values are alternatives.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Id(Vec<String>),
    Token {
        param: String,
        /// (system, code); `None` matches any.
        values: Vec<(Option<String>, Option<String>)>,
    },
    String {
        param: String,
        /// Normalized values; for `:exact`, the values as given.
        values: Vec<String>,
        how: StringMatch,
    },
    Reference {
        param: String,
        /// (type, id) of a local reference, type `None` when only the id is given; or
        /// (type, absolute URL) of a reference given as a URL (a canonical `url|version`
        /// too), which matches that URL and, when it is of the instance searched (see
        /// [`localize`]), the local resource it names.
        values: Vec<(Option<String>, String)>,
    },
    Date {
        param: String,
        values: Vec<(Prefix, i64, i64)>,
    },
    /// Chaining (`subject:Patient.name=x`): the reference `param` points at a `target`
    /// resource that matches `inner`.
    Chain {
        param: String,
        target: ResourceType,
        inner: Vec<Condition>,
    },
    /// Reverse chaining (`_has:Observation:patient:code=x`): a `source` resource whose
    /// reference `param` points here matches `inner`.
    Has {
        source: ResourceType,
        param: String,
        inner: Vec<Condition>,
    },
    /// number: (prefix, value, low, high) with [low, high) the value's precision range.
    Number {
        param: String,
        values: Vec<(Prefix, f64, f64, f64)>,
    },
    /// quantity: a number and optionally its system and code (or unit).
    Quantity {
        param: String,
        values: Vec<QuantityValue>,
    },
    Uri {
        param: String,
        values: Vec<String>,
        how: UriMatch,
    },
    /// A composite parameter (`code-value-quantity=http://loinc.org|8480-6$gt100`): one of
    /// the alternatives, each a test per component, holds for one stored combination.
    Composite {
        param: String,
        alternatives: Vec<Vec<Part>>,
    },
    /// `:missing=true|false` of any indexed parameter: whether the resource has no value for it.
    Missing {
        param: String,
        kind: ParamType,
        missing: bool,
    },
    /// Any of the conditions (a compartment: the resource points at its owner through one
    /// of several parameters).
    AnyOf(Vec<Condition>),
    /// `:not` (token): the resources that do not match the inner condition, those without a
    /// value included.
    Not(Box<Condition>),
}

/// The test of one component of a composite search value.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// token: (system, code), either may be absent; a reference as `Type/id` in the code.
    Code(Option<String>, Option<String>),
    Quantity(QuantityValue),
    /// number: (prefix, value, low, high)
    Number(Prefix, f64, f64, f64),
    /// string: a normalized prefix
    Text(String),
    /// date: (prefix, start ms, end ms)
    Date(Prefix, i64, i64),
}

/// `a$b[$c],...` of a composite parameter: each alternative split into its components, each
/// parsed as its parameter type would be.
fn parse_composite(
    key: &str,
    composite: &params::Composite,
    values: &[&str],
) -> Result<Condition, FhirError> {
    let bad = |v: &str, why: &str| FhirError::invalid(format!("'{key}={v}': {why}"));
    let mut alternatives = Vec::new();
    for v in values {
        let pieces: Vec<&str> = v.split('$').collect();
        if pieces.len() != composite.components.len() {
            return Err(bad(
                v,
                &format!("expected {} values joined by $", composite.components.len()),
            ));
        }
        let mut parts = Vec::new();
        for ((kind, _), piece) in composite.components.iter().zip(pieces) {
            let part = match kind {
                ParamType::Token => {
                    let (system, code) = token_value(piece);
                    Part::Code(system, code)
                }
                ParamType::Reference => {
                    let target = reference_target(&unescape(piece))
                        .ok_or_else(|| bad(v, "expected Type/id or an absolute URL"))?;
                    Part::Code(None, Some(target.text()))
                }
                ParamType::Quantity => {
                    let mut q = piece.splitn(3, '|');
                    let (prefix, number) = split_prefix(q.next().unwrap_or_default());
                    let (value, low, high) =
                        number_range(number).ok_or_else(|| bad(v, "not a quantity"))?;
                    let mut next = || q.next().filter(|p| !p.is_empty()).map(unescape);
                    let (system, code) = (next(), next());
                    Part::Quantity(QuantityValue {
                        prefix,
                        value,
                        low,
                        high,
                        system,
                        code,
                    })
                }
                ParamType::Number => {
                    let (prefix, number) = split_prefix(piece);
                    let (value, low, high) =
                        number_range(number).ok_or_else(|| bad(v, "not a number"))?;
                    Part::Number(prefix, value, low, high)
                }
                ParamType::String | ParamType::Uri => Part::Text(normalize(&unescape(piece))),
                ParamType::Date => {
                    let (prefix, rest) = split_prefix(piece);
                    let (s, e) = date_range(rest).ok_or_else(|| bad(v, "not a date"))?;
                    Part::Date(prefix, s, e)
                }
            };
            parts.push(part);
        }
        alternatives.push(parts);
    }
    Ok(Condition::Composite {
        param: composite.code.clone(),
        alternatives,
    })
}

/// A quantity search value: `[prefix]number|system|code`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    pub prefix: Prefix,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub system: Option<String>,
    pub code: Option<String>,
}

/// How a uri parameter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    Exact,
    /// `:below`: the stored uri starts with the searched one.
    Below,
    /// `:above`: the searched uri starts with the stored one.
    Above,
}

/// A prefix (`ge`, `lt`, ...) and the rest of a number, date or quantity search value.
fn split_prefix(v: &str) -> (Prefix, &str) {
    match v.get(..2) {
        Some("eq") => (Prefix::Eq, &v[2..]),
        Some("ne") => (Prefix::Ne, &v[2..]),
        Some("gt") => (Prefix::Gt, &v[2..]),
        Some("lt") => (Prefix::Lt, &v[2..]),
        Some("ge") => (Prefix::Ge, &v[2..]),
        Some("le") => (Prefix::Le, &v[2..]),
        Some("sa") => (Prefix::Sa, &v[2..]),
        Some("eb") => (Prefix::Eb, &v[2..]),
        Some("ap") => (Prefix::Ap, &v[2..]),
        _ => (Prefix::Eq, v),
    }
}

/// A decimal and the range its precision stands for (`100` is [99.5, 100.5), `1.50` is
/// [1.495, 1.505)), as R4 search.html#number defines equality.
fn number_range(text: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Some((value, value - half, value + half))
}

/// How a string parameter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// The value starts with the search text (the default).
    Prefix,
    Exact,
    Contains,
}

/// The index table of a parameter type.
fn table_of(kind: ParamType) -> Option<&'static str> {
    match kind {
        ParamType::Token => Some("fhir_index_tokens"),
        ParamType::String => Some("fhir_index_strings"),
        ParamType::Reference => Some("fhir_index_references"),
        ParamType::Date => Some("fhir_index_dates"),
        ParamType::Number => Some("fhir_index_numbers"),
        ParamType::Quantity => Some("fhir_index_quantities"),
        ParamType::Uri => Some("fhir_index_uris"),
    }
}

impl Condition {
    /// The resource types a search with this condition reads (chains and `_has` reach
    /// others), besides the searched one.
    pub fn reaches(&self, out: &mut std::collections::HashSet<String>) {
        match self {
            Condition::Chain { target, inner, .. } => {
                out.insert(target.to_string());
                inner.iter().for_each(|c| c.reaches(out));
            }
            Condition::Has { source, inner, .. } => {
                out.insert(source.to_string());
                inner.iter().for_each(|c| c.reaches(out));
            }
            Condition::AnyOf(cs) => cs.iter().for_each(|c| c.reaches(out)),
            Condition::Not(c) => c.reaches(out),
            _ => {}
        }
    }
}

/// Every resource type a search of `rt` with `conditions` reads.
pub fn types_read(
    rt: &ResourceType,
    conditions: &[Condition],
) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::from([rt.to_string()]);
    conditions.iter().for_each(|c| c.reaches(&mut out));
    out
}

/// An id-only reference search tries each of its parameter's target types up to this many;
/// beyond, it compares ids alone.
const MAX_TARGET_TYPES: usize = 16;

/// How deep chains and `_has` may nest.
const MAX_CHAIN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    /// Starts after the value's range.
    Sa,
    /// Ends before the value's range.
    Eb,
    /// Approximately: the ranges overlap.
    Ap,
}

/// Searched on the current-version pointer (`fhir_current`), not on index rows.
pub const LAST_UPDATED: &str = "_lastUpdated";
pub const ID: &str = "_id";

/// Parameters that shape results rather than select them; not allowed in a condition.
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_contained",
    "_containedType",
];

/// The conditions of a conditional request (`If-None-Exist`, conditional update/delete/patch,
/// conditional references): strict, since ignoring a parameter could pick the wrong resource.
pub fn parse(
    catalog: &Catalog,
    rt: &ResourceType,
    query: &str,
) -> Result<Vec<Condition>, FhirError> {
    let mut conditions = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if RESULT_PARAMS.contains(&key.as_ref()) {
            return Err(FhirError::invalid(format!(
                "'{key}' has no place in a conditional request"
            )));
        }
        conditions.extend(parse_one(catalog, rt, &key, &value)?);
    }
    if conditions.is_empty() {
        return Err(FhirError::invalid(
            "a conditional request needs at least one search parameter",
        ));
    }
    Ok(conditions)
}

/// Whether `key` shapes results (`_count`, `_sort`, ...) rather than selecting them.
pub fn is_result_param(key: &str) -> bool {
    RESULT_PARAMS.contains(&key)
}

/// One search parameter (`key=value`) of `rt` as a condition; `None` for parameters that
/// change nothing (`_format`, `_pretty`).
pub fn parse_one(
    catalog: &Catalog,
    rt: &ResourceType,
    key: &str,
    value: &str,
) -> Result<Option<Condition>, FhirError> {
    // No index holds a NUL, and PostgreSQL refuses text with one: a client mistake, said so.
    if key.contains('\0') || value.contains('\0') {
        return Err(FhirError::invalid(format!(
            "'{}': search parameters and values must not contain NUL characters",
            key.replace('\0', "\\0")
        )));
    }
    parse_at(catalog, rt, key, value, 0)
}

fn parse_at(
    catalog: &Catalog,
    rt: &ResourceType,
    key: &str,
    value: &str,
    depth: usize,
) -> Result<Option<Condition>, FhirError> {
    if key == "_format" || key == "_pretty" {
        return Ok(None);
    }
    if let Some(rest) = key.strip_prefix("_has:") {
        return parse_has(catalog, rt, key, rest, value, depth).map(Some);
    }
    if let Some((head, rest)) = key.split_once('.') {
        return parse_chain(catalog, rt, key, head, rest, value, depth).map(Some);
    }
    let (code, modifier) = match key.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (key, None),
    };
    let values: Vec<&str> = split_values(value);
    if values.is_empty() || values.iter().any(|v| v.is_empty()) {
        return Err(FhirError::invalid(format!(
            "parameter '{key}' has an empty value"
        )));
    }
    let unsupported =
        |m: &str| FhirError::invalid(format!("modifier ':{m}' of '{code}' is not supported here"));
    if code == ID {
        if let Some(m) = modifier {
            return Err(unsupported(m));
        }
        return Ok(Some(Condition::Id(
            values.iter().map(|v| v.to_string()).collect(),
        )));
    }
    if let Some(composite) = params::find_composite(rt.as_str(), code) {
        if let Some(m) = modifier {
            return Err(unsupported(m));
        }
        return parse_composite(key, composite, &values).map(Some);
    }
    let param = catalog
        .find(rt.as_str(), code)
        .ok_or_else(|| FhirError::invalid(format!("'{code}' is not a search parameter of {rt}")))?;
    if modifier == Some("missing") {
        if table_of(param.kind).is_none() {
            return Err(unsupported("missing"));
        }
        let missing = match value {
            "true" => true,
            "false" => false,
            other => {
                return Err(FhirError::invalid(format!(
                    "'{key}' takes true or false, not '{other}'"
                )))
            }
        };
        return Ok(Some(Condition::Missing {
            param: code.to_owned(),
            kind: param.kind,
            missing,
        }));
    }
    let condition = match param.kind {
        ParamType::Token if modifier == Some("text") => Condition::String {
            param: format!("{code}{}", super::index::TEXT),
            values: values.iter().map(|v| normalize(&unescape(v))).collect(),
            how: StringMatch::Prefix,
        },
        ParamType::Token if modifier == Some("of-type") => {
            // `type-system|type-code|value`, kept as (system, "code|value") in the index.
            let values = values
                .iter()
                .map(|v| {
                    let parts: Vec<&str> = v.splitn(3, '|').collect();
                    match parts.as_slice() {
                        [system, code, value] if !code.is_empty() && !value.is_empty() => Ok((
                            (!system.is_empty()).then(|| unescape(system)),
                            Some(format!("{}|{}", unescape(code), unescape(value))),
                        )),
                        _ => Err(FhirError::invalid(format!(
                            "'{key}={v}': expected [type system]|[type code]|[value]"
                        ))),
                    }
                })
                .collect::<Result<_, _>>()?;
            Condition::Token {
                param: format!("{code}{}", super::index::OF_TYPE),
                values,
            }
        }
        ParamType::Token => {
            let not = match modifier {
                None => false,
                Some("not") => true,
                Some(m) => return Err(unsupported(m)),
            };
            let token = Condition::Token {
                param: code.to_owned(),
                values: values.iter().map(|v| token_value(v)).collect(),
            };
            if not {
                Condition::Not(Box::new(token))
            } else {
                token
            }
        }
        ParamType::String => {
            let how = match modifier {
                None => StringMatch::Prefix,
                Some("exact") => StringMatch::Exact,
                Some("contains") => StringMatch::Contains,
                Some(m) => return Err(unsupported(m)),
            };
            Condition::String {
                param: code.to_owned(),
                values: values
                    .iter()
                    .map(|v| {
                        if how == StringMatch::Exact {
                            unescape(v)
                        } else {
                            normalize(&unescape(v))
                        }
                    })
                    .collect(),
                how,
            }
        }
        ParamType::Reference if modifier == Some("identifier") => Condition::Token {
            param: format!("{code}{}", super::index::IDENTIFIER),
            values: values.iter().map(|v| token_value(v)).collect(),
        },
        ParamType::Reference => {
            let typed = match modifier {
                None => None,
                Some(m) if m.parse::<ResourceType>().is_ok() => Some(m.to_owned()),
                Some(m) => return Err(unsupported(m)),
            };
            let mut refs = Vec::new();
            for v in &values {
                let v = unescape(v);
                if is_absolute(&v) {
                    // Kept whole: only the instance (known when the SQL is made) decides
                    // whether it is local.
                    let t = reference_target(&v)
                        .ok_or_else(|| FhirError::invalid(format!("'{v}' is not a reference")))?;
                    refs.push((typed.clone(), t.text()));
                    continue;
                }
                match split_reference(&v) {
                    Some((t, id)) => refs.push((Some(t), id)),
                    None if !v.contains('/') => refs.push((typed.clone(), v)),
                    None => {
                        return Err(FhirError::invalid(format!(
                            "'{v}' is not a reference of this server"
                        )))
                    }
                }
            }
            Condition::Reference {
                param: code.to_owned(),
                values: refs,
            }
        }
        ParamType::Date => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            let mut ranges = Vec::new();
            for v in &values {
                let (prefix, rest) = split_prefix(v);
                let (s, e) = date_range(rest).ok_or_else(|| {
                    FhirError::invalid(format!("'{v}' is not a date for '{code}'"))
                })?;
                ranges.push((prefix, s, e));
            }
            Condition::Date {
                param: code.to_owned(),
                values: ranges,
            }
        }
        ParamType::Number => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            let mut ranges = Vec::new();
            for v in &values {
                let (prefix, rest) = split_prefix(v);
                let (value, low, high) = number_range(rest).ok_or_else(|| {
                    FhirError::invalid(format!("'{v}' is not a number for '{code}'"))
                })?;
                ranges.push((prefix, value, low, high));
            }
            Condition::Number {
                param: code.to_owned(),
                values: ranges,
            }
        }
        ParamType::Quantity => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            let mut quantities = Vec::new();
            for v in &values {
                let mut parts = v.splitn(3, '|');
                let (prefix, number) = split_prefix(parts.next().unwrap_or_default());
                let (value, low, high) = number_range(number).ok_or_else(|| {
                    FhirError::invalid(format!("'{v}' is not a quantity for '{code}'"))
                })?;
                let mut part = || parts.next().filter(|p| !p.is_empty()).map(unescape);
                let (system, unit) = (part(), part());
                quantities.push(QuantityValue {
                    prefix,
                    value,
                    low,
                    high,
                    system,
                    code: unit,
                });
            }
            Condition::Quantity {
                param: code.to_owned(),
                values: quantities,
            }
        }
        ParamType::Uri => {
            let how = match modifier {
                None => UriMatch::Exact,
                Some("below") => UriMatch::Below,
                Some("above") => UriMatch::Above,
                Some(m) => return Err(unsupported(m)),
            };
            Condition::Uri {
                param: code.to_owned(),
                values: values.iter().map(|v| unescape(v)).collect(),
                how,
            }
        }
    };
    Ok(Some(condition))
}

fn too_deep(key: &str, depth: usize) -> Result<(), FhirError> {
    if depth >= MAX_CHAIN {
        return Err(FhirError::invalid(format!(
            "'{key}' nests chains or _has more than {MAX_CHAIN} deep"
        )));
    }
    Ok(())
}

/// `param[:Type].rest=value`: the reference `param` of `rt` points at a resource of `Type`
/// (needed when the parameter can point at several types) matching `rest=value`.
fn parse_chain(
    catalog: &Catalog,
    rt: &ResourceType,
    key: &str,
    head: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Condition, FhirError> {
    too_deep(key, depth)?;
    let (code, typed) = match head.split_once(':') {
        Some((c, t)) => (c, Some(t)),
        None => (head, None),
    };
    let param = catalog
        .find(rt.as_str(), code)
        .filter(|p| p.kind == ParamType::Reference)
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "'{key}': '{code}' is not a reference parameter of {rt}, so it cannot be chained"
            ))
        })?;
    let target = match typed {
        Some(t) => t,
        None => match param.targets.as_slice() {
            [only] => only.as_str(),
            many => {
                return Err(FhirError::invalid(format!(
                    "'{key}': '{code}' can point at {}; name one, as in '{code}:{}.{rest}'",
                    many.join(", "),
                    many.first().map_or("Patient", String::as_str)
                )))
            }
        },
    };
    let target: ResourceType = target
        .parse()
        .map_err(|e: String| FhirError::invalid(format!("'{key}': {e}")))?;
    if !param.targets.is_empty() && !param.targets.iter().any(|t| t == target.as_str()) {
        return Err(FhirError::invalid(format!(
            "'{key}': '{code}' of {rt} does not point at {target}"
        )));
    }
    let inner = parse_at(catalog, &target, rest, value, depth + 1)?
        .into_iter()
        .collect();
    Ok(Condition::Chain {
        param: code.to_owned(),
        target,
        inner,
    })
}

/// `_has:Type:param:rest=value`: a `Type` resource whose reference `param` points at this
/// one matches `rest=value` (which may itself be a `_has`).
fn parse_has(
    catalog: &Catalog,
    rt: &ResourceType,
    key: &str,
    spec: &str,
    value: &str,
    depth: usize,
) -> Result<Condition, FhirError> {
    too_deep(key, depth)?;
    let mut parts = spec.splitn(3, ':');
    let (Some(source), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(FhirError::invalid(format!(
            "'{key}': expected _has:[type]:[reference parameter]:[parameter]"
        )));
    };
    let source: ResourceType = source
        .parse()
        .map_err(|e: String| FhirError::invalid(format!("'{key}': {e}")))?;
    let param = catalog
        .find(source.as_str(), code)
        .filter(|p| p.kind == ParamType::Reference)
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "'{key}': '{code}' is not a reference parameter of {source}"
            ))
        })?;
    if !param.targets.is_empty() && !param.targets.iter().any(|t| t == rt.as_str()) {
        return Err(FhirError::invalid(format!(
            "'{key}': '{code}' of {source} does not point at {rt}"
        )));
    }
    let inner = parse_at(catalog, &source, rest, value, depth + 1)?
        .into_iter()
        .collect();
    Ok(Condition::Has {
        source,
        param: code.to_owned(),
        inner,
    })
}

/// A token search value: `code` (any system), `system|code`, `|code` (no system: the index
/// keeps '' then) or `system|` (any code of the system).
fn token_value(v: &str) -> (Option<String>, Option<String>) {
    match v.split_once('|') {
        None => (None, Some(unescape(v))),
        Some((s, c)) => (Some(unescape(s)), (!c.is_empty()).then(|| unescape(c))),
    }
}

/// Splits on commas that are not escaped (`\,`).
fn split_values(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = v.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b',' && (i == 0 || bytes[i - 1] != b'\\') {
            out.push(&v[start..i]);
            start = i + 1;
        }
    }
    out.push(&v[start..]);
    out
}

fn unescape(v: &str) -> String {
    v.replace("\\,", ",")
        .replace("\\|", "|")
        .replace("\\$", "$")
        .replace("\\\\", "\\")
}

/// SQL text and its parameters, built together so the numbering stays right.
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

impl Sql {
    fn new() -> Self {
        Self {
            text: String::new(),
            binds: Vec::new(),
        }
    }
    /// The bound key of parameter `param` of `rt` in `instance`.
    fn param_key(&mut self, instance: &InstanceName, rt: &str, param: &str) -> String {
        let k = keys::param(&instance.to_string(), rt, param);
        self.bind(Bind::Int(k))
    }
    /// `c` restricted to the current, undeleted resources of `rt` in `instance`.
    fn current(&mut self, instance: &InstanceName, rt: &ResourceType) -> String {
        let inst = self.text(&instance.to_string());
        let ty = self.text(rt.as_str());
        format!("c.instance = {inst} AND c.resource_type = {ty} AND c.deleted = 0")
    }
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }
    fn text(&mut self, s: &str) -> String {
        self.bind(Bind::Text(s.to_owned()))
    }
}

/// The target keys an absolute reference search value matches: the URL's own (a reference to
/// no local resource, see `IndexRows::add`) and, when the URL is of `instance`, the local
/// resource's; `typed` (`:[type]`) drops those of another type.
fn absolute_keys(instance: &str, typed: Option<&str>, url: &str) -> Vec<i64> {
    let url_type = split_reference(url.split('|').next().unwrap_or(url)).map(|(t, _)| t);
    let mut out = Vec::new();
    if typed.is_none() || url_type.is_none() || url_type.as_deref() == typed {
        out.push(keys::resource(instance, "", url));
    }
    if let Some((t, id)) = localize(instance, url) {
        if typed.is_none_or(|typed| typed == t) {
            out.push(keys::resource(instance, &t, &id));
        }
    }
    out
}

/// `(url, version)` of a `url|version` value of the uri parameter `url` of a resource type
/// that has a `version` parameter (the canonical resources, R4 search.html#versions).
pub fn versioned_url<'v>(rt: &str, param: &str, value: &'v str) -> Option<(&'v str, &'v str)> {
    if param != "url" {
        return None;
    }
    let (url, version) = value.split_once('|')?;
    if url.is_empty() || version.is_empty() {
        return None;
    }
    params::find(rt, "version").filter(|p| p.kind == ParamType::Token)?;
    Some((url, version))
}

/// The keys of the resources whose index rows for parameter `pkey` pass the test. Index rows
/// exist only for current, undeleted resources (a write replaces them, a delete removes
/// them), so the lookup needs no join; it reads the value index (pkey, value, rkey) alone.
fn index_keys(table: &str, pkey: &str, test: String) -> String {
    format!("SELECT x.rkey FROM {table} x WHERE x.pkey = {pkey} AND ({test})")
}

fn or(parts: Vec<String>) -> String {
    parts.join(" OR ")
}

/// Ids of the current resources of `rt` that match every condition; at most `limit`.
pub async fn find<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[Condition],
    limit: i64,
) -> Result<Vec<String>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    // Conditional operations name identifiers and the like, selective whatever their values:
    // their statements are kept prepared (and planned once), unlike searches'.
    let (sql, order) = page_sql(instance, rt, conditions, None, limit)?;
    let rows = page_rows(sql.statement(true), executor, order).await?;
    Ok(rows.into_iter().map(|(id, _)| id).collect())
}

/// The order of an unsorted search's pages, chosen by the form of its conditions so that
/// a page costs about its own size to find, not the number of matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageOrder {
    /// By id: the pointers' primary key is walked in id order, each resource tested against
    /// the conditions, until the page is full. For a search without conditions, with `_has`
    /// (whose keys must be checked against the pointers anyway), or led by a range or prefix
    /// (`date=ge2015`, `name=smi`), which may match most of the type.
    Id,
    /// By resource key, as the first condition's lookup index yields them (one code, one
    /// reference target, one id: see [`keys_in_order`]): the page is the first few index
    /// entries after the cursor, however many match (`status=final` reads 11 entries of
    /// 470,000), and only those are looked up.
    Key,
    /// By resource key, the matches found and then sorted: for a chain, whose matches are
    /// what the targets' references yield (in id order every match had to be looked up in
    /// the pointers to be sorted: the bulk of `subject:Patient.name=x` for a patient with a
    /// thousand observations), and for `_id`, a few keys. Neither names the instance or the
    /// type, which without statistics led PostgreSQL to read every resource of the type
    /// along the primary key (see `Condition::Id` in [`matching_keys`]).
    SortedKey,
}

impl PageOrder {
    fn of(rt: &ResourceType, conditions: &[Condition]) -> Self {
        if !keys_are_current(conditions) {
            return Self::Id;
        }
        match conditions.first() {
            Some(c) if keys_in_order(rt, c) => Self::Key,
            Some(Condition::Chain { .. } | Condition::Id(_)) => Self::SortedKey,
            _ => Self::Id,
        }
    }
}

/// One page of matches in the search's own order (by key where the index yields current
/// resources, else by id): at most `limit` ids after the `after` cursor, each with the
/// cursor the next page would start from.
pub async fn find_page<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[Condition],
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<(String, Cursor)>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let (sql, order) = page_sql(instance, rt, conditions, after, limit)?;
    page_rows(sql.query(), executor, order).await
}

async fn page_rows<'q, 'e, E>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    executor: E,
    order: PageOrder,
) -> Result<Vec<(String, Cursor)>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    query
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| {
            let id = r.try_get::<String, _>("id")?;
            let cursor = match order {
                PageOrder::Id => Cursor::Id { id: id.clone() },
                PageOrder::Key | PageOrder::SortedKey => Cursor::Key {
                    key: r.try_get::<i64, _>("rkey")?,
                },
            };
            Ok((id, cursor))
        })
        .collect()
}

/// The statement of [`find_page`], and the order its rows come in.
fn page_sql(
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[Condition],
    after: Option<&Cursor>,
    limit: i64,
) -> Result<(Sql, PageOrder), FhirError> {
    let mut sql = Sql::new();
    let matching = matching_keys(&mut sql, instance, rt, conditions);
    let order = PageOrder::of(rt, conditions);
    sql.text = match (order, after) {
        (PageOrder::Key | PageOrder::SortedKey, None | Some(Cursor::Key { .. })) => {
            let after = match after {
                Some(Cursor::Key { key }) => {
                    format!("WHERE k.rkey > {}", sql.bind(Bind::Int(*key)))
                }
                _ => String::new(),
            };
            let lim = sql.bind(Bind::Int(limit));
            // Sorted by `rkey + 0`, which no index yields, the matches are found through
            // their values and then sorted: offered `ORDER BY rkey LIMIT` for a set whose
            // lookup does not yield it, PostgreSQL may walk an index table's owner index
            // (every row of every parameter, in key order) filtering it for the first few
            // (70 ms for `Encounter?date=..` at 1M). Keys may repeat in `matching`: DISTINCT.
            let key = if order == PageOrder::Key {
                "k.rkey"
            } else {
                "k.rkey + 0"
            };
            format!(
                "SELECT c.id, c.rkey FROM fhir_current c WHERE c.rkey IN \
                 (SELECT DISTINCT m.key FROM (SELECT {key} AS key FROM ({matching}) k {after}) m \
                 ORDER BY m.key LIMIT {lim}) ORDER BY c.rkey"
            )
        }
        (PageOrder::Id, None | Some(Cursor::Id { .. })) => {
            let current = sql.current(instance, rt);
            let after = match after {
                Some(Cursor::Id { id }) => format!("AND c.id > {}", sql.text(id)),
                _ => String::new(),
            };
            let lim = sql.bind(Bind::Int(limit));
            format!(
                "SELECT c.id, c.rkey FROM fhir_current c WHERE {current} AND c.rkey IN ({matching}) \
                 {after} ORDER BY c.id LIMIT {lim}"
            )
        }
        _ => return Err(super::cursor::not_this_search()),
    };
    Ok((sql, order))
}

/// One `_sort` key: a parameter (or `_id`, `_lastUpdated`) and its direction.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub param: String,
    pub descending: bool,
    /// The parameter's type (`None` for `_id` and `_lastUpdated`): where its values are.
    pub kind: Option<ParamType>,
}

impl SortKey {
    /// `_sort=a,-b` of `rt`: each a parameter that has a value to order by.
    pub fn parse_list(
        catalog: &Catalog,
        rt: &ResourceType,
        value: &str,
    ) -> Result<Vec<SortKey>, FhirError> {
        value
            .split(',')
            .map(|k| {
                let (descending, param) = match k.strip_prefix('-') {
                    Some(p) => (true, p),
                    None => (false, k),
                };
                let kind = catalog.find(rt.as_str(), param).map(|p| p.kind);
                let sortable = param == ID
                    || param == LAST_UPDATED
                    || kind.is_some_and(|k| {
                        matches!(
                            k,
                            ParamType::String
                                | ParamType::Date
                                | ParamType::Token
                                | ParamType::Reference
                        )
                    });
                if !sortable {
                    return Err(FhirError::invalid(format!(
                        "_sort: '{param}' is not a parameter of {rt} that results can be sorted by"
                    )));
                }
                Ok(SortKey {
                    param: param.to_owned(),
                    descending,
                    kind,
                })
            })
            .collect()
    }
}

/// One page of matches ordered by `keys` (then id): `limit` rows after the row `after`
/// (its sort values and id, from the previous page's last row), each with its sort values.
///
/// A parameter's sort value is its lowest value for ascending order and its highest for
/// descending (R4 search.html#_sort), resources without one last. Pages are a keyset: the
/// next starts after the last row by the same order, so writes between pages shift nothing.
pub async fn find_sorted<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[Condition],
    keys: &[SortKey],
    after: Option<(&[SortValue], &str)>,
    limit: i64,
) -> Result<Vec<(String, Vec<SortValue>)>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    if after.is_some_and(|(values, _)| values.len() != keys.len()) {
        return Err(super::cursor::not_this_search());
    }
    let mut sql = Sql::new();
    let matching = matching_keys(&mut sql, instance, rt, conditions);
    let current = sql.current(instance, rt);
    let mut joins = String::new();
    let mut columns = Vec::new();
    let mut order = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let dir = if key.descending { "DESC" } else { "ASC" };
        let agg = if key.descending { "MAX" } else { "MIN" };
        let column = match key.param.as_str() {
            ID => "m.id".to_owned(),
            LAST_UPDATED => "m.last_updated_ms".to_owned(),
            param => {
                let (table, value) = sort_column(key);
                let p = sql.param_key(instance, rt.as_str(), param);
                joins.push_str(&format!(
                    " LEFT JOIN (SELECT x.rkey, {agg}(x.{value}) AS k FROM {table} x \
                     WHERE x.pkey = {p} GROUP BY x.rkey) s{i} ON s{i}.rkey = m.rkey"
                ));
                format!("s{i}.k")
            }
        };
        columns.push(format!("{column} AS k{i}"));
        // Without a value, last either way (CASE keeps it portable across both databases).
        order.push(format!(
            "CASE WHEN q.k{i} IS NULL THEN 1 ELSE 0 END, q.k{i} {dir}"
        ));
    }
    order.push("q.id".to_owned());
    let past = match after {
        Some((values, id)) => format!("WHERE {}", after_row(&mut sql, keys, values, id)?),
        None => String::new(),
    };
    let lim = sql.bind(Bind::Int(limit));
    sql.text = format!(
        "SELECT q.* FROM (SELECT m.id, {} FROM (SELECT c.rkey, c.id, c.last_updated_ms \
         FROM fhir_current c WHERE {current} AND c.rkey IN ({matching})) m{joins}) q \
         {past} ORDER BY {} LIMIT {lim}",
        columns.join(", "),
        order.join(", ")
    );
    sql.query()
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| {
            let id = r.try_get::<String, _>("id")?;
            let values = keys
                .iter()
                .enumerate()
                .map(|(i, key)| sort_value(r, i, key))
                .collect::<Result<_, sqlx::Error>>()?;
            Ok((id, values))
        })
        .collect()
}

/// The index table and column a sort key's values are in.
fn sort_column(key: &SortKey) -> (&'static str, &'static str) {
    match key.kind {
        Some(ParamType::String) => ("fhir_index_strings", "value"),
        Some(ParamType::Token) => ("fhir_index_tokens", "code"),
        Some(ParamType::Reference) => ("fhir_index_references", "target_id"),
        _ if key.descending => ("fhir_index_dates", "end_ms"),
        _ => ("fhir_index_dates", "start_ms"),
    }
}

/// Whether a sort key's values are numbers (dates in ms, `_lastUpdated`) rather than text.
fn sorts_by_number(key: &SortKey) -> bool {
    match key.param.as_str() {
        ID => false,
        LAST_UPDATED => true,
        _ => sort_column(key).0 == "fhir_index_dates",
    }
}

fn sort_value(row: &sqlx::any::AnyRow, i: usize, key: &SortKey) -> Result<SortValue, sqlx::Error> {
    let column = format!("k{i}");
    Ok(if sorts_by_number(key) {
        row.try_get::<Option<i64>, _>(column.as_str())?
            .map_or(SortValue::Missing, SortValue::Int)
    } else {
        row.try_get::<Option<String>, _>(column.as_str())?
            .map_or(SortValue::Missing, SortValue::Text)
    })
}

/// The rows of `q` that come after the row with sort `values` and `id`, in the order of
/// [`find_sorted`]: for some key, every key before it equal and it itself later (a value
/// is later when further in its direction, or missing where the row had one), else every
/// key equal and a greater id.
fn after_row(
    sql: &mut Sql,
    keys: &[SortKey],
    values: &[SortValue],
    id: &str,
) -> Result<String, FhirError> {
    let mut alternatives = Vec::new();
    let mut equal: Vec<String> = Vec::new();
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        let column = format!("q.k{i}");
        let bound = match (value, sorts_by_number(key)) {
            (SortValue::Missing, _) => None,
            (SortValue::Int(n), true) => Some(sql.bind(Bind::Int(*n))),
            (SortValue::Text(t), false) => Some(sql.text(t)),
            _ => return Err(super::cursor::not_this_search()),
        };
        let prefix = equal
            .iter()
            .map(|e| format!("{e} AND "))
            .collect::<String>();
        match bound {
            Some(v) => {
                let later = if key.descending { "<" } else { ">" };
                alternatives.push(format!(
                    "({prefix}({column} {later} {v} OR {column} IS NULL))"
                ));
                equal.push(format!("{column} = {v}"));
            }
            // Nothing comes after a missing value but other missing ones.
            None => equal.push(format!("{column} IS NULL")),
        }
    }
    let prefix = equal
        .iter()
        .map(|e| format!("{e} AND "))
        .collect::<String>();
    let id = sql.text(id);
    alternatives.push(format!("({prefix}q.id > {id})"));
    Ok(alternatives.join(" OR "))
}

/// How many current resources of `rt` match every condition.
pub async fn count<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[Condition],
) -> Result<i64, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let sql = count_sql(instance, rt, conditions);
    Ok(sql.query().fetch_one(executor).await?.try_get("n")?)
}

/// The statement of [`count`].
fn count_sql(instance: &InstanceName, rt: &ResourceType, conditions: &[Condition]) -> Sql {
    let mut sql = Sql::new();
    let matching = matching_keys(&mut sql, instance, rt, conditions);
    let current = sql.current(instance, rt);
    sql.text = if keys_are_current(conditions) && !conditions.is_empty() {
        // Counted in the index alone: no lookup of each match's pointer.
        format!("SELECT COUNT(DISTINCT k.rkey) AS n FROM ({matching}) k")
    } else {
        format!(
            "SELECT COUNT(*) AS n FROM fhir_current c WHERE {current} AND c.rkey IN ({matching})"
        )
    };
    sql
}

/// PostgreSQL's plan of the statement a type-level search of `rt` with `query` (as in
/// `GET [type]?query`) runs to select its matches, executed: `EXPLAIN (ANALYZE, BUFFERS)`.
///
/// The statement is built by the same code as the search's: [`count`] for `_summary=count`,
/// otherwise [`find_page`] (first page of `_count`, default 10, plus one). Other result
/// parameters (`_include`, `_sort`, `_elements`, ...) are skipped; their follow-up statements
/// are not explained. For benchmarks and diagnosis (`make bench-fhir-search`); SQLite has no
/// such `EXPLAIN`.
pub async fn explain<'e, E>(
    executor: E,
    catalog: &Catalog,
    instance: &InstanceName,
    rt: &ResourceType,
    query: &str,
) -> Result<String, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let (mut conditions, mut summary_count, mut limit) = (Vec::new(), false, 10);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "_summary" => summary_count = value == "count",
            "_count" => limit = value.parse().unwrap_or(limit),
            k if is_result_param(k)
                || k.starts_with("_include")
                || k.starts_with("_revinclude") => {}
            k => conditions.extend(parse_one(catalog, rt, k, &value)?),
        }
    }
    let mut sql = if summary_count {
        count_sql(instance, rt, &conditions)
    } else {
        page_sql(instance, rt, &conditions, None, limit + 1)?.0
    };
    sql.text = format!("EXPLAIN (ANALYZE, BUFFERS) {}", sql.text);
    let rows = sql.query().fetch_all(executor).await?;
    let lines: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}

/// The SQL test of component `i` (0, 1, 2) of a composite row.
fn composite_test(sql: &mut Sql, i: usize, part: &Part) -> String {
    let (s, c) = if i == 0 {
        ("x.s1", "x.c1")
    } else {
        ("x.s2", "x.c2")
    };
    let n = if i == 2 { "x.n3" } else { "x.n2" };
    match part {
        Part::Code(system, code) => {
            let mut t = Vec::new();
            if let Some(v) = system {
                t.push(format!("{s} = {}", sql.text(v)));
            }
            if let Some(v) = code {
                t.push(format!("{c} = {}", sql.text(v)));
            }
            if t.is_empty() {
                "1 = 1".to_owned()
            } else {
                t.join(" AND ")
            }
        }
        Part::Quantity(q) => {
            let mut t = vec![compare_number(sql, n, q.prefix, q.value, q.low, q.high)];
            if let Some(v) = &q.system {
                t.push(format!("{s} = {}", sql.text(v)));
            }
            if let Some(v) = &q.code {
                t.push(format!("{c} = {}", sql.text(v)));
            }
            t.join(" AND ")
        }
        Part::Number(prefix, v, lo, hi) => compare_number(sql, n, *prefix, *v, *lo, *hi),
        Part::Text(v) => {
            let len = sql.bind(Bind::Int(v.chars().count() as i64));
            format!("SUBSTR({c}, 1, CAST({len} AS INTEGER)) = {}", sql.text(v))
        }
        Part::Date(prefix, start, end) => {
            // The stored range is n2..n3 (ms as doubles).
            let st = sql.bind(Bind::Float(*start as f64));
            let en = sql.bind(Bind::Float(*end as f64));
            let eq = format!("(x.n2 >= {st} AND x.n3 <= {en})");
            match prefix {
                Prefix::Eq => eq,
                Prefix::Ne => format!("NOT {eq}"),
                Prefix::Gt | Prefix::Sa => format!("x.n3 > {en}"),
                Prefix::Lt | Prefix::Eb => format!("x.n2 < {st}"),
                Prefix::Ge => format!("(x.n3 > {en} OR {eq})"),
                Prefix::Le => format!("(x.n2 < {st} OR {eq})"),
                Prefix::Ap => format!("(x.n2 <= {en} AND x.n3 >= {st})"),
            }
        }
    }
}

/// A number test: `eq` is within the searched value's precision range, `ap` within 10%.
fn compare_number(sql: &mut Sql, column: &str, prefix: Prefix, v: f64, lo: f64, hi: f64) -> String {
    let mut f = |x: f64| sql.bind(Bind::Float(x));
    match prefix {
        Prefix::Eq => format!("({column} >= {} AND {column} < {})", f(lo), f(hi)),
        Prefix::Ne => format!("({column} < {} OR {column} >= {})", f(lo), f(hi)),
        Prefix::Gt | Prefix::Sa => format!("{column} > {}", f(v)),
        Prefix::Lt | Prefix::Eb => format!("{column} < {}", f(v)),
        Prefix::Ge => format!("{column} >= {}", f(v)),
        Prefix::Le => format!("{column} <= {}", f(v)),
        Prefix::Ap => {
            let margin = (v.abs() * 0.1).max(hi - lo);
            format!(
                "({column} >= {} AND {column} <= {})",
                f(v - margin),
                f(v + margin)
            )
        }
    }
}

impl Sql {
    /// A search's statement, not kept prepared for reuse: PostgreSQL would soon plan it once
    /// for any values (a generic plan), and how selective a search is depends on its values
    /// (a patient's observations or every observation since 2020): planned with its own
    /// values every time, a search took 2 ms where the generic plan took 240.
    fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        self.statement(false)
    }

    /// The statement, kept prepared if `keep`.
    fn statement(&self, keep: bool) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text).persistent(keep);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
                Bind::Float(f) => q.bind(*f),
            };
        }
        q
    }
}

/// The SQL of the set of resource keys (`rkey`) matching every condition (binding its values
/// in `sql`). A set may hold keys of resources that are not of `rt` or do not exist (`_has`
/// yields whatever the sources point at): callers join it with `fhir_current`.
fn matching_keys(
    sql: &mut Sql,
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[Condition],
) -> String {
    let current = sql.current(instance, rt);
    let inst = instance.to_string();
    let pkey = |sql: &mut Sql, param: &str| sql.param_key(instance, rt.as_str(), param);
    // One set of keys per condition; a resource matches when it is in all of them.
    let mut sets = Vec::new();
    for c in conditions {
        let set = match c {
            Condition::Id(ids) => {
                // By key, on the unique `rkey` index alone: a key names its instance and type
                // (keys.rs), so no other condition is needed. With `instance = .. AND
                // resource_type = ..` beside it, PostgreSQL without statistics took that
                // prefix of the primary key for one row and read every resource of the type
                // (seconds per search at a few hundred thousand).
                format!(
                    "SELECT c.rkey FROM fhir_current c WHERE c.deleted = 0 AND c.rkey IN ({})",
                    key_list(sql, instance, rt.as_str(), ids)
                )
            }
            Condition::Token { param, values } => {
                let alts: Vec<String> = values
                    .iter()
                    .map(|(system, code)| {
                        let mut t = Vec::new();
                        if let Some(s) = system {
                            t.push(format!("x.system = {}", sql.text(s)));
                        }
                        if let Some(c) = code {
                            t.push(format!("x.code = {}", sql.text(c)));
                        }
                        if t.is_empty() {
                            "1 = 1".to_owned()
                        } else {
                            format!("({})", t.join(" AND "))
                        }
                    })
                    .collect();
                {
                    let p = pkey(sql, param);
                    index_keys("fhir_index_tokens", &p, or(alts))
                }
            }
            Condition::String { param, values, how } => {
                let alts: Vec<String> = values
                    .iter()
                    .map(|v| match how {
                        StringMatch::Exact => {
                            // The (pkey, value) index finds the normalized value; `exact`
                            // holds the written value when it differs ('' when not). Rows
                            // indexed before migration 1009 have NULL there: they match as
                            // they did then, up to case and accents, until `$reindex`.
                            let n = sql.text(&normalize(v));
                            let raw = sql.text(v);
                            format!(
                                "(x.value = {n} AND (x.exact = {raw} \
                                 OR (x.exact = '' AND x.value = {raw}) OR x.exact IS NULL))"
                            )
                        }
                        StringMatch::Prefix => {
                            // Character-wise on both backends, whatever the collation.
                            let n = sql.bind(Bind::Int(v.chars().count() as i64));
                            format!("SUBSTR(x.value, 1, CAST({n} AS INTEGER)) = {}", sql.text(v))
                        }
                        StringMatch::Contains => {
                            let escaped = v
                                .replace('\\', "\\\\")
                                .replace('%', "\\%")
                                .replace('_', "\\_");
                            let pattern = sql.text(&format!("%{escaped}%"));
                            format!("x.value LIKE {pattern} ESCAPE '\\'")
                        }
                    })
                    .collect();
                {
                    let p = pkey(sql, param);
                    index_keys("fhir_index_strings", &p, or(alts))
                }
            }
            Condition::Reference { param, values } => {
                // A typed reference is the key of its target; an id alone is any of the
                // parameter's target types (or, when it declares none or many, any type).
                let targets = params::find(rt.as_str(), param)
                    .map(|p| p.targets.as_slice())
                    .unwrap_or_default();
                let alts: Vec<String> = values
                    .iter()
                    .map(|(t, id)| match t {
                        _ if is_absolute(id) => {
                            let keys = absolute_keys(&inst, t.as_deref(), id);
                            if keys.is_empty() {
                                return "1 = 0".to_owned();
                            }
                            let list: Vec<String> =
                                keys.into_iter().map(|k| sql.bind(Bind::Int(k))).collect();
                            format!("x.target IN ({})", list.join(", "))
                        }
                        Some(t) => {
                            format!(
                                "x.target = {}",
                                sql.bind(Bind::Int(keys::resource(&inst, t, id)))
                            )
                        }
                        None if (1..=MAX_TARGET_TYPES).contains(&targets.len()) => {
                            let list: Vec<String> = targets
                                .iter()
                                .map(|t| sql.bind(Bind::Int(keys::resource(&inst, t, id))))
                                .collect();
                            format!("x.target IN ({})", list.join(", "))
                        }
                        None => format!("x.target_id = {}", sql.text(id)),
                    })
                    .collect();
                let p = pkey(sql, param);
                index_keys("fhir_index_references", &p, or(alts))
            }
            Condition::Number { param, values } => {
                let alts: Vec<String> = values
                    .iter()
                    .map(|(prefix, v, lo, hi)| {
                        compare_number(sql, "x.value", *prefix, *v, *lo, *hi)
                    })
                    .collect();
                {
                    let p = pkey(sql, param);
                    index_keys("fhir_index_numbers", &p, or(alts))
                }
            }
            Condition::Quantity { param, values } => {
                let alts: Vec<String> = values
                    .iter()
                    .map(|q| {
                        let mut t = vec![compare_number(
                            sql, "x.value", q.prefix, q.value, q.low, q.high,
                        )];
                        if let Some(s) = &q.system {
                            t.push(format!("x.system = {}", sql.text(s)));
                        }
                        if let Some(c) = &q.code {
                            t.push(format!("x.code = {}", sql.text(c)));
                        }
                        format!("({})", t.join(" AND "))
                    })
                    .collect();
                {
                    let p = pkey(sql, param);
                    index_keys("fhir_index_quantities", &p, or(alts))
                }
            }
            Condition::Uri { param, values, how } => {
                let alts: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let u = sql.text(v);
                        match how {
                            UriMatch::Exact => match versioned_url(rt.as_str(), param, v) {
                                // `url|version` of a canonical resource: its url and its own
                                // version (the `version` token), or the text as it is.
                                Some((url, version)) => {
                                    let url = sql.text(url);
                                    let vp = pkey(sql, "version");
                                    let version = sql.text(version);
                                    format!(
                                        "x.value = {u} OR (x.value = {url} AND x.rkey IN \
                                         (SELECT t.rkey FROM fhir_index_tokens t \
                                         WHERE t.pkey = {vp} AND t.code = {version}))"
                                    )
                                }
                                None => format!("x.value = {u}"),
                            },
                            UriMatch::Below => {
                                let n = sql.bind(Bind::Int(v.chars().count() as i64));
                                format!("SUBSTR(x.value, 1, CAST({n} AS INTEGER)) = {u}")
                            }
                            UriMatch::Above => format!("SUBSTR({u}, 1, LENGTH(x.value)) = x.value"),
                        }
                    })
                    .collect();
                {
                    let p = pkey(sql, param);
                    index_keys("fhir_index_uris", &p, or(alts))
                }
            }
            Condition::Composite {
                param,
                alternatives,
            } => {
                let alts: Vec<String> = alternatives
                    .iter()
                    .map(|parts| {
                        let tests: Vec<String> = parts
                            .iter()
                            .enumerate()
                            .map(|(i, part)| composite_test(sql, i, part))
                            .collect();
                        format!("({})", tests.join(" AND "))
                    })
                    .collect();
                {
                    let p = pkey(sql, param);
                    index_keys("fhir_index_composites", &p, or(alts))
                }
            }
            Condition::Missing {
                param,
                kind,
                missing,
            } => {
                let table = table_of(*kind).unwrap_or("fhir_index_tokens");
                let p = pkey(sql, param);
                let mut with = format!("SELECT x.rkey FROM {table} x WHERE x.pkey = {p}");
                if *kind == ParamType::Reference {
                    // A reference by identifier alone is a value too: its rows are tokens.
                    let by_identifier = pkey(sql, &format!("{param}{}", super::index::IDENTIFIER));
                    with.push_str(&format!(
                        " UNION SELECT x.rkey FROM fhir_index_tokens x WHERE x.pkey = {by_identifier}"
                    ));
                }
                if *missing {
                    format!(
                        "SELECT c.rkey FROM fhir_current c WHERE {current} AND c.rkey NOT IN ({with})"
                    )
                } else {
                    with
                }
            }
            Condition::AnyOf(alternatives) => {
                let sets: Vec<String> = alternatives
                    .iter()
                    .map(|c| matching_keys(sql, instance, rt, std::slice::from_ref(c)))
                    .collect();
                if sets.is_empty() {
                    // No way in: nothing matches.
                    format!("SELECT c.rkey FROM fhir_current c WHERE {current} AND 1 = 0")
                } else {
                    sets.join(" UNION ")
                }
            }
            Condition::Not(inner) => {
                let matching = matching_keys(sql, instance, rt, std::slice::from_ref(inner));
                format!(
                    "SELECT c.rkey FROM fhir_current c WHERE {current} AND c.rkey NOT IN ({matching})"
                )
            }
            Condition::Chain {
                param,
                target,
                inner,
            } => {
                // The targets' keys name their type: no type test needed.
                let p = pkey(sql, param);
                let targets = matching_keys(sql, instance, target, inner);
                format!(
                    "SELECT x.rkey FROM fhir_index_references x WHERE x.pkey = {p} \
                     AND x.target IN ({targets})"
                )
            }
            Condition::Has {
                source,
                param,
                inner,
            } => {
                let p = sql.param_key(instance, source.as_str(), param);
                let sources = matching_keys(sql, instance, source, inner);
                format!(
                    "SELECT x.target AS rkey FROM fhir_index_references x WHERE x.pkey = {p} \
                     AND x.rkey IN ({sources})"
                )
            }
            Condition::Date { param, values } => {
                // `_lastUpdated` is the pointer's own column (an instant: start = end).
                let last_updated = param == LAST_UPDATED;
                let (start, end) = if last_updated {
                    ("c.last_updated_ms", "c.last_updated_ms")
                } else {
                    ("x.start_ms", "x.end_ms")
                };
                let alts: Vec<String> = values
                    .iter()
                    .map(|(prefix, s, e)| {
                        let s = sql.bind(Bind::Int(*s));
                        let e = sql.bind(Bind::Int(*e));
                        let eq = format!("({start} >= {s} AND {end} <= {e})");
                        // A value's end is never before its start, so `start <= e` follows
                        // from `eq` and from `le`: said outright, it bounds the scan of the
                        // (pkey, start_ms) index from above.
                        match prefix {
                            Prefix::Eq => {
                                format!("({start} >= {s} AND {start} <= {e} AND {end} <= {e})")
                            }
                            Prefix::Ne => format!("NOT {eq}"),
                            Prefix::Gt => format!("{end} > {e}"),
                            Prefix::Lt => format!("{start} < {s}"),
                            Prefix::Ge => format!("({end} > {e} OR {eq})"),
                            Prefix::Le => format!("({start} <= {e} AND ({start} < {s} OR {eq}))"),
                            Prefix::Sa => format!("{start} > {e}"),
                            Prefix::Eb => format!("{end} < {s}"),
                            Prefix::Ap => format!("({start} <= {e} AND {end} >= {s})"),
                        }
                    })
                    .collect();
                if last_updated {
                    format!(
                        "SELECT c.rkey FROM fhir_current c WHERE {current} AND ({})",
                        or(alts)
                    )
                } else {
                    {
                        let p = pkey(sql, param);
                        index_keys("fhir_index_dates", &p, or(alts))
                    }
                }
            }
        };
        sets.push(set);
    }
    if sets.len() < 2 {
        return sets
            .pop()
            .unwrap_or_else(|| format!("SELECT c.rkey FROM fhir_current c WHERE {current}"));
    }
    // Semi-joins rather than INTERSECT: the planner may then start from the most selective
    // set and probe the others by key (their owner indexes), where an INTERSECT builds every
    // set whole (`patient=X&date=ge...` read every Observation date). Keys may repeat here;
    // every caller tests membership (`IN`) or counts distinct keys.
    let first = sets.remove(0);
    let rest: Vec<String> = sets.iter().map(|s| format!("k.rkey IN ({s})")).collect();
    format!(
        "SELECT k.rkey FROM ({first}) k WHERE {}",
        rest.join(" AND ")
    )
}

/// Whether the lookup of `c` in its index yields the keys in order: one value found by
/// equality in an index that ends with `rkey` (a code, a reference's one target, an id).
fn keys_in_order(rt: &ResourceType, c: &Condition) -> bool {
    match c {
        Condition::Id(ids) => ids.len() == 1,
        Condition::Token { values, .. } => matches!(values.as_slice(), [(_, Some(_))]),
        Condition::Reference { param, values } => match values.as_slice() {
            [(_, id)] if is_absolute(id) => false,
            [(Some(_), _)] => true,
            // An id alone is one key when the parameter has one target type.
            [(None, _)] => params::find(rt.as_str(), param).is_some_and(|p| p.targets.len() == 1),
            _ => false,
        },
        _ => false,
    }
}

/// Whether every key `matching_keys` gives for these conditions is a current resource of the
/// searched type: index rows exist only for those, and `_id` and `:missing` read the pointers.
/// Not so for `_has`, whose keys are whatever the sources point at (a deleted resource, one
/// of another type, one that never existed).
fn keys_are_current(conditions: &[Condition]) -> bool {
    conditions.iter().all(|c| match c {
        Condition::Has { .. } => false,
        Condition::AnyOf(alternatives) => keys_are_current(alternatives),
        _ => true,
    })
}

/// Binds the keys of resources `ids` of `rt` for an `IN (...)` list.
fn key_list(sql: &mut Sql, instance: &InstanceName, rt: &str, ids: &[String]) -> String {
    let inst = instance.to_string();
    ids.iter()
        .map(|id| sql.bind(Bind::Int(keys::resource(&inst, rt, id))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys of `param` of `rt`, or of all its reference parameters when `None`.
fn reference_param_keys(
    sql: &mut Sql,
    instance: &InstanceName,
    rt: &ResourceType,
    param: Option<&str>,
) -> String {
    let codes: Vec<&str> = match param {
        Some(p) => vec![p],
        None => params::for_type(rt.as_str())
            .iter()
            .filter(|p| p.kind == ParamType::Reference)
            .map(|p| p.code.as_str())
            .collect(),
    };
    if codes.is_empty() {
        // Nothing to follow: a key no row has.
        return sql.bind(Bind::Int(0));
    }
    codes
        .iter()
        .map(|c| sql.param_key(instance, rt.as_str(), c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `_include`: the (type, id) targets of the reference parameter `param` (any reference
/// parameter when `None`) of the `rt` resources `ids`, optionally only of `target` type.
pub async fn references_of<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    param: Option<&str>,
    ids: &[String],
    target: Option<&str>,
) -> Result<Vec<(String, String)>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new();
    let list = key_list(&mut sql, instance, rt.as_str(), ids);
    let mut filter = String::new();
    if let Some(p) = param {
        let p = sql.param_key(instance, rt.as_str(), p);
        // `+x.pkey` is no column an index has: the rows come from the owner index by key
        // alone (a few per resource). Offered `x.pkey = ..`, PostgreSQL ANDed in a scan of
        // every row of the parameter in the lookup index (50,000 for Encounter:patient at
        // 1M resources), 8 ms of every `_include`.
        filter.push_str(&format!(" AND +x.pkey = {p}"));
    }
    match target {
        Some(t) => filter.push_str(&format!(" AND x.target_type = {}", sql.text(t))),
        // Type '': another server's or a canonical, nothing to include.
        None => filter.push_str(" AND x.target_type <> ''"),
    }
    sql.text = format!(
        "SELECT DISTINCT x.target_type, x.target_id FROM fhir_index_references x \
         WHERE x.rkey IN ({list}){filter} ORDER BY x.target_type, x.target_id"
    );
    sql.query()
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("target_type")?, r.try_get("target_id")?)))
        .collect()
}

/// `_revinclude`: ids of the `rt` resources whose reference parameter `param` (any when
/// `None`) points at one of the `target_type` resources `targets`.
pub async fn referrers_of<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    param: Option<&str>,
    target_type: &str,
    targets: &[String],
) -> Result<Vec<String>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new();
    let pkeys = reference_param_keys(&mut sql, instance, rt, param);
    let list = key_list(&mut sql, instance, target_type, targets);
    let current = sql.current(instance, rt);
    sql.text = format!(
        "SELECT DISTINCT c.id FROM fhir_index_references x JOIN fhir_current c ON c.rkey = x.rkey \
         WHERE x.pkey IN ({pkeys}) AND x.target IN ({list}) AND {current} ORDER BY c.id"
    );
    sql.query()
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id").map_err(FhirError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_urls_of_canonical_resources() {
        let canon = "http://acme.org/ValueSet/v|2.0";
        assert_eq!(
            versioned_url("ValueSet", "url", canon),
            Some(("http://acme.org/ValueSet/v", "2.0"))
        );
        assert_eq!(
            versioned_url("ValueSet", "url", "http://acme.org/ValueSet/v"),
            None
        );
        assert_eq!(versioned_url("ValueSet", "url", "http://a|"), None);
        assert_eq!(versioned_url("ValueSet", "reference", canon), None);
        // Patient has no `url` parameter, let alone `version`.
        assert_eq!(versioned_url("Patient", "url", canon), None);
    }

    #[test]
    fn absolute_reference_values_match_their_url_and_the_local_resource() {
        let other = "http://other.org/fhir/Patient/p1";
        assert_eq!(
            absolute_keys("ws-fhir", None, other),
            vec![keys::resource("ws-fhir", "", other)]
        );
        assert_eq!(
            absolute_keys("ws-fhir", Some("Patient"), other),
            vec![keys::resource("ws-fhir", "", other)]
        );
        assert!(absolute_keys("ws-fhir", Some("Group"), other).is_empty());
        let mine = "http://localhost:8081/ws-fhir/Patient/p1";
        assert_eq!(
            absolute_keys("ws-fhir", None, mine),
            vec![
                keys::resource("ws-fhir", "", mine),
                keys::resource("ws-fhir", "Patient", "p1")
            ]
        );
        let canonical = "http://acme.org/Questionnaire/q|2.0";
        assert_eq!(
            absolute_keys("ws-fhir", Some("Questionnaire"), canonical),
            vec![keys::resource("ws-fhir", "", canonical)]
        );
    }
}
