//! search: `GET [base]/[type]?[parameters]` and `POST [base]/[type]/_search` (R4
//! search.html): a `searchset` Bundle of the current resources matching every parameter, a
//! page at a time.
//!
//! Parameters the server does not know or cannot apply are ignored and reported in an
//! OperationOutcome entry (`search.mode` = `outcome`), as the spec allows; with
//! `Prefer: handling=strict` they are a 400. Matches come in id order, or in `_sort` order
//! (several keys, `-` for descending, then id), and `next` carries an opaque token of the
//! page's last row ([`Cursor`]): keyset paging, so pages stay stable while others write.
//! `_count` (default 10, at most `[fhir] max_search_count`),
//! `_summary=count|data|text|true` (from the definitions' isSummary and min), `_elements`,
//! `_total`, and `_include` / `_revinclude` (with `:iterate` and `Type:*`; included resources
//! come as `search.mode` = `include`, at most [`MAX_INCLUDED`] per page, unlike Azure's cap of
//! 100) are the result parameters applied so far.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::{json, Value};

use super::FhirCaller;
use crate::domain::{instant, ResourceType};
use crate::error::{operation_outcome, FhirError};
use crate::http::{base_url, read_body, resource_type, FhirState, Instance, FHIR_JSON};
use crate::search::cursor::{not_this_search, Cursor, SortValue};
use crate::search::custom::{Catalog, USE_PARTIAL_INDICES};
use crate::search::params::ParamType;
use crate::search::query::{self, Condition, SortKey};
use crate::store::Version;

const DEFAULT_COUNT: usize = 10;
/// Resources `_include`/`_revinclude` may add to one page.
pub const MAX_INCLUDED: usize = 1000;
/// Rounds of `:iterate` (each follows the references of what the last one added).
const MAX_ROUNDS: usize = 4;

/// One `_include` or `_revinclude`: `source:param[:target]`, `param` `None` for `*`.
struct Include {
    reverse: bool,
    iterate: bool,
    source: ResourceType,
    param: Option<String>,
    target: Option<ResourceType>,
}

impl Include {
    fn parse(catalog: &Catalog, key: &str, value: &str) -> Result<Self, FhirError> {
        let (name, modifier) = key.split_once(':').unwrap_or((key, ""));
        let iterate = match modifier {
            "" => false,
            "iterate" | "recurse" => true,
            m => {
                return Err(FhirError::invalid(format!(
                    "'{name}:{m}' is not a modifier of {name}"
                )))
            }
        };
        let bad = || {
            FhirError::invalid(format!(
                "{name}={value}: expected [type]:[reference parameter] or [type]:*"
            ))
        };
        let mut parts = value.split(':');
        let source: ResourceType = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let param = match parts.next().ok_or_else(bad)? {
            "*" => None,
            p => {
                let known = catalog
                    .find(source.as_str(), p)
                    .is_some_and(|d| d.kind == ParamType::Reference);
                if !known {
                    return Err(FhirError::invalid(format!(
                        "{name}={value}: '{p}' is not a reference parameter of {source}"
                    )));
                }
                Some(p.to_owned())
            }
        };
        let target = match parts.next() {
            None => None,
            Some(t) => Some(t.parse().map_err(|_| bad())?),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Include {
            reverse: name == "_revinclude",
            iterate,
            source,
            param,
            target,
        })
    }
}
/// The continuation token's parameter in `next` links.
const CONTINUATION: &str = "ct";

/// A search as asked: what selects, what shapes the result, and what was ignored.
struct Search {
    conditions: Vec<Condition>,
    count: usize,
    /// Where this page starts (`ct`): after the previous page's last row.
    after: Option<Cursor>,
    summary_count: bool,
    total: bool,
    includes: Vec<Include>,
    /// `_elements` / `_summary=text|data`: what each returned resource keeps.
    shape: Shape,
    /// `_sort` keys (then id); none: id order.
    sort: Vec<SortKey>,
    /// The parameters applied, to repeat in `self` and `next` links.
    applied: Vec<(String, String)>,
    ignored: Vec<String>,
}

impl Search {
    fn parse(
        catalog: &Catalog,
        rt: &ResourceType,
        query: &str,
        strict: bool,
        max_count: usize,
    ) -> Result<Self, FhirError> {
        let mut s = Search {
            conditions: Vec::new(),
            count: DEFAULT_COUNT,
            after: None,
            summary_count: false,
            total: false,
            includes: Vec::new(),
            shape: Shape::Full,
            sort: Vec::new(),
            applied: Vec::new(),
            ignored: Vec::new(),
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (key, value) = (key.into_owned(), value.into_owned());
            let outcome: Result<(), FhirError> = match key.as_str() {
                CONTINUATION => {
                    // A token the server did not make is a mistake either way.
                    s.after = Some(Cursor::parse(&value)?);
                    continue;
                }
                "_count" => match value.parse::<usize>() {
                    Ok(n) => {
                        s.count = n.min(max_count);
                        Ok(())
                    }
                    Err(_) => {
                        return Err(FhirError::invalid(format!(
                            "_count must be a whole number, not '{value}'"
                        )))
                    }
                },
                "_sort" => SortKey::parse_list(catalog, rt, &value).map(|k| s.sort = k),
                "_summary" if value == "count" => {
                    s.summary_count = true;
                    Ok(())
                }
                "_summary" if value == "false" => Ok(()),
                "_summary" if value == "data" => {
                    s.shape = Shape::Data;
                    Ok(())
                }
                "_summary" if value == "text" => {
                    s.shape = Shape::Text;
                    Ok(())
                }
                "_summary" if value == "true" => {
                    s.shape = Shape::Summary;
                    Ok(())
                }
                "_elements" => {
                    s.shape = Shape::Elements(
                        value
                            .split(',')
                            .map(|e| e.trim().to_owned())
                            .filter(|e| !e.is_empty())
                            .collect(),
                    );
                    Ok(())
                }
                "_total" => match value.as_str() {
                    // An exact count is the best estimate; counting is cheap from the index.
                    "accurate" | "estimate" => {
                        s.total = true;
                        Ok(())
                    }
                    "none" => Ok(()),
                    other => Err(FhirError::invalid(format!(
                        "_total must be none, estimate or accurate, not '{other}'"
                    ))),
                },
                k if k.starts_with("_include") || k.starts_with("_revinclude") => {
                    Include::parse(catalog, k, &value).map(|i| s.includes.push(i))
                }
                k if query::is_result_param(k) => Err(FhirError::invalid(format!(
                    "'{k}={value}' is not supported yet"
                ))),
                _ => query::parse_one(catalog, rt, &key, &value).map(|c| s.conditions.extend(c)),
            };
            match outcome {
                Ok(()) => s.applied.push((key, value)),
                Err(e) if strict => return Err(e),
                Err(e) => s.ignored.push(describe(&e)),
            }
        }
        Ok(s)
    }

    /// Where an unsorted page starts; whether the cursor fits this search's order is
    /// `query::find_page`'s to say.
    fn after_unsorted(&self) -> Result<Option<&Cursor>, FhirError> {
        match &self.after {
            None => Ok(None),
            Some(c @ (Cursor::Id { .. } | Cursor::Key { .. })) => Ok(Some(c)),
            Some(_) => Err(not_this_search()),
        }
    }

    /// The row (sort values, id) a sorted page starts after; whether its values fit this
    /// search's keys is `query::find_sorted`'s to say.
    fn after_row(&self) -> Result<Option<(&[SortValue], &str)>, FhirError> {
        match &self.after {
            None => Ok(None),
            Some(Cursor::Sorted { values, id }) => Ok(Some((values, id))),
            Some(_) => Err(not_this_search()),
        }
    }

    fn link(&self, base: &str, rt: &ResourceType, after: Option<&Cursor>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.applied {
            q.append_pair(k, v);
        }
        if let Some(a) = after {
            q.append_pair(CONTINUATION, &a.token());
        }
        let q = q.finish();
        if q.is_empty() {
            format!("{base}/{rt}")
        } else {
            format!("{base}/{rt}?{q}")
        }
    }
}

/// What a returned resource keeps (R4 search.html#summary and #elements).
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Full,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_summary=text`: the narrative, id, meta and the mandatory elements.
    Text,
    /// `_summary=true`: the elements the definitions mark as summary, and the mandatory ones.
    Summary,
    /// `_elements`: these top-level elements (a choice by its name, `value` for
    /// `valueQuantity`), with id and meta.
    Elements(Vec<String>),
}

impl Shape {
    /// Shapes a matched resource; a subset is tagged SUBSETTED, as the spec asks.
    fn apply(&self, rt: &str, resource: Value) -> Value {
        let top = fhir_validation::summary::top_elements(rt);
        let mandatory = move |k: &str| top.iter().any(|e| e.mandatory && e.matches(k));
        let keep: Box<dyn Fn(&str) -> bool> = match self {
            Shape::Full => return resource,
            Shape::Data => Box::new(|k| k != "text"),
            Shape::Text => Box::new(move |k| {
                matches!(k, "text" | "id" | "meta" | "resourceType") || mandatory(k)
            }),
            Shape::Summary => Box::new(move |k| {
                matches!(k, "id" | "meta" | "resourceType")
                    || top
                        .iter()
                        .any(|e| (e.summary || e.mandatory) && e.matches(k))
            }),
            Shape::Elements(names) => Box::new(move |k: &str| {
                matches!(k, "id" | "meta" | "resourceType")
                    || names.iter().any(|n| {
                        let k = k.strip_prefix('_').unwrap_or(k);
                        k == n
                            || k.strip_prefix(n.as_str()).is_some_and(|rest| {
                                rest.starts_with(|c: char| c.is_ascii_uppercase())
                            })
                    })
            }),
        };
        let Value::Object(map) = resource else {
            return resource;
        };
        let mut kept: serde_json::Map<String, Value> =
            map.into_iter().filter(|(k, _)| keep(k)).collect();
        let meta = kept.entry("meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            let tags = meta.entry("tag").or_insert_with(|| json!([]));
            if let Value::Array(tags) = tags {
                tags.push(json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED",
                    "display": "subsetted",
                }));
            }
        }
        Value::Object(kept)
    }
}

/// The diagnostics of an error, for an outcome entry.
fn describe(e: &FhirError) -> String {
    e.outcome()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `Prefer: handling=strict`.
/// `x-ms-use-partial-indices: true`: custom parameters may be used before a reindex.
fn partial(req: &HttpRequest) -> bool {
    req.headers()
        .get(USE_PARTIAL_INDICES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn strict(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "handling=strict")
}

pub async fn search_type(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    run(&req, &state, &instance, &rt, req.query_string(), None).await
}

/// Compartment search: `GET [base]/[Compartment]/[id]/[type]?[parameters]`, the `type`
/// resources in the compartment of that resource (R4 CompartmentDefinitions).
pub async fn search_compartment(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String, String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let owner = resource_type(&path.1)?;
    let id = crate::http::resource_id(&path.2)?;
    let rt = resource_type(&path.3)?;
    let within = crate::search::compartments::condition(&owner, &id, &rt)?;
    let prefix = format!("{owner}/{id}");
    run(
        &req,
        &state,
        &instance,
        &rt,
        req.query_string(),
        Some((within, prefix)),
    )
    .await
}

/// `POST [type]/_search`: the parameters in an `application/x-www-form-urlencoded` body
/// (and the query string).
pub async fn search_type_post(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let rt = resource_type(&path.1)?;
    let form = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(FhirError::UnsupportedMediaType(
            "POST _search takes application/x-www-form-urlencoded parameters".into(),
        ));
    }
    let raw = read_body(&req, body, state.max_body_bytes).await?;
    let body = String::from_utf8(raw.to_vec())
        .map_err(|_| FhirError::invalid("the form body is not UTF-8"))?;
    let query = [req.query_string(), body.as_str()]
        .iter()
        .filter(|q| !q.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("&");
    run(&req, &state, &instance, &rt, &query, None).await
}

/// System search: `GET [base]?_type=A,B&[common parameters]`, the matches of each listed
/// type in turn (types in name order, then ids), paged after the last resource of a page.
/// `_type` is required: a search of all 146 types at once is not offered.
pub async fn search_system(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let mut types: Vec<ResourceType> = Vec::new();
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    let mut after: Option<(String, Cursor)> = None;
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "_type" => {
                for t in v.split(',').filter(|t| !t.is_empty()) {
                    // A parameter's value, not a path: a wrong one is a bad request.
                    types.push(
                        t.parse()
                            .map_err(|e: String| FhirError::invalid(format!("_type: {e}")))?,
                    );
                }
            }
            CONTINUATION => match Cursor::parse(&v)? {
                Cursor::System {
                    resource_type,
                    within,
                } => after = Some((resource_type, *within)),
                _ => return Err(not_this_search()),
            },
            _ => {
                rest.append_pair(&k, &v);
            }
        }
    }
    if types.is_empty() {
        return Err(FhirError::invalid(
            "a system-level search needs _type (e.g. _type=Patient,Observation)",
        ));
    }
    types.sort();
    types.dedup();
    let rest = rest.finish();
    let base = base_url(&req, &state, &instance);
    let strict = strict(&req);
    let mut ignored = Vec::new();
    let mut first_ignored: Vec<String> = Vec::new();
    let mut count = DEFAULT_COUNT;
    // Each match with the cursor of its type's search that starts after it.
    let mut found: Vec<(ResourceType, String, Cursor)> = Vec::new();
    let catalog = state
        .store
        .catalog(&instance)
        .await?
        .with_partial(partial(&req));
    for (i, rt) in types.iter().enumerate() {
        let search = Search::parse(&catalog, rt, &rest, strict, state.max_search_count)?;
        // A parameter one type ignores and another applies would select differently per
        // type: only parameters that mean the same for every listed type are accepted.
        if i > 0 && search.ignored != first_ignored {
            return Err(FhirError::invalid(
                "a system-level search takes parameters that every type in _type has",
            ));
        }
        if i == 0 {
            first_ignored = search.ignored.clone();
            count = search.count;
            ignored = search.ignored.clone();
            if !search.sort.is_empty() || !search.includes.is_empty() {
                let e = FhirError::invalid(
                    "_sort, _include and _revinclude are not supported in a system-level search",
                );
                if strict {
                    return Err(e);
                }
                ignored.push(describe(&e));
            }
        }
        let from = match &after {
            Some((t, _)) if t.as_str() > rt.as_str() => continue,
            Some((t, within)) if t == rt.as_str() => Some(within),
            _ => None,
        };
        let wanted = (count + 1).saturating_sub(found.len());
        if wanted == 0 {
            break;
        }
        for (id, cursor) in state
            .store
            .search_page(&instance, rt, &search.conditions, from, wanted as i64)
            .await?
        {
            found.push((rt.clone(), id, cursor));
        }
    }
    let more = found.len() > count;
    found.truncate(count);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair(
        "_type",
        &types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    let query = if rest.is_empty() {
        q.finish()
    } else {
        format!("{}&{rest}", q.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": format!("{base}?{query}")})];
    if more {
        if let Some((t, _, within)) = found.last() {
            let token = Cursor::System {
                resource_type: t.to_string(),
                within: Box::new(within.clone()),
            }
            .token();
            links.push(json!({"relation": "next", "url": format!("{base}?{query}&{CONTINUATION}={token}")}));
        }
    }
    let mut entries = Vec::new();
    for rt in &types {
        let ids: Vec<String> = found
            .iter()
            .filter(|(t, _, _)| t == rt)
            .map(|(_, id, _)| id.clone())
            .collect();
        for v in state.store.read_many(&instance, rt, &ids).await? {
            entries.push(json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "resource": v.body,
                "search": {"mode": "match"},
            }));
        }
    }
    if !ignored.is_empty() {
        let issues = ignored
            .iter()
            .map(|w| json!({"severity": "warning", "code": "not-supported", "diagnostics": w}))
            .collect();
        entries.push(json!({"resource": operation_outcome(issues), "search": {"mode": "outcome"}}));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant(Utc::now())},
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}

/// Runs a search of `rt`; `compartment` is a compartment's condition and its path prefix
/// (`Patient/123`) for links.
async fn run(
    req: &HttpRequest,
    state: &FhirState,
    instance: &InstanceName,
    rt: &ResourceType,
    query: &str,
    compartment: Option<(Condition, String)>,
) -> Result<HttpResponse, FhirError> {
    let catalog = state
        .store
        .catalog(instance)
        .await?
        .with_partial(partial(req));
    let mut search = Search::parse(&catalog, rt, query, strict(req), state.max_search_count)?;
    let base = base_url(req, state, instance);
    // Links repeat the compartment; entries' fullUrls stay the resources' own.
    let link_base = match &compartment {
        Some((condition, prefix)) => {
            search.conditions.push(condition.clone());
            format!("{base}/{prefix}")
        }
        None => base.clone(),
    };
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant(Utc::now())},
        "type": "searchset",
    });
    if search.total || search.summary_count || search.count == 0 {
        bundle["total"] = json!(
            state
                .store
                .search_count(instance, rt, &search.conditions)
                .await?
        );
    }
    let mut links = vec![
        json!({"relation": "self", "url": search.link(&link_base, rt, search.after.as_ref())}),
    ];
    let mut entries: Vec<Value> = Vec::new();
    if !search.summary_count && search.count > 0 {
        // One more than a page tells whether there is a next one; the page's last row is
        // where the next starts.
        let limit = search.count as i64 + 1;
        let (mut ids, mut cursors): (Vec<String>, Vec<Cursor>) = if search.sort.is_empty() {
            state
                .store
                .search_page(
                    instance,
                    rt,
                    &search.conditions,
                    search.after_unsorted()?,
                    limit,
                )
                .await?
                .into_iter()
                .unzip()
        } else {
            state
                .store
                .search_sorted(
                    instance,
                    rt,
                    &search.conditions,
                    &search.sort,
                    search.after_row()?,
                    limit,
                )
                .await?
                .into_iter()
                .map(|(id, values)| (id.clone(), Cursor::Sorted { values, id }))
                .unzip()
        };
        let more = ids.len() > search.count;
        ids.truncate(search.count);
        cursors.truncate(search.count);
        if more {
            links.push(json!({
                "relation": "next",
                "url": search.link(&link_base, rt, cursors.last())
            }));
        }
        let matches = state.store.read_many(instance, rt, &ids).await?;
        let (included, truncated) = include(state, instance, &search.includes, &matches).await?;
        for (v, mode) in matches
            .into_iter()
            .map(|v| (v, "match"))
            .chain(included.into_iter().map(|v| (v, "include")))
        {
            // `_elements` and `_summary` shape the matches; included resources stay whole.
            let resource = match (mode, v.body) {
                ("match", Some(body)) => search.shape.apply(rt.as_str(), body),
                (_, body) => body.unwrap_or(Value::Null),
            };
            entries.push(json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "resource": resource,
                "search": {"mode": mode},
            }));
        }
        if truncated {
            search.ignored.push(format!(
                "_include/_revinclude found more than {MAX_INCLUDED} resources; the first {MAX_INCLUDED} are included"
            ));
        }
    }
    if !search.ignored.is_empty() {
        let issues = search
            .ignored
            .iter()
            .map(|w| json!({"severity": "warning", "code": "not-supported", "diagnostics": w}))
            .collect();
        entries.push(json!({
            "resource": operation_outcome(issues),
            "search": {"mode": "outcome"},
        }));
    }
    bundle["link"] = json!(links);
    bundle["entry"] = json!(entries);
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}

/// The resources `_include` and `_revinclude` add to a page of matches (each once, none that
/// is already a match), and whether [`MAX_INCLUDED`] cut them short.
async fn include(
    state: &FhirState,
    instance: &InstanceName,
    includes: &[Include],
    matches: &[Version],
) -> Result<(Vec<Version>, bool), FhirError> {
    let mut have: HashSet<(String, String)> = matches
        .iter()
        .map(|v| (v.resource_type.clone(), v.id.clone()))
        .collect();
    let mut frontier: Vec<(String, String)> = have.iter().cloned().collect();
    let mut included = Vec::new();
    for round in 0..MAX_ROUNDS {
        let specs: Vec<&Include> = includes
            .iter()
            .filter(|i| round == 0 || i.iterate)
            .collect();
        if specs.is_empty() || frontier.is_empty() {
            break;
        }
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, id) in &frontier {
            by_type.entry(t.clone()).or_default().push(id.clone());
        }
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for spec in specs {
            if spec.reverse {
                for (t, ids) in &by_type {
                    let found = state
                        .store
                        .referrers_of(instance, &spec.source, spec.param.as_deref(), t, ids)
                        .await?;
                    wanted
                        .entry(spec.source.to_string())
                        .or_default()
                        .extend(found);
                }
            } else if let Some(ids) = by_type.get(spec.source.as_str()) {
                let target = spec.target.as_ref().map(|t| t.as_str());
                for (t, id) in state
                    .store
                    .references_of(instance, &spec.source, spec.param.as_deref(), ids, target)
                    .await?
                {
                    wanted.entry(t).or_default().insert(id);
                }
            }
        }
        frontier.clear();
        for (t, ids) in wanted {
            let Ok(rt) = t.parse::<ResourceType>() else {
                continue;
            };
            let ids: Vec<String> = ids
                .into_iter()
                .filter(|id| !have.contains(&(t.clone(), id.clone())))
                .collect();
            for v in state.store.read_many(instance, &rt, &ids).await? {
                if included.len() >= MAX_INCLUDED {
                    return Ok((included, true));
                }
                have.insert((v.resource_type.clone(), v.id.clone()));
                frontier.push((v.resource_type.clone(), v.id.clone()));
                included.push(v);
            }
        }
    }
    Ok((included, false))
}
