//! Settings that take effect: a FHIR service's `corsConfiguration` and
//! `resourceVersionPolicyConfiguration` and a DICOM service's `corsConfiguration` travel with
//! the provisioning command to fhir-svc and dicom-svc, which apply them to that instance; a
//! PUT with new settings applies them without a restart. A DICOM service's `serviceUrl` is
//! its working base URL. On PostgreSQL + Kafka (tansu) with the real data plane.

mod common;

use std::time::Duration;

use common::{header, Backend, Stack};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The longest a request to the data plane may take. Once (2026-12-07) a `put_patient` here
/// never returned, with the stack's servers gone; a timeout makes that a failure that says
/// where, instead of a suite that hangs until CI's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// PUT, then follow the operation to its end; returns the final resource.
async fn put_and_wait(stack: &Stack, url: &str, body: &Value, expected: u16) -> Value {
    let res = stack.send(Method::PUT, url, Some(body)).await;
    assert_eq!(res.status(), expected, "{url}");
    let done = stack.wait(&header(&res, "azure-asyncoperation")).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let (status, got) = stack.json(Method::GET, url, None).await;
    assert_eq!(status, 200);
    got
}

async fn preflight(url: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, url)
        .timeout(REQUEST_TIMEOUT)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .unwrap()
}

fn allowed_origin(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn put_patient(base: &str, if_match: Option<&str>) -> StatusCode {
    let mut req = reqwest::Client::new()
        .put(format!("{base}/Patient/p1"))
        .timeout(REQUEST_TIMEOUT)
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "p1"}).to_string());
    if let Some(m) = if_match {
        req = req.header("If-Match", m);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn fhir_service_settings_reach_fhir_svc() {
    let stack = Stack::with_data_plane(Backend::Kafka).await;
    let ws = stack.workspace_url("setws");
    put_and_wait(&stack, &ws, &json!({"location": "westus2"}), 201).await;
    let url = format!("{ws}/fhirservices/fhir1");
    let settings = |origin: &str, policy: &str| {
        json!({"location": "westus2", "kind": "fhir-R4", "properties": {
            "corsConfiguration": {"origins": [origin], "headers": ["content-type"],
                "methods": ["GET", "PUT"], "maxAge": 300, "allowCredentials": false},
            "resourceVersionPolicyConfiguration": {"default": policy}}})
    };
    let fhir = put_and_wait(
        &stack,
        &url,
        &settings("https://one.example.org", "versioned-update"),
        201,
    )
    .await;
    assert_eq!(
        fhir["properties"]["corsConfiguration"]["maxAge"], 300,
        "{fhir}"
    );
    let base = format!("{}/setws-fhir1", stack.fhir.as_ref().unwrap());

    let res = preflight(&format!("{base}/Patient/p1"), "https://one.example.org").await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        allowed_origin(&res).as_deref(),
        Some("https://one.example.org")
    );
    assert_eq!(header(&res, "access-control-max-age"), "300");
    assert_eq!(put_patient(&base, None).await, StatusCode::CREATED);
    assert_eq!(
        put_patient(&base, None).await,
        StatusCode::PRECONDITION_FAILED
    );

    // PUT again with other settings: applied once the operation succeeded.
    put_and_wait(
        &stack,
        &url,
        &settings("https://two.example.org", "versioned"),
        200,
    )
    .await;
    let old = preflight(&format!("{base}/Patient/p1"), "https://one.example.org").await;
    assert_eq!(allowed_origin(&old), None);
    let new = preflight(&format!("{base}/Patient/p1"), "https://two.example.org").await;
    assert_eq!(
        allowed_origin(&new).as_deref(),
        Some("https://two.example.org")
    );
    assert_eq!(put_patient(&base, None).await, StatusCode::OK);
}

#[tokio::test]
async fn dicom_service_url_works_and_cors_applies() {
    let stack = Stack::with_data_plane(Backend::Kafka).await;
    let ws = stack.workspace_url("dcmws");
    put_and_wait(&stack, &ws, &json!({"location": "westus2"}), 201).await;
    let url = format!("{ws}/dicomservices/dicom1");
    let origin = "https://viewer.example.org";
    let dicom = put_and_wait(
        &stack,
        &url,
        &json!({"location": "westus2", "properties": {"corsConfiguration": {
            "origins": [origin], "headers": ["*"], "methods": ["GET"], "maxAge": 60,
            "allowCredentials": true}}}),
        201,
    )
    .await;
    let service_url = dicom["properties"]["serviceUrl"].as_str().unwrap();
    assert_eq!(
        service_url,
        format!("{}/dcmws-dicom1", stack.dicom.as_ref().unwrap())
    );
    // In lists too.
    let (_, list) = stack
        .json(Method::GET, &format!("{ws}/dicomservices"), None)
        .await;
    assert_eq!(list["value"][0]["properties"]["serviceUrl"], service_url);

    // The URL serves the instance: an empty study search.
    let search = reqwest::Client::new()
        .get(format!("{service_url}/v2/studies"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 204);
    assert_eq!(allowed_origin(&search).as_deref(), Some(origin));
    assert_eq!(header(&search, "access-control-allow-credentials"), "true");

    let res = reqwest::Client::new()
        .request(Method::OPTIONS, format!("{service_url}/v2/studies"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(allowed_origin(&res).as_deref(), Some(origin));
    assert_eq!(header(&res, "access-control-allow-methods"), "GET");
    assert_eq!(
        header(&res, "access-control-allow-headers"),
        "authorization"
    );
    assert_eq!(header(&res, "access-control-max-age"), "60");
    let refused = preflight(&format!("{service_url}/v2/studies"), origin).await;
    assert_eq!(
        allowed_origin(&refused),
        None,
        "PUT is not an allowed method"
    );

    // Without CORS after a new PUT: nothing.
    put_and_wait(&stack, &url, &json!({"location": "westus2"}), 200).await;
    let search = reqwest::Client::new()
        .get(format!("{service_url}/v2/studies"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 204);
    assert_eq!(allowed_origin(&search), None);
}
