//! Who may use the management API: with auth on, a token from the configured issuer for the
//! configured audience, whose roles grant `Manage` (Owner, Contributor) for changes and
//! `ManageRead` (and Reader) for reads; a data-plane role grants neither. Refusals are ARM
//! error envelopes with `x-ms-request-id`. And `[management] retry_after_secs` is what
//! long-running answers carry.

mod common;

use std::time::Duration;

use common::{header, Backend, Stack};
use hds_core::auth::{AuthSettings, LocalKey, LOCAL_ISSUER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const AUDIENCE: &str = "https://management.test";

/// A request with `token` (if any); its status and ARM body.
async fn call(
    stack: &Stack,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = stack.http.request(method, stack.url(url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.unwrap();
    assert!(res.headers().contains_key("x-ms-request-id"), "{url}");
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn changes_need_an_administrative_role() {
    let keys = tempfile::tempdir().unwrap();
    let key = LocalKey::load_or_create(keys.path()).unwrap();
    let auth = AuthSettings {
        enabled: true,
        issuer: Some(LOCAL_ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        public_key_file: Some(key.public_key_file.clone()),
        ..AuthSettings::default()
    };
    let stack = Stack::control_plane_with(Backend::Embedded, |s| s.auth = auth).await;
    let token = |roles: &[&str], audience: &str| {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        key.mint("someone", audience, &roles, Duration::from_secs(600))
            .unwrap()
    };
    let ws = stack.workspace_url("authws");
    let list = ws.rsplit_once('/').unwrap().0.to_owned();
    let body = json!({"location": "westus2"});

    let (status, err) = call(&stack, Method::GET, &list, None, None).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["code"], "AuthenticationFailed");
    let (status, err) = call(
        &stack,
        Method::GET,
        &list,
        Some(&token(&["Owner"], "https://elsewhere")),
        None,
    )
    .await;
    assert_eq!(status, 401, "wrong audience: {err}");
    assert_eq!(err["error"]["code"], "InvalidAuthenticationToken");

    // A data-plane role is no management role, for reads or changes.
    let fhir_writer = token(&["FHIR Data Contributor"], AUDIENCE);
    for (method, body) in [(Method::GET, None), (Method::PUT, Some(&body))] {
        let (status, err) = call(&stack, method, &ws, Some(&fhir_writer), body).await;
        assert_eq!(status, 403, "{err}");
        assert_eq!(err["error"]["code"], "AuthorizationFailed");
    }
    // Reader reads, and may not change.
    let reader = token(&["Reader"], AUDIENCE);
    let (status, _) = call(&stack, Method::GET, &list, Some(&reader), None).await;
    assert_eq!(status, 200);
    let (status, err) = call(&stack, Method::PUT, &ws, Some(&reader), Some(&body)).await;
    assert_eq!(status, 403, "{err}");
    // Owner and Contributor change.
    for (role, name) in [("Owner", "authws"), ("Contributor", "authws2")] {
        let (status, created) = call(
            &stack,
            Method::PUT,
            &stack.workspace_url(name),
            Some(&token(&[role], AUDIENCE)),
            Some(&body),
        )
        .await;
        assert_eq!(status, 201, "{role}: {created}");
    }
    let (status, listed) = call(&stack, Method::GET, &list, Some(&reader), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["value"].as_array().unwrap().len(), 2, "{listed}");
    // The provider's operations list is public, as ARM's is.
    let ops = format!(
        "{}/providers/Microsoft.HealthcareApis/operations",
        stack.base
    );
    let (status, _) = call(&stack, Method::GET, &ops, None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn long_running_answers_carry_the_configured_retry_after() {
    let stack =
        Stack::control_plane_with(Backend::Embedded, |s| s.management.retry_after_secs = 7).await;
    let res = stack
        .send(
            Method::PUT,
            &format!("{}/fhirservices/fhir1", stack.workspace_url("retryws")),
            Some(&json!({"location": "westus2"})),
        )
        .await;
    // The workspace does not exist: a synchronous error, no Retry-After.
    assert_eq!(res.status(), 404);
    assert!(!res.headers().contains_key("retry-after"));
    let res = stack
        .send(
            Method::PUT,
            &stack.workspace_url("retryws"),
            Some(&json!({"location": "westus2"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = stack
        .send(
            Method::PUT,
            &format!("{}/fhirservices/fhir1", stack.workspace_url("retryws")),
            Some(&json!({"location": "westus2"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "retry-after"), "7");
    // No data plane runs here: the operation stays open and says when to ask again.
    let op = header(&res, "azure-asyncoperation");
    let open = stack.http.get(&op).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert_eq!(header(&open, "retry-after"), "7");
}
