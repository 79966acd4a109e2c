//! fhir-svc over HTTP, as the pipeline needs it: find by identifier, read several by id,
//! PUT (optionally `If-Match`), alone or many in a batch bundle. Answers are sorted into
//! what the pipeline does about them: 5xx, 429, 408 and network failures are transient; 409
//! and 412 are a lost race (re-read and retry); any other 4xx is the FHIR service rejecting
//! the data, which waiting cannot cure.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::failure::{error_type, Failure, Stage};
use super::fhir_token::FhirTokens;

#[derive(Clone)]
pub struct FhirClient {
    http: reqwest::Client,
    /// Signs a bearer token for each call when authentication is on.
    tokens: Option<Arc<FhirTokens>>,
}

/// A FHIR service instance the pipeline writes to: its base URL (`{base}/{instance}`) and the
/// audience its tokens must carry (`None`: the service's own `auth.audience`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub audience: Option<String>,
}

/// How a call failed.
#[derive(Debug)]
pub enum CallError {
    /// Another writer came first (409, 412).
    Conflict,
    Failed(Failure),
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> Self {
        CallError::Failed(f)
    }
}

/// A written resource: whether the PUT created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub created: bool,
}

impl FhirClient {
    pub fn new(timeout: Duration, tokens: Option<Arc<FhirTokens>>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, tokens }
    }

    /// A request to `{endpoint}/{path}` (the service base when `path` is empty), with a bearer token when authentication is on.
    fn request(
        &self,
        method: Method,
        endpoint: &Endpoint,
        path: &str,
    ) -> Result<RequestBuilder, Failure> {
        let url = if path.is_empty() {
            endpoint.url.clone()
        } else {
            format!("{}/{path}", endpoint.url)
        };
        let req = self.http.request(method, url);
        match &self.tokens {
            None => Ok(req),
            Some(tokens) => {
                // Our own configuration, not the message's fault: retried, not dead-lettered.
                let token = tokens
                    .bearer(endpoint.audience.as_deref())
                    .map_err(|e| Failure::transient("FhirTokenUnavailable", e.to_string()))?;
                Ok(req.bearer_auth(token))
            }
        }
    }

    /// The resources whose identifier matches `identifier` (`value` or `system|value`).
    pub async fn find_by_identifier(
        &self,
        endpoint: &Endpoint,
        resource_type: &str,
        identifier: &str,
    ) -> Result<Vec<Value>, Failure> {
        let res = self
            .request(Method::GET, endpoint, resource_type)?
            .query(&[("identifier", identifier), ("_count", "2")])
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .map_err(network)?;
        let status = res.status();
        if !status.is_success() {
            return Err(rejected("search", resource_type, status, res).await);
        }
        let bundle: Value = res.json().await.map_err(network)?;
        Ok(resources_of(&bundle))
    }

    /// The current versions of the resources of `ids` that exist, found in one search
    /// (`POST {type}/_search` with `_id`, so that a hundred ids fit in no URL limit).
    pub async fn read_many(
        &self,
        endpoint: &Endpoint,
        resource_type: &str,
        ids: &[&str],
    ) -> Result<Vec<Value>, Failure> {
        let res = self
            .request(Method::POST, endpoint, &format!("{resource_type}/_search"))?
            .form(&[("_id", ids.join(",")), ("_count", ids.len().to_string())])
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .map_err(network)?;
        let status = res.status();
        if !status.is_success() {
            return Err(rejected("search", resource_type, status, res).await);
        }
        let bundle: Value = res.json().await.map_err(network)?;
        Ok(resources_of(&bundle))
    }

    /// Every write of `writes` in one batch bundle (entries succeed or fail on their own), each
    /// `PUT {type}/{id}`, conditional on its version ETag when it has one; the outcomes in
    /// the order of `writes`. A failure of the bundle as a whole fails every entry.
    pub async fn put_batch(
        &self,
        endpoint: &Endpoint,
        writes: &[(&Value, Option<&str>)],
    ) -> Result<Vec<Result<Written, CallError>>, Failure> {
        let entries: Vec<Value> = writes
            .iter()
            .map(|(resource, if_match)| {
                let url = format!(
                    "{}/{}",
                    resource["resourceType"].as_str().unwrap_or_default(),
                    resource["id"].as_str().unwrap_or_default()
                );
                let mut request = serde_json::json!({"method": "PUT", "url": url});
                if let Some(etag) = if_match {
                    request["ifMatch"] = Value::from(*etag);
                }
                serde_json::json!({"resource": resource, "request": request})
            })
            .collect();
        let bundle =
            serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
        let res = self
            .request(Method::POST, endpoint, "")?
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json")
            .header("Prefer", "return=minimal")
            .json(&bundle)
            .send()
            .await
            .map_err(network)?;
        let status = res.status();
        if !status.is_success() {
            return Err(rejected("batch", "Bundle", status, res).await);
        }
        let answer: Value = res.json().await.map_err(network)?;
        let answers = answer
            .get("entry")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if answers.len() != writes.len() {
            return Err(Failure::transient(
                "FhirServiceUnavailable",
                format!(
                    "the FHIR batch of {} writes answered {} entries",
                    writes.len(),
                    answers.len()
                ),
            ));
        }
        Ok(answers
            .iter()
            .zip(writes)
            .map(|(a, (resource, _))| entry_outcome(a, resource))
            .collect())
    }

    /// `PUT {endpoint}/{type}/{id}`, conditional on the version ETag when `if_match` is given.
    pub async fn put(
        &self,
        endpoint: &Endpoint,
        resource: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, CallError> {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut req = self
            .request(Method::PUT, endpoint, &format!("{resource_type}/{id}"))?
            .header("Content-Type", "application/fhir+json")
            .header("Prefer", "return=minimal")
            .json(resource);
        if let Some(etag) = if_match {
            req = req.header("If-Match", etag);
        }
        let res = req.send().await.map_err(network)?;
        let status = res.status();
        match status {
            StatusCode::CREATED => Ok(Written { created: true }),
            s if s.is_success() => Ok(Written { created: false }),
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => Err(CallError::Conflict),
            _ => Err(rejected("write", resource_type, status, res).await.into()),
        }
    }
}

/// The resources of a searchset's entries.
fn resources_of(bundle: &Value) -> Vec<Value> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.get("resource").cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a batch-response entry says about its write: sorted as [`FhirClient::put`] sorts the
/// status of a single PUT.
fn entry_outcome(answer: &Value, resource: &Value) -> Result<Written, CallError> {
    let response = answer.get("response");
    let status = response
        .and_then(|r| r.get("status"))
        .and_then(Value::as_str)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    match status {
        StatusCode::CREATED => Ok(Written { created: true }),
        s if s.is_success() => Ok(Written { created: false }),
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => Err(CallError::Conflict),
        _ => {
            let resource_type = resource["resourceType"].as_str().unwrap_or_default();
            let detail = response
                .and_then(|r| r.get("outcome"))
                .and_then(|o| outcome_text(&o.to_string()))
                .unwrap_or_default();
            Err(failure_of("write", resource_type, status, detail).into())
        }
    }
}

fn network(e: reqwest::Error) -> Failure {
    Failure::transient(
        "FhirServiceUnavailable",
        format!("the FHIR service cannot be reached: {e}"),
    )
}

/// A non-success answer, sorted by [`failure_of`].
async fn rejected(
    what: &str,
    resource_type: &str,
    status: StatusCode,
    res: reqwest::Response,
) -> Failure {
    let body = res.text().await.unwrap_or_default();
    let detail = outcome_text(&body).unwrap_or_else(|| body.chars().take(500).collect());
    failure_of(what, resource_type, status, detail)
}

/// An answer of `status` with `detail` (what the OperationOutcome said): transient for
/// 5xx/429/408, otherwise the data's (permanent).
fn failure_of(what: &str, resource_type: &str, status: StatusCode, detail: String) -> Failure {
    let message = format!("FHIR {what} of {resource_type} answered {status}: {detail}");
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Failure::transient("FhirServiceUnavailable", message)
    } else {
        Failure::permanent(
            Stage::FhirConversion,
            error_type::FHIR_RESOURCE,
            "FhirRequestRejected",
            message,
        )
    }
}

/// The diagnostics of an OperationOutcome, which say more than its status.
fn outcome_text(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let texts: Vec<&str> = v
        .get("issue")?
        .as_array()?
        .iter()
        .filter_map(|i| i.get("diagnostics").and_then(Value::as_str))
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}
