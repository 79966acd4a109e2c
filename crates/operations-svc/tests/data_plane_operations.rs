//! One operation record for everything (issue 6, point 5): fhir-svc's `$export` and
//! `$reindex` jobs report their lifecycle on `hds.operations.status`, and operations-svc
//! serves each job as an operation at `.../operationresults/{job id}`: created on the first
//! report, moved on by the others, never reopened once finished. On SQLite + the embedded
//! bus and on PostgreSQL + Kafka (tansu), with the real fhir-svc.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{header, Backend, Stack, SUB};
use hds_core::db::Database;
use hds_core::events::v1::{OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, to_message, topics};
use operations_svc::operations::{
    self, NewOperation, OperationKind as Kind, OperationStatus as Status, Report,
};
use reqwest::Method;
use serde_json::{json, Value};

const LOCATION: &str = "westus2";

/// A workspace `ws1` and a FHIR service `fhir1` in it (its operation done when the data
/// plane runs); returns the service's ARM id and its URL.
async fn fhir_service(stack: &Stack, properties: Value, wait: bool) -> (String, String) {
    let ws = stack.workspace_url("ws1");
    let res = stack
        .send(Method::PUT, &ws, Some(&json!({"location": LOCATION})))
        .await;
    assert_eq!(res.status(), 201);
    let url = format!("{ws}/fhirservices/fhir1");
    let res = stack
        .send(
            Method::PUT,
            &url,
            Some(&json!({"location": LOCATION, "kind": "fhir-R4", "properties": properties})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let operation = header(&res, "azure-asyncoperation");
    let body: Value = res.json().await.unwrap();
    if wait {
        let done = stack.wait(&operation).await;
        assert_eq!(done["status"], "Succeeded", "{done}");
    }
    (body["id"].as_str().unwrap().to_owned(), url)
}

/// The operation result's URL, without api-version (`Stack::json` adds it).
fn result_url(stack: &Stack, id: &str) -> String {
    format!(
        "{}/subscriptions/{SUB}/providers/Microsoft.HealthcareApis/locations/{LOCATION}/operationresults/{id}",
        stack.base
    )
}

/// Polls the operation result of `id` until `done` holds for it (404 while operations-svc
/// has not seen the job yet); a bound, not a timing assumption: the reports cross the bus.
async fn result_until(stack: &Stack, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let url = stack.url(&result_url(stack, id));
        let res = stack.http.get(url).send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        match status {
            200 if done(&body) => return body,
            200 => {}
            404 => assert_eq!(body["error"]["code"], "OperationNotFound", "{body}"),
            other => panic!("{other}: {body}"),
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("operation {id} did not get there; last answer: {last}");
}

fn terminal(body: &Value) -> bool {
    matches!(
        body["status"].as_str(),
        Some("Succeeded" | "Failed" | "Canceled")
    )
}

fn time(body: &Value, member: &str) -> DateTime<Utc> {
    let text = body[member]
        .as_str()
        .unwrap_or_else(|| panic!("no {member}: {body}"));
    DateTime::parse_from_rfc3339(text).unwrap().into()
}

/// The job id at the end of a fhir-svc status URL.
fn job_id(status_url: &str) -> String {
    status_url.rsplit('/').next().unwrap().to_owned()
}

async fn put_patients(stack: &Stack, fhir: &str, n: usize) {
    for i in 0..n {
        let res = stack
            .http
            .put(format!("{fhir}/ws1-fhir1/Patient/p{i}"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient", "id": format!("p{i}")}).to_string())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }
}

async fn an_export_job_is_an_operation_that_succeeds(backend: Backend) {
    let stack = Stack::with_data_plane(backend).await;
    let fhir = stack.fhir.clone().unwrap();
    let (_, service_url) = fhir_service(
        &stack,
        json!({"exportConfiguration": {"storageAccountName": "acct1"}}),
        true,
    )
    .await;
    put_patients(&stack, &fhir, 3).await;
    let kicked_off = Utc::now();

    let res = stack
        .http
        .get(format!("{fhir}/ws1-fhir1/$export"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let status_url = header(&res, "content-location");
    let id = job_id(&status_url);

    let op = result_until(&stack, &id, terminal).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    assert_eq!(op["name"], id.as_str());
    assert!(op["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/locations/{LOCATION}/operationresults/{id}")));
    assert!(op.get("error").is_none(), "{op}");
    // The job's own times (fhir-svc's clock), not when operations-svc heard of it.
    let (start, end) = (time(&op, "startTime"), time(&op, "endTime"));
    assert!(start <= end, "{op}");
    assert!(
        start >= kicked_off - chrono::Duration::seconds(5),
        "{start} vs {kicked_off}"
    );
    // What the job wrote, as the manifest counts it.
    assert_eq!(op["properties"]["output"][0]["type"], "Patient", "{op}");
    assert_eq!(op["properties"]["output"][0]["count"], 3, "{op}");
    assert!(op["properties"]["transactionTime"].is_string(), "{op}");

    // fhir-svc's own status URL answers as before: the manifest.
    let res = stack.http.get(&status_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let manifest: Value = res.json().await.unwrap();
    assert_eq!(manifest["output"][0]["count"], 3, "{manifest}");

    // The job is no change of the FHIR service: it stays as it was, free for a change.
    let (status, service) = stack.json(Method::GET, &service_url, None).await;
    assert_eq!(status, 200);
    assert_eq!(service["properties"]["provisioningState"], "Succeeded");
    let res = stack
        .send(
            Method::PUT,
            &service_url,
            Some(&json!({"location": LOCATION, "kind": "fhir-R4", "properties": {"exportConfiguration": {"storageAccountName": "acct1"}}})),
        )
        .await;
    assert_eq!(res.status(), 200, "a job must leave no active operation");
}

async fn a_failed_reindex_job_is_a_failed_operation(backend: Backend) {
    let stack = Stack::with_data_plane(backend).await;
    let fhir = stack.fhir.clone().unwrap();
    fhir_service(&stack, json!({}), true).await;
    put_patients(&stack, &fhir, 2).await;
    // A stored version that is not JSON any more: the reindex cannot go on (a job failure,
    // not a transient one), which no request through the API could cause.
    sqlx::query("UPDATE fhir_versions SET body = 'not json' WHERE instance = $1 AND id = $2")
        .bind("ws1-fhir1")
        .bind("p1")
        .execute(stack.fhir_db.as_ref().unwrap().pool())
        .await
        .unwrap();

    let res = stack
        .http
        .post(format!("{fhir}/ws1-fhir1/$reindex"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let status_url = header(&res, "content-location");
    let id = job_id(&status_url);

    let op = result_until(&stack, &id, terminal).await;
    assert_eq!(op["status"], "Failed", "{op}");
    assert_eq!(op["error"]["code"], "ReindexFailed", "{op}");
    let message = op["error"]["message"].as_str().unwrap();
    assert!(message.contains("is not JSON"), "{message}");
    assert!(time(&op, "startTime") <= time(&op, "endTime"), "{op}");
    assert_eq!(op["properties"]["totalResourcesToReindex"], 2, "{op}");

    // fhir-svc's own status says the same, as before.
    let res = stack.http.get(&status_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let job: Value = res.json().await.unwrap();
    let param = |name: &str| {
        job["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(param("status")["valueString"], "Failed", "{job}");
    assert_eq!(param("error")["valueString"], message, "{job}");
}

/// A report as fhir-svc sends one, published under `key` (the partition: reports of one key
/// are handled in order, which makes a later report a barrier for the earlier ones).
async fn report(stack: &Stack, key: &str, status: OperationStatus) {
    stack
        .bus
        .publish(topics::OPERATIONS_STATUS, to_message(&status, key))
        .await
        .unwrap();
}

fn job_report(
    id: &str,
    resource_id: &str,
    state: OperationState,
    percent: i32,
    at: i64,
) -> OperationStatus {
    OperationStatus {
        event_id: new_event_id(),
        operation_id: id.into(),
        resource_id: resource_id.into(),
        reporter: "fhir-svc".into(),
        state: state as i32,
        percent_complete: percent,
        occurred_at_unix_ms: at,
        kind: OperationKind::FhirExport as i32,
        result_json: json!({"percent": percent}).to_string(),
        ..OperationStatus::default()
    }
}

async fn late_reports_do_not_reopen_a_finished_job(backend: Backend) {
    // No data plane: the FHIR service's own operation stays open (Creating), which shows
    // that a job's end does not end the resource's change.
    let stack = Stack::control_plane(backend).await;
    let (service_id, service_url) = fhir_service(&stack, json!({}), false).await;
    let job = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let t0 = 1_700_000_000_000;
    for (state, percent, at) in [
        (OperationState::Requested, 0, t0),
        (OperationState::Running, 40, t0 + 1000),
        (OperationState::Succeeded, 100, t0 + 2000),
        // Late, repeated, out of order: none may change the finished record.
        (OperationState::Running, 60, t0 + 1500),
        (OperationState::Requested, 0, t0 + 500),
        (OperationState::Failed, 100, t0 + 3000),
    ] {
        let mut r = job_report(job, &service_id, state, percent, at);
        if state == OperationState::Failed {
            r.error_code = "ExportFailed".into();
            r.error_message = "too late".into();
        }
        report(&stack, job, r).await;
    }
    // A job of a service operations-svc does not know: nobody could find it, so no record.
    let unknown = "11111111111111111111111111111111";
    report(
        &stack,
        job,
        job_report(
            unknown,
            &format!("{service_id}-gone"),
            OperationState::Running,
            10,
            t0,
        ),
    )
    .await;
    // The barrier: handled after every report above (same key, same partition).
    let barrier = "22222222222222222222222222222222";
    report(
        &stack,
        job,
        job_report(barrier, &service_id, OperationState::Running, 5, t0),
    )
    .await;
    let seen = result_until(&stack, barrier, |b| b["status"] == "Running").await;
    assert_eq!(seen["properties"]["percent"], 5);

    let (status, op) = stack
        .json(Method::GET, &result_url(&stack, job), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(op["status"], "Succeeded", "{op}");
    assert!(op.get("error").is_none(), "{op}");
    assert_eq!(op["startTime"], "2023-11-14T22:13:20.000Z", "{op}");
    assert_eq!(op["endTime"], "2023-11-14T22:13:22.000Z", "{op}");
    assert_eq!(op["properties"]["percent"], 100, "{op}");

    let (status, body) = stack
        .json(Method::GET, &result_url(&stack, unknown), None)
        .await;
    assert_eq!(status, 404, "{body}");

    let (_, service) = stack.json(Method::GET, &service_url, None).await;
    assert_eq!(service["properties"]["provisioningState"], "Creating");
}

/// The record's rules, on the database itself: first sight, progress that only goes up, no
/// step back from Running, and nothing after the end.
async fn the_record_only_moves_forward(db: Database) {
    db.migrate(&operations_svc::migrations()).await.unwrap();
    let id = "ABCDEF0123456789abcdef0123456789";
    let resource_id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.HealthcareApis/workspaces/ws1/fhirservices/fhir1";
    let report = |status, percent, at_ms, error| Report {
        status,
        percent,
        error,
        at_ms,
        result: None,
        kind: Some(Kind::FhirReindex),
    };
    let mut tx = db.begin().await.unwrap();
    let new = NewOperation {
        id,
        subscription_id: SUB,
        location: LOCATION,
        kind: Kind::FhirReindex,
        resource_id,
    };
    assert!(operations::insert_at(&mut tx, new, 1_000).await.unwrap());
    let again = NewOperation {
        id,
        subscription_id: SUB,
        location: LOCATION,
        kind: Kind::FhirReindex,
        resource_id: "/other",
    };
    assert!(
        !operations::insert_at(&mut tx, again, 9_000).await.unwrap(),
        "a second first sight changes nothing"
    );
    for r in [
        report(Status::Running, 50, 2_000, None),
        report(Status::Requested, 0, 2_100, None),
        report(Status::Running, 30, 2_200, None),
    ] {
        operations::advance(&mut tx, id, r).await.unwrap();
    }
    tx.commit().await.unwrap();
    let op = operations::get(&db, id).await.unwrap().unwrap();
    assert_eq!((op.status, op.percent), (Status::Running, 50));
    assert_eq!(op.started.timestamp_millis(), 1_000);
    assert_eq!(op.resource_id, resource_id);
    assert!(op.ended.is_none());

    // A report of another kind under the same id moves nothing.
    let mut tx = db.begin().await.unwrap();
    let other = Report {
        kind: Some(Kind::FhirExport),
        ..report(Status::Succeeded, 100, 2_500, None)
    };
    assert!(!operations::advance(&mut tx, id, other).await.unwrap());
    assert!(operations::advance(
        &mut tx,
        id,
        report(Status::Failed, 70, 3_000, Some(("ReindexFailed", "broken")))
    )
    .await
    .unwrap());
    for late in [
        report(Status::Running, 90, 3_100, None),
        report(Status::Succeeded, 100, 3_200, None),
        report(Status::Requested, 0, 3_300, None),
    ] {
        assert!(
            !operations::advance(&mut tx, id, late).await.unwrap(),
            "{late:?} reopened it"
        );
    }
    tx.commit().await.unwrap();
    let op = operations::get(&db, id).await.unwrap().unwrap();
    assert_eq!(op.status, Status::Failed);
    assert_eq!(op.percent, 70);
    assert_eq!(op.ended.map(|t| t.timestamp_millis()), Some(3_000));
    assert_eq!(op.error, Some(("ReindexFailed".into(), "broken".into())));
    assert_eq!(op.kind, "FhirReindex");
}

mod record {
    #[tokio::test]
    async fn postgres() {
        super::the_record_only_moves_forward(hds_testkit::pg_database("opsrec").await).await
    }

    #[tokio::test]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        super::the_record_only_moves_forward(hds_testkit::sqlite_database(dir.path(), "ops").await)
            .await
    }
}

macro_rules! suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            #[tokio::test]
            async fn an_export_job_is_an_operation_that_succeeds() {
                super::an_export_job_is_an_operation_that_succeeds($backend).await
            }
            #[tokio::test]
            async fn a_failed_reindex_job_is_a_failed_operation() {
                super::a_failed_reindex_job_is_a_failed_operation($backend).await
            }
            #[tokio::test]
            async fn late_reports_do_not_reopen_a_finished_job() {
                super::late_reports_do_not_reopen_a_finished_job($backend).await
            }
        }
    };
}

suite!(embedded, super::Backend::Embedded);
suite!(kafka, super::Backend::Kafka);
