//! history: `GET [base]/_history`, `[base]/[type]/_history`, `[base]/[type]/[id]/_history`
//! — versions newest first as a `history` Bundle, with `_since`, `_count` and a `next` link
//! whose opaque `ct` continues after the last entry (stable while others write).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use hds_core::auth::Permission;
use serde::Deserialize;
use serde_json::json;

use super::FhirCaller;
use crate::domain::{etag, instant};
use crate::error::FhirError;
use crate::http::{base_url, resource_id, resource_type, FhirState, Instance, FHIR_JSON};
use crate::store::{HistoryScope, Method, Version};

pub const DEFAULT_COUNT: i64 = 10;
pub const MAX_COUNT: i64 = 1000;

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(rename = "_since")]
    since: Option<String>,
    #[serde(rename = "_count")]
    count: Option<String>,
    ct: Option<String>,
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, FhirError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(FhirError::invalid(format!(
        "_since '{s}' is not an instant such as 2024-01-31T12:00:00Z"
    )))
}

pub async fn system(
    req: HttpRequest,
    caller: FhirCaller,
    instance: Instance,
    query: web::Query<HistoryQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    history(req, caller, instance, HistoryScope::System, query, state).await
}

pub async fn of_type(
    req: HttpRequest,
    caller: FhirCaller,
    instance: Instance,
    path: web::Path<(String, String)>,
    query: web::Query<HistoryQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    let scope = HistoryScope::Type(resource_type(&path.1)?);
    history(req, caller, instance, scope, query, state).await
}

pub async fn of_instance(
    req: HttpRequest,
    caller: FhirCaller,
    instance: Instance,
    path: web::Path<(String, String, String)>,
    query: web::Query<HistoryQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    let scope = HistoryScope::Instance(resource_type(&path.1)?, resource_id(&path.2)?);
    history(req, caller, instance, scope, query, state).await
}

async fn history(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    scope: HistoryScope,
    query: web::Query<HistoryQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Read)?;
    let since = query.since.as_deref().map(parse_since).transpose()?;
    let count = match query.count.as_deref() {
        None => DEFAULT_COUNT,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| {
                FhirError::invalid(format!("_count '{c}' is not a non-negative integer"))
            })?
            .min(MAX_COUNT),
    };
    let before = match query.ct.as_deref() {
        None => None,
        Some(ct) => Some(ct.parse::<i64>().map_err(|_| {
            FhirError::invalid("the continuation token 'ct' is not one this server issued")
        })?),
    };
    if let HistoryScope::Instance(rt, id) = &scope {
        if state.store.read(&instance, rt, id).await?.is_none() {
            return Err(FhirError::ResourceNotFound {
                resource_type: rt.to_string(),
                id: id.to_string(),
            });
        }
    }
    let page = state
        .store
        .history(&instance, &scope, since, before, count)
        .await?;

    let base = base_url(&req, &state, &instance);
    let path = req.path().to_owned();
    let root = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(r, _)| r)
        .to_owned();
    let mut params: Vec<String> = Vec::new();
    if let Some(s) = &query.since {
        params.push(format!("_since={}", urlencode(s)));
    }
    params.push(format!("_count={count}"));
    let self_url = format!("{root}{path}?{}", params.join("&"));
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(next) = page.next {
        links.push(json!({
            "relation": "next",
            "url": format!("{root}{path}?{}&ct={next}", params.join("&")),
        }));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant(Utc::now())},
        "type": "history",
        "link": links,
        "entry": page.versions.iter().map(|v| entry(&base, v)).collect::<Vec<_>>(),
    });
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}

fn entry(base: &str, v: &Version) -> serde_json::Value {
    let url = format!("{}/{}", v.resource_type, v.id);
    let status = match (v.method, v.version) {
        (Method::Delete, _) => "204",
        (_, 1) => "201",
        _ => "200",
    };
    let mut e = json!({
        "fullUrl": format!("{base}/{url}"),
        "request": {"method": v.method.as_str(), "url": url},
        "response": {"status": status, "etag": etag(v.version), "lastModified": instant(v.last_updated)},
    });
    if let Some(body) = &v.body {
        e["resource"] = body.clone();
    }
    e
}

fn urlencode(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' | ':' => c.to_string(),
            c => c.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
        })
        .collect()
}
