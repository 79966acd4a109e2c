//! Index values extracted from a resource by its search parameters, and the index tables.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use hds_core::db::{Backend, Cell, Column, Rows, SqlType};
use hds_core::names::InstanceName;
use serde_json::Value;
use sqlx::{Any, Transaction};
use unicode_normalization::UnicodeNormalization;

use super::keys;
use super::params::{self, Param, ParamType};

/// What one resource contributes to the index.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Extracted {
    /// (param, system, code)
    pub tokens: Vec<(String, String, String)>,
    /// (param, normalized value, the value as written when it differs from the normalized
    /// one, else ''): `:exact` compares the third (see [`exact_of`]).
    pub strings: Vec<(String, String, String)>,
    /// (param, target type, target id) of a relative reference; (param, '', URL) of an
    /// absolute one, which [`IndexRows::add`] makes local when it is of the instance written
    /// to (see [`localize`]).
    pub references: Vec<(String, String, String)>,
    /// (param, canonical URL): a canonical reference (`url` or `url|version`) is never a
    /// local resource; a versioned one gives two rows, `url|version` and `url`, so that a
    /// search names the version or not (R4 search.html#versions).
    pub canonicals: Vec<(String, String)>,
    /// (param, start ms, end ms)
    pub dates: Vec<(String, i64, i64)>,
    /// (param, value)
    pub numbers: Vec<(String, f64)>,
    /// (param, system, code or unit, value)
    pub quantities: Vec<(String, String, String, f64)>,
    /// (param, uri)
    pub uris: Vec<(String, String)>,
    pub composites: Vec<CompositeRow>,
}

/// One combination of a composite parameter's component values.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeRow {
    pub param: String,
    pub s1: String,
    pub c1: String,
    pub s2: String,
    pub c2: String,
    pub n2: Option<f64>,
    pub n3: Option<f64>,
}

/// One component value of a composite, as it is stored.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Code(String, String),
    Number(f64),
    Quantity(String, String, f64),
    Text(String),
    Range(i64, i64),
}

fn parts_of(kind: ParamType, v: &Value) -> Vec<Part> {
    match kind {
        ParamType::Token => {
            let mut found = Vec::new();
            tokens_of(v, &mut found);
            found.into_iter().map(|(s, c)| Part::Code(s, c)).collect()
        }
        ParamType::Reference => {
            let r = match v {
                Value::Object(o) => o.get("reference").and_then(Value::as_str),
                Value::String(s) => Some(s.as_str()),
                _ => None,
            };
            // Composites keep an absolute reference whole: they are not localized (no R4
            // composite has a reference component that chains or includes).
            r.and_then(reference_target)
                .map(|t| Part::Code(String::new(), t.text()))
                .into_iter()
                .collect()
        }
        ParamType::Quantity => quantity_of(v)
            .map(|(s, c, n)| Part::Quantity(s, c, n))
            .into_iter()
            .collect(),
        ParamType::Number => number_of(v).map(Part::Number).into_iter().collect(),
        ParamType::String => {
            let mut found = Vec::new();
            strings_of(v, &mut found);
            found
                .into_iter()
                .map(|s| Part::Text(normalize(&s)))
                .collect()
        }
        ParamType::Date => dates_of(v)
            .map(|(s, e)| Part::Range(s, e))
            .into_iter()
            .collect(),
        ParamType::Uri => match v {
            Value::String(u) => vec![Part::Text(u.clone())],
            _ => Vec::new(),
        },
    }
}

/// The longest text an index row keeps: PostgreSQL's btree entries hold at most ~2.7 kB,
/// and a value longer than this (a genetic sequence, a long narrative) is not searched for
/// whole anyway. Longer values keep their first 512 bytes (prefix search still works).
const MAX_INDEXED_TEXT: usize = 512;

fn clip(mut s: String) -> String {
    if s.len() > MAX_INDEXED_TEXT {
        let mut end = MAX_INDEXED_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Combinations kept per context item, so that no resource can blow the index up.
const MAX_COMBINATIONS: usize = 64;

fn composite_rows(resource_type: &str, resource: &Value, out: &mut Vec<CompositeRow>) {
    for c in params::composites_for(resource_type) {
        for ctx in c.context.evaluate(resource) {
            let parts: Vec<Vec<Part>> = c
                .components
                .iter()
                .map(|(kind, e)| {
                    e.evaluate_on(resource, ctx.value())
                        .iter()
                        .flat_map(|i| parts_of(*kind, i.value()))
                        .collect()
                })
                .collect();
            let [first, second, rest @ ..] = parts.as_slice() else {
                continue;
            };
            let third: Vec<Option<&Part>> = match rest.first() {
                Some(t) => t.iter().map(Some).collect(),
                None => vec![None],
            };
            let mut n = 0;
            for a in first {
                let Part::Code(s1, c1) = a else { continue };
                for b in second {
                    for t in &third {
                        if n >= MAX_COMBINATIONS {
                            break;
                        }
                        n += 1;
                        let (s2, c2, n2, mut n3) = match b {
                            Part::Code(s, c) => (s.clone(), c.clone(), None, None),
                            Part::Quantity(s, c, v) => (s.clone(), c.clone(), Some(*v), None),
                            Part::Number(v) => (String::new(), String::new(), Some(*v), None),
                            Part::Text(t) => (String::new(), t.clone(), None, None),
                            Part::Range(s, e) => (
                                String::new(),
                                String::new(),
                                Some(*s as f64),
                                Some(*e as f64),
                            ),
                        };
                        if let Some(Part::Number(v)) = t {
                            n3 = Some(*v);
                        }
                        out.push(CompositeRow {
                            param: c.code.clone(),
                            s1: s1.clone(),
                            c1: c1.clone(),
                            s2,
                            c2,
                            n2,
                            n3,
                        });
                    }
                }
            }
        }
    }
}

/// A JSON number (or numeric text) as f64; the index compares numbers as doubles.
fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().or_else(|| n.to_string().parse().ok()),
        _ => None,
    }
}

/// A Quantity (or Money, Age, Duration...): (system, code or unit, value).
fn quantity_of(v: &Value) -> Option<(String, String, f64)> {
    let o = v.as_object()?;
    let value = number_of(o.get("value")?)?;
    let system = o.get("system").and_then(Value::as_str).unwrap_or_default();
    let code = o
        .get("code")
        .or_else(|| o.get("unit"))
        .or_else(|| o.get("currency"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((system.to_owned(), code.to_owned(), value))
}

/// Index rows of the `:of-type` modifier go under `{param}:of-type`.
pub const OF_TYPE: &str = ":of-type";
/// Index rows of the `:text` modifier (a CodeableConcept's text, its codings' displays) go
/// under `{param}:text`, as strings.
pub const TEXT: &str = ":text";
/// Index rows of the `:identifier` modifier go under `{param}:identifier`.
pub const IDENTIFIER: &str = ":identifier";

/// The text of a CodeableConcept and the displays of its (or a lone Coding's) codings.
fn texts_of(v: &Value, out: &mut Vec<String>) {
    let Value::Object(o) = v else { return };
    if let Some(t) = o.get("text").and_then(Value::as_str) {
        out.push(normalize(t));
    }
    if let Some(d) = o.get("display").and_then(Value::as_str) {
        out.push(normalize(d));
    }
    for c in o
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(d) = c.get("display").and_then(Value::as_str) {
            out.push(normalize(d));
        }
    }
}

/// An Identifier with a coded type: (type system, type code, value).
fn identifier_of_type(v: &Value) -> Option<(String, String, String)> {
    let value = v.get("value")?.as_str()?;
    let coding = v.get("type")?.get("coding")?.as_array()?.first()?;
    Some((
        coding
            .get("system")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        coding.get("code")?.as_str()?.to_owned(),
        value.to_owned(),
    ))
}

/// Lowercase without accents: how string search compares.
pub fn normalize(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase()
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn tokens_of(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                // CodeableConcept
                for c in codings {
                    tokens_of(c, out);
                }
                return;
            }
            let system = o.get("system").and_then(str_of).unwrap_or_default();
            // Coding / Identifier / ContactPoint / Quantity-as-token
            if let Some(code) = o.get("code").and_then(str_of) {
                out.push((system, code));
            } else if let Some(value) = o.get("value").and_then(str_of) {
                out.push((system, value));
            }
        }
        other => {
            if let Some(s) = str_of(other) {
                out.push((String::new(), s));
            }
        }
    }
}

/// The searchable texts of a string parameter's value, as written (not normalized).
fn strings_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Object(o) => {
            // HumanName, Address and the like: every string part is searchable.
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match o.get(key) {
                    Some(Value::String(s)) => out.push(s.clone()),
                    Some(Value::Array(items)) => {
                        out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// What `:exact` compares a string row with: the value as written when normalizing changed
/// it, else '' (the normalized value is the written one). Keeping '' instead of a second copy
/// spares the index a copy of every value already lowercase and unaccented (most codes,
/// cities, many names); rows written before migration 1009 have NULL (see `query`).
pub fn exact_of(raw: &str, normalized: &str) -> String {
    if raw == normalized {
        String::new()
    } else {
        raw.to_owned()
    }
}

/// Where a reference points, as the index keeps it before knowing the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A relative reference: `Type/id` of this server.
    Local(String, String),
    /// An absolute reference (`http://...`, `urn:...`), without a `/_history/n` suffix:
    /// another server's unless [`localize`] says it is of the instance.
    Absolute(String),
}

impl Target {
    /// `Type/id`, or the URL.
    pub fn text(&self) -> String {
        match self {
            Target::Local(t, id) => format!("{t}/{id}"),
            Target::Absolute(u) => u.clone(),
        }
    }
}

/// Whether a reference (or a search value) is an absolute URI: ids and types never hold ':'.
pub fn is_absolute(reference: &str) -> bool {
    reference.contains(':')
}

/// A reference as the index keeps it: relative `Type/id[/_history/n]` is local, an absolute
/// URL is kept whole (its version suffix dropped when it ends in `Type/id/_history/n`), a
/// contained (`#x`) reference or an unparseable one is nothing.
pub fn reference_target(reference: &str) -> Option<Target> {
    if reference.starts_with('#') || reference.is_empty() {
        return None;
    }
    if is_absolute(reference) {
        let unversioned = match reference.split_once("/_history/") {
            Some((head, _)) if split_reference(head).is_some() => head,
            _ => reference,
        };
        return Some(Target::Absolute(unversioned.to_owned()));
    }
    split_reference(reference).map(|(t, id)| Target::Local(t, id))
}

/// `(Type, id)` when the absolute `url` is a resource of `instance`: its path ends in
/// `/{instance}/{Type}/{id}` (optionally `/_history/n`), whatever the scheme and host.
///
/// The host is not checked, by choice: the index is written without a request (bundles,
/// `$reindex`, group commit), and one instance answers under several hosts (127.0.0.1 and
/// localhost, a proxy, `public_base_url`), so the request's `base_url` cannot decide. Instance
/// names (`{workspace}-{service}`) are unique to a deployment, so a URL ending in one of them
/// and a resource path is taken as this server's; another server using the same instance
/// name in its own paths would be taken for this one (see docs/architecture.md, search).
pub fn localize(instance: &str, url: &str) -> Option<(String, String)> {
    let (_, rest) = url.split_once("://")?;
    let (_, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next()?;
    let path = path.split("/_history/").next()?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let rt = parts.next()?;
    if parts.next()? != instance {
        return None;
    }
    rt.parse::<crate::domain::ResourceType>().ok()?;
    id.parse::<crate::domain::ResourceId>().ok()?;
    Some((rt.to_owned(), id.to_owned()))
}

/// The index rows of a canonical (`url` or `url|version`): the text itself, and for a
/// versioned one the url alone too.
pub fn canonical_texts(canonical: &str) -> Vec<String> {
    match canonical.split_once('|') {
        Some((url, _)) if !url.is_empty() => vec![canonical.to_owned(), url.to_owned()],
        _ => vec![canonical.to_owned()],
    }
}

/// `Patient/123`, `http://server/fhir/Patient/123` or `Patient/123/_history/2` -> (type, id).
pub fn split_reference(reference: &str) -> Option<(String, String)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let path = reference.split("/_history/").next()?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let rt = parts.next()?;
    rt.parse::<crate::domain::ResourceType>().ok()?;
    id.parse::<crate::domain::ResourceId>().ok()?;
    Some((rt.to_owned(), id.to_owned()))
}

fn end_of_day(d: NaiveDate) -> i64 {
    d.and_hms_milli_opt(23, 59, 59, 999)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(i64::MAX)
}

/// The range of time a FHIR date, dateTime or instant text covers, in ms.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        let start = t.with_timezone(&Utc).timestamp_millis();
        // Without fractional seconds the value stands for the whole second.
        let end = if s.contains('.') { start } else { start + 999 };
        return Some((start, end));
    }
    match s.len() {
        4 => {
            let y: i32 = s.parse().ok()?;
            let start = Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single()?;
            Some((
                start.timestamp_millis(),
                end_of_day(NaiveDate::from_ymd_opt(y, 12, 31)?),
            ))
        }
        7 => {
            let d = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok()?;
            let next = if d.month() == 12 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)?
            };
            Some((
                d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis(),
                end_of_day(next - Duration::days(1)),
            ))
        }
        10 => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            Some((
                d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis(),
                end_of_day(d),
            ))
        }
        _ => None,
    }
}

fn dates_of(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::String(s) => date_range(s),
        Value::Object(o) if o.contains_key("start") || o.contains_key("end") => {
            // Period: an open end is open.
            let start = o
                .get("start")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map_or(i64::MIN, |r| r.0);
            let end = o
                .get("end")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map_or(i64::MAX, |r| r.1);
            Some((start, end))
        }
        _ => None,
    }
}

/// Runs every search parameter of the resource's type over it: R4's and `custom` ones.
pub fn extract(resource_type: &str, resource: &Value, custom: &[Arc<Param>]) -> Extracted {
    let mut out = Extracted::default();
    for p in params::for_type(resource_type).iter().chain(custom) {
        // Answered from the pointer's own columns (see `query`): no index rows needed.
        if p.code == super::query::ID || p.code == super::query::LAST_UPDATED {
            continue;
        }
        let items = p.expression.evaluate(resource);
        if items.is_empty() {
            continue;
        }
        match p.kind {
            ParamType::Token => {
                let mut found = Vec::new();
                let mut texts = Vec::new();
                for i in &items {
                    tokens_of(i.value(), &mut found);
                    texts_of(i.value(), &mut texts);
                    // `:of-type`: an Identifier's type coding with its value.
                    if let Some((system, code, value)) = identifier_of_type(i.value()) {
                        out.tokens.push((
                            format!("{}{OF_TYPE}", p.code),
                            system,
                            format!("{code}|{value}"),
                        ));
                    }
                }
                out.tokens
                    .extend(found.into_iter().map(|(s, c)| (p.code.clone(), s, c)));
                // `:text` is a prefix search: its rows need no exact value.
                out.strings.extend(
                    texts
                        .into_iter()
                        .map(|t| (format!("{}{TEXT}", p.code), t, String::new())),
                );
            }
            ParamType::String => {
                let mut found = Vec::new();
                for i in &items {
                    strings_of(i.value(), &mut found);
                }
                out.strings.extend(found.into_iter().map(|raw| {
                    let n = normalize(&raw);
                    let exact = exact_of(&raw, &n);
                    (p.code.clone(), n, exact)
                }));
            }
            ParamType::Reference => {
                for i in &items {
                    match i.value() {
                        Value::Object(o) => {
                            match o
                                .get("reference")
                                .and_then(Value::as_str)
                                .and_then(reference_target)
                            {
                                Some(Target::Local(t, id)) => {
                                    out.references.push((p.code.clone(), t, id))
                                }
                                Some(Target::Absolute(u)) => {
                                    out.references.push((p.code.clone(), String::new(), u))
                                }
                                None => {}
                            }
                        }
                        // A canonical (or uri) element: absolute, it names a resource by its
                        // canonical URL, not by where it is stored; relative, it is local.
                        Value::String(s) if is_absolute(s) => out
                            .canonicals
                            .extend(canonical_texts(s).into_iter().map(|c| (p.code.clone(), c))),
                        Value::String(s) => {
                            if let Some((t, id)) = split_reference(s) {
                                out.references.push((p.code.clone(), t, id));
                            }
                        }
                        _ => {}
                    }
                    // `:identifier`: a reference by business identifier.
                    if let Some(identifier) = i.value().get("identifier") {
                        let mut found = Vec::new();
                        tokens_of(identifier, &mut found);
                        out.tokens.extend(
                            found
                                .into_iter()
                                .map(|(s, c)| (format!("{}{IDENTIFIER}", p.code), s, c)),
                        );
                    }
                }
            }
            ParamType::Date => {
                for i in &items {
                    if let Some((s, e)) = dates_of(i.value()) {
                        out.dates.push((p.code.clone(), s, e));
                    }
                }
            }
            ParamType::Number => {
                for i in &items {
                    if let Some(n) = number_of(i.value()).filter(|n| n.is_finite()) {
                        out.numbers.push((p.code.clone(), n));
                    }
                }
            }
            ParamType::Quantity => {
                for i in &items {
                    if let Some((s, c, v)) = quantity_of(i.value()).filter(|q| q.2.is_finite()) {
                        out.quantities.push((p.code.clone(), s, c, v));
                    }
                }
            }
            ParamType::Uri => {
                for i in &items {
                    if let Value::String(u) = i.value() {
                        out.uris.push((p.code.clone(), u.clone()));
                    }
                }
            }
        }
    }
    out.tokens.sort();
    out.tokens.dedup();
    out.strings.sort();
    out.strings.dedup();
    out.references.sort();
    out.references.dedup();
    out.canonicals.sort();
    out.canonicals.dedup();
    out.dates.sort();
    out.dates.dedup();
    out.numbers
        .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    out.numbers.dedup();
    out.quantities.sort_by(|a, b| {
        (&a.0, &a.1, &a.2)
            .cmp(&(&b.0, &b.1, &b.2))
            .then(a.3.total_cmp(&b.3))
    });
    out.quantities.dedup();
    out.uris.sort();
    out.uris.dedup();
    composite_rows(resource_type, resource, &mut out.composites);
    out.composites.dedup();
    out
}

const TABLES: [&str; 8] = [
    "fhir_index_composites",
    "fhir_index_tokens",
    "fhir_index_strings",
    "fhir_index_references",
    "fhir_index_dates",
    "fhir_index_numbers",
    "fhir_index_quantities",
    "fhir_index_uris",
];

/// Index rows waiting to be inserted: a transaction's writes send theirs together.
pub struct IndexRows {
    tokens: Rows,
    strings: Rows,
    references: Rows,
    dates: Rows,
    numbers: Rows,
    quantities: Rows,
    uris: Rows,
    composites: Rows,
}

/// Every index row's first columns: the parameter's key and the resource's.
const KEY: Column = ("pkey", SqlType::BigInt);
const OWNER: Column = ("rkey", SqlType::BigInt);

impl Default for IndexRows {
    fn default() -> Self {
        use SqlType::{BigInt, Double, Text};
        Self {
            tokens: Rows::new(
                "fhir_index_tokens",
                &[KEY, OWNER, ("system", Text), ("code", Text)],
            ),
            strings: Rows::new(
                "fhir_index_strings",
                &[KEY, OWNER, ("value", Text), ("exact", Text)],
            ),
            references: Rows::new(
                "fhir_index_references",
                &[
                    KEY,
                    OWNER,
                    ("target", BigInt),
                    ("target_type", Text),
                    ("target_id", Text),
                ],
            ),
            dates: Rows::new(
                "fhir_index_dates",
                &[KEY, OWNER, ("start_ms", BigInt), ("end_ms", BigInt)],
            ),
            numbers: Rows::new("fhir_index_numbers", &[KEY, OWNER, ("value", Double)]),
            quantities: Rows::new(
                "fhir_index_quantities",
                &[
                    KEY,
                    OWNER,
                    ("system", Text),
                    ("code", Text),
                    ("value", Double),
                ],
            ),
            uris: Rows::new("fhir_index_uris", &[KEY, OWNER, ("value", Text)]),
            composites: Rows::new(
                "fhir_index_composites",
                &[
                    KEY,
                    OWNER,
                    ("s1", Text),
                    ("c1", Text),
                    ("s2", Text),
                    ("c2", Text),
                    ("n2", Double),
                    ("n3", Double),
                ],
            ),
        }
    }
}

impl IndexRows {
    /// Adds the rows `resource` contributes to the index; `rkey` is its key
    /// ([`keys::resource`]), `custom` the instance's own parameters of its type.
    pub fn add(
        &mut self,
        instance: &str,
        resource_type: &str,
        rkey: i64,
        resource: &Value,
        custom: &[Arc<Param>],
    ) {
        let x = extract(resource_type, resource, custom);
        // Rows of one parameter come together (the lists are sorted): one hash per parameter.
        let mut last: Option<(String, i64)> = None;
        let mut owner = |param: String| -> [Cell; 2] {
            let pkey = match &last {
                Some((p, k)) if *p == param => *k,
                _ => {
                    let k = keys::param(instance, resource_type, &param);
                    last = Some((param, k));
                    k
                }
            };
            [Cell::Int(pkey), Cell::Int(rkey)]
        };
        for (param, system, code) in x.tokens {
            let [p, r] = owner(param);
            self.tokens
                .push([p, r, Cell::Text(clip(system)), Cell::Text(clip(code))]);
        }
        for (param, value, exact) in x.strings {
            let [p, r] = owner(param);
            self.strings
                .push([p, r, Cell::Text(clip(value)), Cell::Text(clip(exact))]);
        }
        // References are sorted by parameter, canonicals after them: still one run per
        // parameter for `owner` unless a parameter has both (then a second hash, no harm).
        let references = x.references.into_iter().map(|(param, t, id)| {
            if !t.is_empty() {
                return (param, t, id);
            }
            match localize(instance, &id) {
                Some((t, id)) => (param, t, id),
                None => (param, t, id),
            }
        });
        let canonicals = x
            .canonicals
            .into_iter()
            .map(|(param, c)| (param, String::new(), c));
        // A reference to no local resource (another server's, a canonical) has the type ''
        // and its URL as id: its key is no local resource's, so chains, _include, _has and
        // compartments never follow it, and only a search by that URL matches it.
        for (param, target_type, target_id) in references.chain(canonicals) {
            let [p, r] = owner(param);
            let target = keys::resource(instance, &target_type, &target_id);
            self.references.push([
                p,
                r,
                Cell::Int(target),
                Cell::Text(target_type),
                Cell::Text(clip(target_id)),
            ]);
        }
        for (param, start, end) in x.dates {
            let [p, r] = owner(param);
            self.dates.push([p, r, Cell::Int(start), Cell::Int(end)]);
        }
        for (param, value) in x.numbers {
            let [p, r] = owner(param);
            self.numbers.push([p, r, Cell::Float(value)]);
        }
        for (param, system, code, value) in x.quantities {
            let [p, r] = owner(param);
            self.quantities.push([
                p,
                r,
                Cell::Text(clip(system)),
                Cell::Text(clip(code)),
                Cell::Float(value),
            ]);
        }
        for (param, uri) in x.uris {
            let [p, r] = owner(param);
            self.uris.push([p, r, Cell::Text(clip(uri))]);
        }
        for c in x.composites {
            let [p, r] = owner(c.param);
            // A component without a number stores 0: a parameter's rows all have the same
            // component types, so no test reads it. (sqlx's Any driver sends a NULL double to
            // PostgreSQL in a format it refuses.)
            let float = |v: Option<f64>| Cell::Float(v.unwrap_or(0.0));
            self.composites.push([
                p,
                r,
                Cell::Text(clip(c.s1)),
                Cell::Text(clip(c.c1)),
                Cell::Text(clip(c.s2)),
                Cell::Text(clip(c.c2)),
                float(c.n2),
                float(c.n3),
            ]);
        }
    }

    /// The rows of each index table.
    pub(crate) fn tables(&mut self) -> [&mut Rows; 8] {
        [
            &mut self.composites,
            &mut self.tokens,
            &mut self.strings,
            &mut self.references,
            &mut self.dates,
            &mut self.numbers,
            &mut self.quantities,
            &mut self.uris,
        ]
    }

    pub fn is_empty(&mut self) -> bool {
        self.tables().iter().all(|r| r.is_empty())
    }

    /// Moves the rows of `other` (made for another resource) to these.
    pub fn append(&mut self, other: &mut IndexRows) {
        for (mine, theirs) in self.tables().into_iter().zip(other.tables()) {
            mine.append(theirs);
        }
    }

    /// Drops every queued row.
    pub fn clear(&mut self) {
        for rows in self.tables() {
            rows.clear();
        }
    }

    /// Inserts the rows in `tx` (on PostgreSQL in one statement) and empties the list.
    pub async fn insert(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), sqlx::Error> {
        let mut tables = self.tables();
        hds_core::db::insert_all(tx, &mut tables).await
    }
}

/// Removes the index rows of one resource (it is rewritten or deleted).
pub async fn remove(tx: &mut Transaction<'_, Any>, rkey: i64) -> Result<(), sqlx::Error> {
    remove_all(tx, &[rkey]).await
}

/// Removes the index rows of the resources `keys` (rewritten, deleted or reindexed together):
/// on PostgreSQL in one statement (`WITH a AS (DELETE ...) DELETE ...`), on SQLite table by
/// table.
pub async fn remove_all(tx: &mut Transaction<'_, Any>, keys: &[i64]) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    if Backend::of(tx) == Backend::Postgres {
        let (last, rest) = TABLES.split_last().expect("index tables");
        let with: Vec<String> = rest
            .iter()
            .enumerate()
            .map(|(i, table)| {
                format!("d{i} AS (DELETE FROM {table} WHERE rkey = ANY($1::bigint[]))")
            })
            .collect();
        let sql = format!(
            "WITH {} DELETE FROM {last} WHERE rkey = ANY($1::bigint[])",
            with.join(", ")
        );
        let list: Vec<String> = keys.iter().map(i64::to_string).collect();
        sqlx::query(&sql)
            .bind(format!("{{{}}}", list.join(",")))
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let list = (1..=keys.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    for table in TABLES {
        let sql = format!("DELETE FROM {table} WHERE rkey IN ({list})");
        let mut q = sqlx::query(&sql);
        for k in keys {
            q = q.bind(*k);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Removes every index row of an instance; run before its pointers go (they hold the keys).
pub async fn delete_instance(
    tx: &mut Transaction<'_, Any>,
    instance: &InstanceName,
) -> Result<(), sqlx::Error> {
    for table in TABLES {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE rkey IN (SELECT rkey FROM fhir_current WHERE instance = $1)"
        ))
        .bind(instance.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_their_precision() {
        let (s, e) = date_range("2020").unwrap();
        assert_eq!(
            s,
            Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(
            e,
            Utc.with_ymd_and_hms(2020, 12, 31, 23, 59, 59)
                .unwrap()
                .timestamp_millis()
                + 999
        );
        let (s, e) = date_range("2020-02").unwrap();
        assert_eq!(e - s + 1, 29 * 24 * 3600 * 1000);
        let (s, e) = date_range("2020-02-03T04:05:06+01:00").unwrap();
        assert_eq!(
            s,
            Utc.with_ymd_and_hms(2020, 2, 3, 3, 5, 6)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(e, s + 999);
        assert_eq!(date_range("yesterday"), None);
    }

    #[test]
    fn references_and_normalization() {
        assert_eq!(
            split_reference("Patient/123"),
            Some(("Patient".into(), "123".into()))
        );
        assert_eq!(
            split_reference("http://x/fhir/Patient/1/_history/2"),
            Some(("Patient".into(), "1".into()))
        );
        assert_eq!(split_reference("urn:uuid:abc"), None);
        assert_eq!(split_reference("#contained"), None);
        assert_eq!(normalize("Chalmérs"), "chalmers");
    }

    #[test]
    fn exact_values_are_kept_only_when_normalizing_changed_them() {
        assert_eq!(exact_of("smith", "smith"), "");
        assert_eq!(exact_of("Müller", &normalize("Müller")), "Müller");
        assert_eq!(exact_of("MULLER", &normalize("MULLER")), "MULLER");
    }

    #[test]
    fn reference_targets() {
        let local = |t: &str, id: &str| Some(Target::Local(t.into(), id.into()));
        let absolute = |u: &str| Some(Target::Absolute(u.into()));
        assert_eq!(reference_target("Patient/1"), local("Patient", "1"));
        assert_eq!(
            reference_target("Patient/1/_history/3"),
            local("Patient", "1")
        );
        assert_eq!(
            reference_target("http://other.org/fhir/Patient/1/_history/3"),
            absolute("http://other.org/fhir/Patient/1")
        );
        assert_eq!(
            reference_target("http://acme.org/Questionnaire/q|2.0"),
            absolute("http://acme.org/Questionnaire/q|2.0")
        );
        assert_eq!(reference_target("urn:uuid:abc"), absolute("urn:uuid:abc"));
        assert_eq!(reference_target("#contained"), None);
        assert_eq!(reference_target("not a reference"), None);
        assert_eq!(
            absolute("http://x/Patient/1").unwrap().text(),
            "http://x/Patient/1"
        );
        assert_eq!(local("Patient", "1").unwrap().text(), "Patient/1");
    }

    #[test]
    fn absolute_references_are_local_under_the_instance_on_any_host() {
        let p1 = Some(("Patient".to_owned(), "p1".to_owned()));
        assert_eq!(
            localize("ws-fhir", "http://127.0.0.1:8081/ws-fhir/Patient/p1"),
            p1
        );
        assert_eq!(
            localize("ws-fhir", "https://gw.example.org/proxy/ws-fhir/Patient/p1"),
            p1
        );
        assert_eq!(
            localize("ws-fhir", "http://h/ws-fhir/Patient/p1/_history/2"),
            p1
        );
        assert_eq!(
            localize("ws-fhir", "http://other.org/fhir/Patient/p1"),
            None
        );
        assert_eq!(localize("ws-fhir", "http://h/other-fhir/Patient/p1"), None);
        assert_eq!(localize("ws-fhir", "http://h/ws-fhir/Nothing/p1"), None);
        assert_eq!(
            localize("ws-fhir", "http://h/ws-fhir/Questionnaire/q|2.0"),
            None
        );
        assert_eq!(localize("ws-fhir", "Patient/p1"), None);
        assert_eq!(localize("ws-fhir", "urn:uuid:abc"), None);
    }

    #[test]
    fn versioned_canonicals_give_both_texts() {
        assert_eq!(canonical_texts("http://a/Q/x"), vec!["http://a/Q/x"]);
        assert_eq!(
            canonical_texts("http://a/Q/x|2.0"),
            vec!["http://a/Q/x|2.0", "http://a/Q/x"]
        );
        assert_eq!(canonical_texts("|2.0"), vec!["|2.0"]);
    }

    #[test]
    fn extraction_keeps_exact_strings_and_other_servers_references() {
        let patient = serde_json::json!({"resourceType": "Patient", "id": "p",
            "name": [{"family": "Müller", "given": ["anna"]}],
            "generalPractitioner": [{"reference": "http://other.org/fhir/Practitioner/x"},
                                    {"reference": "Practitioner/y"}]});
        let x = extract("Patient", &patient, &[]);
        assert!(x
            .strings
            .contains(&("family".into(), "muller".into(), "Müller".into())));
        assert!(x
            .strings
            .contains(&("given".into(), "anna".into(), String::new())));
        let gp: Vec<_> = x
            .references
            .iter()
            .filter(|r| r.0 == "general-practitioner")
            .cloned()
            .collect();
        assert_eq!(
            gp,
            vec![
                (
                    "general-practitioner".into(),
                    String::new(),
                    "http://other.org/fhir/Practitioner/x".into()
                ),
                (
                    "general-practitioner".into(),
                    "Practitioner".into(),
                    "y".into()
                ),
            ]
        );
        let qr = serde_json::json!({"resourceType": "QuestionnaireResponse", "id": "q",
            "status": "completed", "questionnaire": "http://acme.org/Questionnaire/i|2.0"});
        let x = extract("QuestionnaireResponse", &qr, &[]);
        assert!(x.references.iter().all(|r| r.0 != "questionnaire"));
        assert_eq!(
            x.canonicals,
            vec![
                (
                    "questionnaire".into(),
                    "http://acme.org/Questionnaire/i".into()
                ),
                (
                    "questionnaire".into(),
                    "http://acme.org/Questionnaire/i|2.0".into()
                ),
            ]
        );
    }
}
