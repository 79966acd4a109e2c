//! search: `GET [base]/[type]?[parameters]` and `POST [base]/[type]/_search` (R4
//! search.html): a `searchset` Bundle of the current resources matching every parameter, a
//! page at a time.
//!
//! Parameters the server does not know or cannot apply are ignored and reported in an
//! OperationOutcome entry (`search.mode` = `outcome`), as the spec allows; with
//! `Prefer: handling=strict` they are a 400. Matches come in id order and `next` carries the
//! last id as its continuation token: keyset paging, so pages stay stable while others
//! write. `_count` (default 10, at most `[fhir] max_search_count`), `_summary=count` and
//! `_total` are the result parameters applied so far.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::{json, Value};

use super::FhirCaller;
use crate::domain::{instant, ResourceType};
use crate::error::{operation_outcome, FhirError};
use crate::http::{base_url, read_body, resource_type, FhirState, Instance, FHIR_JSON};
use crate::search::query::{self, Condition};

const DEFAULT_COUNT: usize = 10;
/// The continuation token's parameter in `next` links.
const CONTINUATION: &str = "ct";

/// A search as asked: what selects, what shapes the result, and what was ignored.
struct Search {
    conditions: Vec<Condition>,
    count: usize,
    after: Option<String>,
    summary_count: bool,
    total: bool,
    /// The parameters applied, to repeat in `self` and `next` links.
    applied: Vec<(String, String)>,
    ignored: Vec<String>,
}

impl Search {
    fn parse(
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
            applied: Vec::new(),
            ignored: Vec::new(),
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (key, value) = (key.into_owned(), value.into_owned());
            let outcome: Result<(), FhirError> = match key.as_str() {
                CONTINUATION => {
                    s.after = Some(value.clone());
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
                "_summary" if value == "count" => {
                    s.summary_count = true;
                    Ok(())
                }
                "_summary" if value == "false" => Ok(()),
                "_total" => match value.as_str() {
                    "accurate" => {
                        s.total = true;
                        Ok(())
                    }
                    "none" | "estimate" => Ok(()),
                    other => Err(FhirError::invalid(format!(
                        "_total must be none, estimate or accurate, not '{other}'"
                    ))),
                },
                k if query::is_result_param(k) => Err(FhirError::invalid(format!(
                    "'{k}={value}' is not supported yet"
                ))),
                _ => query::parse_one(rt, &key, &value).map(|c| s.conditions.extend(c)),
            };
            match outcome {
                Ok(()) => s.applied.push((key, value)),
                Err(e) if strict => return Err(e),
                Err(e) => s.ignored.push(describe(&e)),
            }
        }
        Ok(s)
    }

    fn link(&self, base: &str, rt: &ResourceType, after: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.applied {
            q.append_pair(k, v);
        }
        if let Some(a) = after {
            q.append_pair(CONTINUATION, a);
        }
        let q = q.finish();
        if q.is_empty() {
            format!("{base}/{rt}")
        } else {
            format!("{base}/{rt}?{q}")
        }
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
    run(&req, &state, &instance, &rt, req.query_string()).await
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
    let raw = read_body(body, state.max_body_bytes).await?;
    let body = String::from_utf8(raw.to_vec())
        .map_err(|_| FhirError::invalid("the form body is not UTF-8"))?;
    let query = [req.query_string(), body.as_str()]
        .iter()
        .filter(|q| !q.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("&");
    run(&req, &state, &instance, &rt, &query).await
}

async fn run(
    req: &HttpRequest,
    state: &FhirState,
    instance: &InstanceName,
    rt: &ResourceType,
    query: &str,
) -> Result<HttpResponse, FhirError> {
    let search = Search::parse(rt, query, strict(req), state.max_search_count)?;
    let base = base_url(req, state, instance);
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
    let mut links =
        vec![json!({"relation": "self", "url": search.link(&base, rt, search.after.as_deref())})];
    let mut entries: Vec<Value> = Vec::new();
    if !search.summary_count && search.count > 0 {
        // One more than a page tells whether there is a next one.
        let mut ids = state
            .store
            .search_page(
                instance,
                rt,
                &search.conditions,
                search.after.as_deref(),
                search.count as i64 + 1,
            )
            .await?;
        let more = ids.len() > search.count;
        ids.truncate(search.count);
        if more {
            if let Some(last) = ids.last() {
                links.push(json!({"relation": "next", "url": search.link(&base, rt, Some(last))}));
            }
        }
        for v in state.store.read_many(instance, rt, &ids).await? {
            entries.push(json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "resource": v.body,
                "search": {"mode": "match"},
            }));
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
