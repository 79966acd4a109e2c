//! fhir-svc as a client sees it, on SQLite + the embedded bus and on PostgreSQL + Kafka.

mod common;

use std::time::Duration;

use common::{next_status, Env};
use hds_core::auth::{AuthSettings, LocalKey, LOCAL_ISSUER};
use hds_core::events::topics;
use hds_core::events::v1::{OperationKind, OperationState};
use hds_testkit::unique;

async fn health_and_metrics(env: Env) {
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(env.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = c.get(env.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "Healthy");
    assert_eq!(body["checks"]["bus"]["status"], "Healthy");
    let metrics = c
        .get(env.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total{"), "{metrics}");
    assert!(metrics.contains("route=\"/health/ready\""), "{metrics}");
    env.stop().await;
}

/// A provisioning command crosses the bus, is handled once however often it arrives, and its
/// status comes back; deleting the instance makes it unknown again.
async fn instances_come_and_go_by_command(env: Env) {
    let c = reqwest::Client::new();
    let mut statuses = env
        .bus
        .subscribe(&unique("g"), &[topics::OPERATIONS_STATUS])
        .await
        .unwrap();
    let unknown = c.get(env.url("/ws1-fhir/Patient/1")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let outcome: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("ws1-fhir"));

    let create = env
        .command(OperationKind::ProvisionInstance, "ws1-fhir")
        .await;
    env.publish(&create).await; // redelivered: must not be handled twice
    let status = next_status(&mut statuses).await;
    assert_eq!(status.operation_id, create.operation_id);
    assert_eq!(status.state, OperationState::Succeeded as i32);
    assert_eq!(status.reporter, "fhir-svc");

    let listed: serde_json::Value = c
        .get(env.url("/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["value"][0]["name"], "ws1-fhir");
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);

    // Data of every kind: resources and their versions and index rows, a custom search
    // parameter, a reindex job.
    let post = |path: &str, body: serde_json::Value| {
        c.post(env.url(&format!("/ws1-fhir{path}")))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };
    let p = post(
        "/Patient",
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "Gone"}]}),
    )
    .await
    .unwrap();
    assert_eq!(p.status(), 201);
    let sp = post(
        "/SearchParameter",
        serde_json::json!({"resourceType": "SearchParameter",
        "url": "http://example.org/sp/nick", "name": "Nick", "status": "active",
        "description": "d", "code": "nick", "base": ["Patient"], "type": "string",
        "expression": "Patient.name.given"}),
    )
    .await
    .unwrap();
    assert_eq!(sp.status(), 201);
    let job = post(
        "/$reindex",
        serde_json::json!({"resourceType": "Parameters"}),
    )
    .await
    .unwrap();
    assert_eq!(job.status(), 201);
    let db = env.deps.db.pool();
    let keys: Vec<i64> = sqlx::query_scalar("SELECT rkey FROM fhir_current WHERE instance = $1")
        .bind("ws1-fhir")
        .fetch_all(db)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    let keys = keys
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let leftovers = || async {
        let mut counts = Vec::new();
        for table in [
            "fhir_current",
            "fhir_versions",
            "fhir_search_params",
            "fhir_reindex_jobs",
        ] {
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE instance = 'ws1-fhir'"
            ))
            .fetch_one(db)
            .await
            .unwrap();
            counts.push((table.to_owned(), n));
        }
        for table in [
            "fhir_index_tokens",
            "fhir_index_strings",
            "fhir_index_references",
            "fhir_index_dates",
            "fhir_index_uris",
        ] {
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE rkey IN ({keys})"
            ))
            .fetch_one(db)
            .await
            .unwrap();
            counts.push((table.to_owned(), n));
        }
        counts
    };
    let before = leftovers().await;
    for table in [
        "fhir_current",
        "fhir_versions",
        "fhir_search_params",
        "fhir_reindex_jobs",
        "fhir_index_strings",
        "fhir_index_uris",
    ] {
        assert!(
            before.iter().any(|(t, n)| t == table && *n > 0),
            "{before:?}"
        );
    }

    let delete = env
        .command(OperationKind::DeprovisionInstance, "ws1-fhir")
        .await;
    let status = next_status(&mut statuses).await;
    assert_eq!(
        status.operation_id, delete.operation_id,
        "the duplicate was handled twice"
    );
    assert_eq!(status.state, OperationState::Succeeded as i32);
    let listed: serde_json::Value = c
        .get(env.url("/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["value"].as_array().unwrap().len(), 0);
    // Nothing of it is left.
    let left = leftovers().await;
    assert!(left.iter().all(|(_, n)| *n == 0), "{left:?}");
    statuses.close().await;
    env.stop().await;
}

macro_rules! service_suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn health_and_metrics() {
                super::health_and_metrics(super::Env::$backend().await).await
            }
            #[tokio::test]
            async fn instances_come_and_go_by_command() {
                super::instances_come_and_go_by_command(super::Env::$backend().await).await
            }
        }
    };
}

service_suite!(embedded);
service_suite!(kafka);

#[tokio::test]
async fn readiness_reports_an_unreachable_bus() {
    let mut env = Env::kafka().await;
    env._tansu.as_mut().unwrap().stop().await;
    let res = reqwest::get(env.url("/health/ready")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["bus"]["status"], "Unhealthy");
    assert_eq!(body["checks"]["database"]["status"], "Healthy");
    env.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_with_azure_roles() {
    let keys = tempfile::tempdir().unwrap();
    let key = LocalKey::load_or_create(keys.path()).unwrap();
    let auth = AuthSettings {
        enabled: true,
        issuer: Some(LOCAL_ISSUER.into()),
        audience: Some("https://fhir.test".into()),
        public_key_file: Some(key.public_key_file.clone()),
        ..AuthSettings::default()
    };
    let env = Env::embedded_with(auth).await;
    let c = reqwest::Client::new();
    let get = |token: Option<String>| {
        let mut r = c.get(env.url("/instances"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let ttl = Duration::from_secs(600);
    let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let missing = get(None).await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let outcome: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "login");

    let wrong_audience = key
        .mint("u", "https://other", &roles(&["FHIR Data Reader"]), ttl)
        .unwrap();
    assert_eq!(get(Some(wrong_audience)).await.unwrap().status(), 401);
    assert_eq!(get(Some("not.a.jwt".into())).await.unwrap().status(), 401);

    let no_role = key
        .mint(
            "u",
            "https://fhir.test",
            &roles(&["DICOM Data Reader2"]),
            ttl,
        )
        .unwrap();
    let forbidden = get(Some(no_role)).await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let outcome: serde_json::Value = forbidden.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "forbidden");

    let reader = key
        .mint("u", "https://fhir.test", &roles(&["FHIR Data Reader"]), ttl)
        .unwrap();
    assert_eq!(get(Some(reader)).await.unwrap().status(), 200);
    // Probes need no token.
    assert_eq!(
        c.get(env.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    env.stop().await;
}
