//! A window's Observations written to a real fhir-svc in searches and batch bundles
//! (`pipeline::upsert::save_all`): created, merged, unchanged, one Observation made by two
//! groups of the same window, and a batch whose entries succeed, conflict and fail each on
//! their own. On SQLite (embedded) and on PostgreSQL.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::Stack;
use medtech_svc::fhir_mapping::FhirMapping;
use medtech_svc::grouping::{group_measurements, observation_groups, ObservationGroup};
use medtech_svc::identity::{create_mode_ids, ResolvedIds, TypeName};
use medtech_svc::measurement::{Measurement, MeasurementProperty};
use medtech_svc::pipeline::fhir_client::{CallError, Endpoint, FhirClient};
use medtech_svc::pipeline::upsert::{save_all, Item, Saved};
use medtech_svc::time::parse_timestamp;
use serde_json::{json, Value};

fn bp_mapping() -> FhirMapping {
    let path = format!(
        "{}/tests/fixtures/iomt-fhir/CodeValueFhirTemplate_Components.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let template = std::fs::read_to_string(&path).unwrap();
    FhirMapping::parse(&format!(
        r#"{{"templateType": "CollectionFhir", "template": [{template}]}}"#
    ))
    .unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).unwrap()
}

/// The observation group of one blood pressure measurement (`periodInterval` 60: its hour).
fn reading(mapping: &FhirMapping, at: &str, systolic: &str, diastolic: &str) -> ObservationGroup {
    let m = Measurement {
        type_name: TypeName::new("bloodpressure").unwrap(),
        occurrence_time_utc: t(at),
        device_id: "device1".into(),
        patient_id: Some("patient1".into()),
        encounter_id: None,
        correlation_id: None,
        properties: [("systolic", systolic), ("diastolic", diastolic)]
            .iter()
            .map(|(n, v)| MeasurementProperty {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
    };
    let groups = group_measurements(vec![m]);
    let template = mapping.template_for(&groups[0].key.type_name).unwrap();
    let mut windows = observation_groups(&groups[0], template.period_interval).unwrap();
    assert_eq!(windows.len(), 1);
    windows.remove(0)
}

fn ids() -> ResolvedIds {
    create_mode_ids("patient1", "device1", None, None)
}

fn items<'a>(
    mapping: &'a FhirMapping,
    ids: &'a ResolvedIds,
    groups: &'a [ObservationGroup],
) -> Vec<Item<'a>> {
    groups
        .iter()
        .map(|g| Item {
            template: mapping.template_for(&g.type_name).unwrap(),
            group: g,
            ids,
        })
        .collect()
}

fn saved(outcomes: Vec<Result<Saved, medtech_svc::pipeline::failure::Failure>>) -> Vec<Saved> {
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|f| panic!("save failed: {f}")))
        .collect()
}

/// The systolic component's SampledData slots that hold a value.
fn systolic_values(observation: &Value) -> Vec<String> {
    let component = observation["component"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"]["coding"][0]["code"] == "8480-6")
        .unwrap();
    component["valueSampledData"]["data"]
        .as_str()
        .unwrap()
        .split(' ')
        .filter(|v| *v != "E")
        .map(str::to_owned)
        .collect()
}

/// A client of the stack's FHIR service instance, without a token.
fn fhir_of(stack: &Stack) -> (FhirClient, Endpoint) {
    let client = FhirClient::new(Duration::from_secs(30), None);
    let fhir = Endpoint {
        url: stack.fhir_url(""),
        audience: None,
    };
    (client, fhir)
}

async fn scenario(stack: Stack) {
    stack.provision().await;
    let (client, fhir) = fhir_of(&stack);
    let mapping = bp_mapping();
    let ids = ids();
    // Two readings of the same hour (one Observation) and one of the next hour.
    let groups = vec![
        reading(&mapping, "2020-01-01T10:00:00Z", "120", "80"),
        reading(&mapping, "2020-01-01T10:00:05Z", "125", "85"),
        reading(&mapping, "2020-01-01T11:00:00Z", "130", "90"),
    ];
    let outcomes = saved(save_all(&client, &fhir, &items(&mapping, &ids, &groups), 4).await);
    assert_eq!(
        outcomes,
        [Saved::Created, Saved::Updated, Saved::Created],
        "the hour's second reading is merged into the Observation the first one created"
    );
    let first = medtech_svc::observation::build(
        mapping.template_for(&groups[0].type_name).unwrap(),
        &groups[0],
        &ids,
        Utc::now(),
    )
    .unwrap();
    let id = first["id"].as_str().unwrap();
    let stored = stack
        .fhir_read(&format!("/Observation/{id}"))
        .await
        .expect("the Observation is stored");
    assert_eq!(stored["meta"]["versionId"], "2");
    assert_eq!(stored["status"], "amended");
    assert_eq!(systolic_values(&stored), ["120", "125"]);

    // Saved again: nothing changes, nothing is written.
    let again = saved(save_all(&client, &fhir, &items(&mapping, &ids, &groups[..1]), 4).await);
    assert_eq!(again, [Saved::NoOperation]);
    let stored = stack
        .fhir_read(&format!("/Observation/{id}"))
        .await
        .unwrap();
    assert_eq!(stored["meta"]["versionId"], "2");

    // One batch: a write on the current version, a write on a stale version (another
    // writer came first) and one that fhir-svc refuses; each answered on its own.
    let mut current = stored.clone();
    current["status"] = json!("final");
    let mut stale = stored.clone();
    stale["status"] = json!("corrected");
    let mut invalid = stored.clone();
    invalid["id"] = json!("not-this-one");
    invalid["status"] = json!("no-such-status");
    let answers = client
        .put_batch(
            &fhir,
            &[
                (&current, Some("W/\"2\"")),
                (&stale, Some("W/\"1\"")),
                (&invalid, None),
            ],
        )
        .await
        .unwrap();
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    assert!(
        matches!(answers[1], Err(CallError::Conflict)),
        "{:?}",
        answers[1]
    );
    match &answers[2] {
        Err(CallError::Failed(f)) => assert!(!f.transient, "{f}"),
        other => panic!("the invalid entry was not refused: {other:?}"),
    }
    let stored = stack
        .fhir_read(&format!("/Observation/{id}"))
        .await
        .unwrap();
    assert_eq!(stored["meta"]["versionId"], "3");
    assert_eq!(stored["status"], "final");
    assert!(stack.fhir_read("/Observation/not-this-one").await.is_none());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_window_writes_in_batches() {
    scenario(Stack::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_and_postgres_window_writes_in_batches() {
    scenario(Stack::kafka().await).await;
}

/// A FHIR service that takes at most 3 entries per bundle refuses the window's bundle of 7
/// as a whole: the writes go again in halves, and every Observation is saved.
async fn over_the_entry_limit(stack: Stack) {
    stack.provision().await;
    let (client, fhir) = fhir_of(&stack);
    let mapping = bp_mapping();
    let ids = ids();
    let groups: Vec<ObservationGroup> = (0..7)
        .map(|h| {
            reading(
                &mapping,
                &format!("2020-01-01T{:02}:00:00Z", 10 + h),
                "120",
                "80",
            )
        })
        .collect();
    let outcomes = saved(save_all(&client, &fhir, &items(&mapping, &ids, &groups), 4).await);
    assert_eq!(outcomes, vec![Saved::Created; 7]);
    for g in &groups {
        let o = medtech_svc::observation::build(
            mapping.template_for(&g.type_name).unwrap(),
            g,
            &ids,
            Utc::now(),
        )
        .unwrap();
        let id = o["id"].as_str().unwrap();
        assert!(stack
            .fhir_read(&format!("/Observation/{id}"))
            .await
            .is_some());
    }
    stack.stop().await;
}

fn three_entries() -> common::Options {
    common::Options {
        fhir: |s| s.fhir.max_bundle_entries = 3,
        ..common::Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bundles_over_the_entry_limit_go_in_halves() {
    over_the_entry_limit(Stack::embedded_with(three_entries()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_and_postgres_bundles_over_the_entry_limit_go_in_halves() {
    over_the_entry_limit(Stack::kafka_with(|_| {}, three_entries()).await).await;
}
