//! The settings a FHIR service's ARM `properties` carry, applied per instance by fhir-svc on
//! PostgreSQL + Kafka (tansu): `corsConfiguration`, `authenticationConfiguration` and
//! `resourceVersionPolicyConfiguration`. Each arrives with a provisioning command and takes
//! effect, without a restart, once fhir-svc reported the command handled.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Env;
use fhir_svc::Deps;
use hds_core::auth::{AuthSettings, LocalKey, LOCAL_ISSUER};
use hds_core::bus::kafka::KafkaBus;
use hds_core::bus::SharedBus;
use hds_testkit::Tansu;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Provisions (or re-provisions) `instance` with these ARM `properties`; they apply from
/// when this returns.
async fn provision(env: &Env, instance: &str, properties: Value) {
    env.provision_with(instance, &properties).await
}

/// PostgreSQL + tansu with these auth settings.
async fn kafka_with(auth: AuthSettings) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start().await;
    let bus: SharedBus = Arc::new(KafkaBus::new(&tansu.settings()).unwrap());
    let db = hds_testkit::pg_database("fhir").await;
    Env::start(Deps { db, bus }, auth, Some(tansu), dir).await
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn preflight(env: &Env, path: &str, origin: &str, method: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, env.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_applied_per_instance_as_configured() {
    let env = Env::kafka().await;
    let app = "https://app.example.org";
    provision(
        &env,
        "ws1-cors",
        json!({"corsConfiguration": {
            "origins": [app], "headers": ["Content-Type", "Authorization"],
            "methods": ["GET", "PUT"], "maxAge": 600, "allowCredentials": true
        }}),
    )
    .await;
    provision(&env, "ws1-plain", json!({})).await;

    let res = preflight(&env, "/ws1-cors/Patient/p1", app, "PUT").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some(app)
    );
    assert_eq!(
        header(&res, "access-control-allow-methods").as_deref(),
        Some("GET,PUT")
    );
    assert_eq!(
        header(&res, "access-control-allow-headers").as_deref(),
        Some("Content-Type,Authorization")
    );
    assert_eq!(
        header(&res, "access-control-max-age").as_deref(),
        Some("600")
    );
    assert_eq!(
        header(&res, "access-control-allow-credentials").as_deref(),
        Some("true")
    );

    // Not allowed: another origin, or a method not listed. A refusal carries no CORS headers.
    for (origin, method) in [("https://evil.example.org", "PUT"), (app, "DELETE")] {
        let res = preflight(&env, "/ws1-cors/Patient/p1", origin, method).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header(&res, "access-control-allow-origin"),
            None,
            "{origin} {method}"
        );
    }

    // Actual requests, successful or not, carry the headers for an allowed origin.
    let c = reqwest::Client::new();
    for (path, status) in [
        ("/ws1-cors/Patient", StatusCode::OK),
        ("/ws1-cors/Patient/missing", StatusCode::NOT_FOUND),
    ] {
        let res = c
            .get(env.url(path))
            .header("Origin", app)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(
            header(&res, "access-control-allow-origin").as_deref(),
            Some(app),
            "{path}"
        );
        assert_eq!(
            header(&res, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(header(&res, "vary").as_deref(), Some("Origin"));
    }
    let other = c
        .get(env.url("/ws1-cors/Patient"))
        .header("Origin", "https://evil.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    // An instance without CORS: no preflight answer, no headers.
    let res = preflight(&env, "/ws1-plain/Patient/p1", app, "PUT").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    let res = c
        .get(env.url("/ws1-plain/Patient"))
        .header("Origin", app)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), None);

    // A new configuration applies once handled, without a restart.
    provision(
        &env,
        "ws1-cors",
        json!({"corsConfiguration": {"origins": ["*"], "headers": ["*"], "methods": ["*"]}}),
    )
    .await;
    let res = preflight(
        &env,
        "/ws1-cors/Patient/p1",
        "https://evil.example.org",
        "DELETE",
    )
    .await;
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        header(&res, "access-control-allow-methods").as_deref(),
        Some("DELETE")
    );
    assert_eq!(header(&res, "access-control-max-age"), None);
    assert_eq!(header(&res, "access-control-allow-credentials"), None);
    env.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_against_the_instance_authority_and_audience() {
    let keys = tempfile::tempdir().unwrap();
    let key = LocalKey::load_or_create(keys.path()).unwrap();
    let env = kafka_with(AuthSettings {
        enabled: true,
        issuer: Some(LOCAL_ISSUER.into()),
        audience: Some("https://fhir.test".into()),
        public_key_file: Some(key.public_key_file.clone()),
        ..AuthSettings::default()
    })
    .await;
    let own_audience = "https://ws1-own.fhir.test";
    // The authority as Azure shows it may end in '/', the token's issuer not.
    provision(
        &env,
        "ws1-own",
        json!({"authenticationConfiguration": {"authority": format!("{LOCAL_ISSUER}/"), "audience": own_audience}}),
    )
    .await;
    provision(&env, "ws1-default", json!({})).await;

    let token = |aud: &str| {
        key.mint(
            "u",
            aud,
            &["FHIR Data Reader".to_string()],
            Duration::from_secs(600),
        )
        .unwrap()
    };
    let c = reqwest::Client::new();
    let status = |instance: &str, token: String| {
        let req = c
            .get(env.url(&format!("/{instance}/Patient")))
            .bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status("ws1-own", token(own_audience)).await, StatusCode::OK);
    assert_eq!(
        status("ws1-own", token("https://fhir.test")).await,
        StatusCode::UNAUTHORIZED,
        "the service's audience is not the instance's"
    );
    assert_eq!(
        status("ws1-default", token("https://fhir.test")).await,
        StatusCode::OK
    );
    assert_eq!(
        status("ws1-default", token(own_audience)).await,
        StatusCode::UNAUTHORIZED
    );

    // Another authority: the same token (issuer hds-local) no longer passes.
    provision(
        &env,
        "ws1-own",
        json!({"authenticationConfiguration": {"authority": "https://login.example.org/tenant", "audience": own_audience}}),
    )
    .await;
    let refused = c
        .get(env.url("/ws1-own/Patient"))
        .bearer_auth(token(own_audience))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "login");

    // Without a configuration the service's settings apply again.
    provision(&env, "ws1-own", json!({})).await;
    assert_eq!(
        status("ws1-own", token("https://fhir.test")).await,
        StatusCode::OK
    );
    env.stop().await;
}

async fn put(env: &Env, path: &str, body: &Value, if_match: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .put(env.url(path))
        .header("Content-Type", "application/fhir+json")
        .body(body.to_string());
    if let Some(m) = if_match {
        req = req.header("If-Match", m);
    }
    req.send().await.unwrap()
}

async fn json_patch(env: &Env, path: &str, if_match: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .patch(env.url(path))
        .header("Content-Type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/active", "value": false}]).to_string());
    if let Some(m) = if_match {
        req = req.header("If-Match", m);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn versioned_update_requires_if_match_on_existing_resources() {
    let env = Env::kafka().await;
    provision(
        &env,
        "ws1-vupd",
        json!({"resourceVersionPolicyConfiguration": {
            "default": "versioned",
            "resourceTypeOverrides": {"Patient": "versioned-update"}
        }}),
    )
    .await;
    let patient = json!({"resourceType": "Patient", "id": "p1", "active": true,
        "identifier": [{"system": "urn:test", "value": "p1"}]});

    // Creating needs no version.
    assert_eq!(
        put(&env, "/ws1-vupd/Patient/p1", &patient, None)
            .await
            .status(),
        StatusCode::CREATED
    );
    let refused = put(&env, "/ws1-vupd/Patient/p1", &patient, None).await;
    assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(
        outcome["issue"][0]["diagnostics"],
        "An If-Match header is required for updates on resource type 'Patient'."
    );
    let updated = put(&env, "/ws1-vupd/Patient/p1", &patient, Some("W/\"1\"")).await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(header(&updated, "etag").as_deref(), Some("W/\"2\""));

    // Patch and conditional update too.
    assert_eq!(
        json_patch(&env, "/ws1-vupd/Patient/p1", None)
            .await
            .status(),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        json_patch(&env, "/ws1-vupd/Patient/p1", Some("W/\"2\""))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        put(
            &env,
            "/ws1-vupd/Patient?identifier=urn:test|p1",
            &patient,
            None
        )
        .await
        .status(),
        StatusCode::PRECONDITION_FAILED
    );

    // Inside bundles too: a batch entry fails alone, a transaction fails whole.
    let entry = |if_match: Option<&str>| {
        let mut request = json!({"method": "PUT", "url": "Patient/p1"});
        if let Some(v) = if_match {
            request["ifMatch"] = json!(v);
        }
        json!({"resource": patient, "request": request})
    };
    let client = reqwest::Client::new();
    let post_bundle = |kind: &str, entries: Vec<Value>| {
        client
            .post(env.url("/ws1-vupd"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Bundle", "type": kind, "entry": entries}).to_string())
            .send()
    };
    let batch: Value = post_bundle("batch", vec![entry(None), entry(Some("W/\"3\""))])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        batch["entry"][0]["response"]["status"],
        "412 Precondition Failed"
    );
    assert_eq!(batch["entry"][1]["response"]["status"], "200 OK");
    let transaction = post_bundle("transaction", vec![entry(None)]).await.unwrap();
    assert_eq!(transaction.status(), StatusCode::PRECONDITION_FAILED);

    // Other types keep the default policy.
    let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "x"}});
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        assert_eq!(
            put(&env, "/ws1-vupd/Observation/o1", &obs, None)
                .await
                .status(),
            expected
        );
    }

    // Back to `versioned`: no version needed any more.
    provision(
        &env,
        "ws1-vupd",
        json!({"resourceVersionPolicyConfiguration": {"default": "versioned"}}),
    )
    .await;
    let res = put(&env, "/ws1-vupd/Patient/p1", &patient, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "etag").as_deref(), Some("W/\"5\""));
    env.stop().await;
}

/// The versions of a resource its `_history` lists, newest first.
async fn history_versions(env: &Env, path: &str) -> Vec<String> {
    let bundle: Value = reqwest::get(env.url(&format!("{path}/_history")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let request = &e["request"]["method"];
                    let version = e["response"]["etag"].as_str().unwrap_or_default();
                    format!("{} {version}", request.as_str().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn status_of(env: &Env, path: &str) -> StatusCode {
    reqwest::get(env.url(path)).await.unwrap().status()
}

#[tokio::test]
async fn no_version_keeps_only_the_current_version() {
    let env = Env::kafka().await;
    provision(
        &env,
        "ws1-nover",
        json!({"resourceVersionPolicyConfiguration": {
            "default": "versioned",
            "resourceTypeOverrides": {"Patient": "no-version"}
        }}),
    )
    .await;
    let patient = json!({"resourceType": "Patient", "id": "p1", "active": true});
    let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "x"}});
    for _ in 0..2 {
        put(&env, "/ws1-nover/Patient/p1", &patient, None).await;
        put(&env, "/ws1-nover/Observation/o1", &obs, None).await;
    }

    // The version still counts up, but the replaced one is gone.
    assert_eq!(
        history_versions(&env, "/ws1-nover/Patient/p1").await,
        ["PUT W/\"2\""]
    );
    assert_eq!(
        status_of(&env, "/ws1-nover/Patient/p1/_history/1").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&env, "/ws1-nover/Patient/p1/_history/2").await,
        StatusCode::OK
    );
    // Other types keep their history.
    assert_eq!(
        history_versions(&env, "/ws1-nover/Observation/o1").await,
        ["PUT W/\"2\"", "PUT W/\"1\""]
    );

    // Patch, a transaction entry and delete drop what they replace as well.
    assert_eq!(
        json_patch(&env, "/ws1-nover/Patient/p1", None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        history_versions(&env, "/ws1-nover/Patient/p1").await,
        ["PATCH W/\"3\""]
    );
    let transaction = reqwest::Client::new()
        .post(env.url("/ws1-nover"))
        .header("content-type", "application/fhir+json")
        .body(
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": patient, "request": {"method": "PUT", "url": "Patient/p1"}}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(transaction.status(), StatusCode::OK);
    assert_eq!(
        history_versions(&env, "/ws1-nover/Patient/p1").await,
        ["PUT W/\"4\""]
    );
    let deleted = reqwest::Client::new()
        .delete(env.url("/ws1-nover/Patient/p1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        history_versions(&env, "/ws1-nover/Patient/p1").await,
        ["DELETE W/\"5\""]
    );
    assert_eq!(
        status_of(&env, "/ws1-nover/Patient/p1").await,
        StatusCode::GONE
    );
    env.stop().await;
}
