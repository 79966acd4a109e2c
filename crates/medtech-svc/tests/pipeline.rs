//! End to end on real parts: device messages on the bus (or POSTed to the ingestion endpoint)
//! become the issue's exact Observation in a real fhir-svc; the same message again writes
//! nothing; poison messages go to the dead-letter topic with their stage and error; and while
//! fhir-svc is down nothing is committed, so a restart of both loses nothing.
//!
//! Each scenario runs on SQLite + the embedded bus (`embedded::*`) and on PostgreSQL + tansu
//! (`kafka::*`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hds_core::events::topics;
use hds_core::events::v1::DeadLetter;
use medtech_svc::identity::{Identifier, SERVICE_SYSTEM};
use medtech_svc::pipeline::deadletter::{ERROR_TYPE_HEADER, STAGE_HEADER, TEMPLATE_HEADER};
use prost::Message;
use serde_json::{json, Value};

/// The worked example ends as the exact Observation, with Patient and Device made by Create.
async fn worked_example_becomes_the_observation(stack: &Stack) {
    stack.produce(MESSAGE.as_bytes()).await;
    let o = stack
        .wait_for_resource(&format!("/Observation/{OBSERVATION_ID}"))
        .await;
    assert_eq!(o["id"], OBSERVATION_ID);
    assert_eq!(o["status"], "final");
    assert_eq!(
        o["identifier"],
        json!([{"system": SERVICE_SYSTEM,
                "value": format!("{PATIENT_ID}.{DEVICE_ID}.bloodpressure.20231009191823Z.20231009191823Z")}])
    );
    assert_eq!(o["subject"]["reference"], format!("Patient/{PATIENT_ID}"));
    assert_eq!(o["device"]["reference"], format!("Device/{DEVICE_ID}"));
    assert_eq!(
        o["effectivePeriod"],
        json!({"start": "2023-10-09T19:18:23.0000000Z", "end": "2023-10-09T19:18:23.0000000Z"})
    );
    assert_eq!(o["code"]["coding"][0]["code"], "85354-9");
    let components = o["component"].as_array().unwrap();
    assert_eq!(components.len(), 2);
    assert_eq!(components[0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(
        components[0]["valueQuantity"],
        json!({"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"})
    );
    assert_eq!(components[1]["code"]["coding"][0]["code"], "8462-4");
    assert_eq!(components[1]["valueQuantity"]["value"], 80);
    assert_eq!(o["meta"]["versionId"], "1");

    let patient = stack
        .fhir_read(&format!("/Patient/{PATIENT_ID}"))
        .await
        .expect("the Patient Create resolution made");
    assert_eq!(patient["identifier"], json!([{"value": "patient1"}]));
    let device = stack
        .fhir_read(&format!("/Device/{DEVICE_ID}"))
        .await
        .expect("the Device Create resolution made");
    assert_eq!(
        device["patient"]["reference"],
        format!("Patient/{PATIENT_ID}")
    );
    let created = stack
        .metric(
            "medtech_fhir_resource_saved_total",
            &["operation=\"Created\"", "resource_type=\"Observation\""],
        )
        .await;
    assert_eq!(created, 1.0);
}

/// The same message again: merged, nothing changed, nothing written.
async fn identical_message_writes_nothing(stack: &Stack) {
    let labels = ["operation=\"NoOperation\""];
    let before = stack
        .metric("medtech_fhir_resource_saved_total", &labels)
        .await;
    stack.produce(MESSAGE.as_bytes()).await;
    stack
        .wait_for_metric("medtech_fhir_resource_saved_total", &labels, before + 1.0)
        .await;
    let o = stack
        .fhir_read(&format!("/Observation/{OBSERVATION_ID}"))
        .await
        .unwrap();
    assert_eq!(o["meta"]["versionId"], "1", "no new version: {o}");
    let history: Value = stack
        .http
        .get(stack.fhir_url(&format!("/Observation/{OBSERVATION_ID}/_history")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["entry"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
}

/// Reads dead letters of the MedTech instance until `n` arrived (up to 60 s).
async fn dead_letters(
    sub: &mut Box<dyn hds_core::bus::Subscription>,
    n: usize,
) -> Vec<(DeadLetter, hds_core::bus::Delivery)> {
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while found.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, sub.next())
            .await
            .expect("dead letters within 60 s")
            .unwrap();
        let letter = DeadLetter::decode(d.payload.as_slice()).unwrap();
        if letter.instance == MEDTECH_INSTANCE {
            found.push((letter, d));
        }
    }
    found
}

/// A message that is not JSON and one the mapping fails on are dead-lettered with their
/// stage and error; a good message behind them in the partition is still written.
async fn poison_messages_are_dead_lettered(stack: &Stack) {
    let mut sub = stack
        .bus
        .subscribe(&hds_testkit::unique("dlq"), &[topics::MEDTECH_DEADLETTER])
        .await
        .unwrap();
    stack.produce(b"this is not json").await;
    let bad_time = MESSAGE.replace("2023-10-09T19:18:23+00:00", "yesterday");
    stack.produce(bad_time.as_bytes()).await;
    let good = MESSAGE.replace("19:18:23", "19:18:24");
    stack.produce(good.as_bytes()).await;

    let letters = dead_letters(&mut sub, 2).await;
    let (not_json, d) = letters
        .iter()
        .find(|(l, _)| l.original_payload == b"this is not json")
        .expect("the non-JSON message is dead-lettered");
    assert_eq!(not_json.error_code, "InvalidDeviceMessage");
    assert_eq!(
        not_json.source_topic,
        format!("hds.devices.{MEDTECH_INSTANCE}")
    );
    assert_eq!(not_json.original_key, b"device1");
    assert_eq!(not_json.stage, "Normalization");
    assert_eq!(not_json.error_type, "DeviceMessageError");
    assert_eq!(not_json.template, "", "no template was involved");
    assert_eq!(
        d.key.as_deref(),
        Some(&b"device1"[..]),
        "keyed as the device"
    );
    assert_eq!(d.header_str(STAGE_HEADER), Some("Normalization"));
    assert_eq!(d.header_str(ERROR_TYPE_HEADER), Some("DeviceMessageError"));
    assert_eq!(d.header_str(TEMPLATE_HEADER), None);

    let (mapping, d) = letters
        .iter()
        .find(|(l, _)| l.original_payload == bad_time.as_bytes())
        .expect("the message the mapping fails on is dead-lettered");
    assert_eq!(mapping.error_code, "NormalizationFailed");
    assert_eq!(mapping.stage, "Normalization");
    assert_eq!(mapping.error_type, "DeviceTemplateError");
    assert_eq!(mapping.template, "bloodpressure");
    assert!(
        mapping.error_message.contains("timestamp") || mapping.error_message.contains("yesterday"),
        "{}",
        mapping.error_message
    );
    assert_eq!(d.header_str(STAGE_HEADER), Some("Normalization"));
    assert_eq!(d.header_str(ERROR_TYPE_HEADER), Some("DeviceTemplateError"));
    assert_eq!(d.header_str(TEMPLATE_HEADER), Some("bloodpressure"));
    sub.close().await;

    let id = observation_id("20231009191824Z");
    let o = stack.wait_for_resource(&format!("/Observation/{id}")).await;
    assert_eq!(o["component"][0]["valueQuantity"]["value"], 120);
    // Counted once the batch is acknowledged, which may be just after a reader saw it.
    stack
        .wait_for_metric("medtech_dead_letter_total", &[], 2.0)
        .await;
    assert_eq!(
        stack.metric("medtech_dead_letter_total", &[]).await,
        2.0,
        "each poison message dead-lettered once"
    );
}

/// A FHIR destination mapping without a template for the message's type: the letter names
/// the FHIR conversion stage, Azure's FHIRTemplateError and the type's template.
async fn a_type_without_fhir_template_is_dead_lettered(stack: &Stack) {
    let mut sub = stack
        .bus
        .subscribe(&hds_testkit::unique("dlq"), &[topics::MEDTECH_DEADLETTER])
        .await
        .unwrap();
    let heart_rate = DEVICE_MAPPING.replace(
        "\"typeName\": \"bloodpressure\"",
        "\"typeName\": \"heartrate\"",
    );
    let res = stack
        .http
        .put(stack.medtech_url("/mappings/device"))
        .body(heart_rate)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let message = MESSAGE.replace("19:18:23", "19:40:00");
    stack.produce(message.as_bytes()).await;
    // A new group reads the topic from its start: the two letters before, then this one.
    let letters = dead_letters(&mut sub, 3).await;
    let (letter, d) = letters
        .iter()
        .find(|(l, _)| l.original_payload == message.as_bytes())
        .expect("the message is dead-lettered");
    assert_eq!(letter.original_payload, message.as_bytes());
    assert_eq!(letter.error_code, "FhirTemplateNotFound");
    assert_eq!(letter.stage, "FHIRConversion");
    assert_eq!(letter.error_type, "FHIRTemplateError");
    assert_eq!(letter.template, "heartrate");
    assert_eq!(d.header_str(TEMPLATE_HEADER), Some("heartrate"));
    sub.close().await;
    stack.configure().await;
}

fn observation_id(at: &str) -> String {
    Identifier::new(
        Some(SERVICE_SYSTEM),
        &format!("{PATIENT_ID}.{DEVICE_ID}.bloodpressure.{at}.{at}"),
    )
    .resource_id()
    .to_string()
}

/// fhir-svc down: the message is read but not committed. medtech-svc is restarted while
/// fhir-svc is still down (losing what it held in memory), then fhir-svc comes back: the
/// Observation appears, once.
async fn nothing_is_committed_while_fhir_is_down(mut stack: Stack) {
    stack.fhir.stop().await;
    let errors = ["error_type=\"FHIRServiceError\""];
    let before = stack.metric("medtech_errors_total", &errors).await;
    let later = MESSAGE.replace("19:18:23", "19:30:00");
    stack.produce(later.as_bytes()).await;
    // The pipeline has read the message and failed to write it.
    stack
        .wait_for_metric("medtech_errors_total", &errors, before + 1.0)
        .await;

    stack.medtech.stop().await;
    stack.start_fhir().await;
    stack.start_medtech().await;

    let id = observation_id("20231009193000Z");
    let o = stack.wait_for_resource(&format!("/Observation/{id}")).await;
    assert_eq!(o["meta"]["versionId"], "1");
    assert_eq!(
        o["effectivePeriod"]["start"],
        "2023-10-09T19:30:00.0000000Z"
    );
    stack.stop().await;
}

/// Configuration errors answer 400 with each problem's JSON path and line.
async fn invalid_mappings_are_refused_with_path_and_line(stack: &Stack) {
    let bad = "{\n  \"templateType\": \"CollectionContent\",\n  \"template\": [\n    {\"templateType\": \"JsonPathContent\", \"template\": {\"typeName\": \"x\"}}\n  ]\n}";
    let res = stack
        .http
        .put(stack.medtech_url("/mappings/device"))
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidDeviceMapping");
    let details = body["error"]["details"].as_array().unwrap();
    assert!(!details.is_empty());
    assert!(
        details
            .iter()
            .all(|d| d["target"].as_str().unwrap().starts_with("$.template[0]") && d["line"] == 4),
        "{details:?}"
    );
    let res = stack
        .http
        .put(stack.medtech_url("/destination"))
        .body(r#"{"resolutionType": "Sometimes", "fhirService": "ws1-fhir"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["target"], "$.resolutionType");
}

/// The debugger shows the Observation the worked example would make, and writes nothing.
async fn debugger_has_no_side_effects(stack: &Stack) {
    let res = stack
        .http
        .post(format!("{}/debug", stack.medtech.base()))
        .json(&json!({
            "deviceMapping": DEVICE_MAPPING,
            "fhirMapping": FHIR_MAPPING,
            "message": serde_json::from_str::<Value>(MESSAGE).unwrap()
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["errors"], json!([]));
    assert_eq!(report["measurements"].as_array().unwrap().len(), 1);
    assert_eq!(report["observations"][0]["id"], OBSERVATION_ID);
    assert!(stack
        .fhir_read(&format!("/Observation/{OBSERVATION_ID}"))
        .await
        .is_none());
}

/// Deleting a configured instance stops its running worker, then deletes its consumer group
/// and device topic (on tansu the topic stays: see `KafkaSettings::delete_topics`); the
/// deletion reports success, and the instance is gone.
async fn a_configured_instance_is_deleted(stack: Stack) {
    stack.provision().await;
    stack.configure().await;
    // The worker is running: it has read a message and written its Observation.
    stack.produce(MESSAGE.as_bytes()).await;
    stack
        .wait_for_resource(&format!("/Observation/{OBSERVATION_ID}"))
        .await;
    stack.deprovision_medtech().await;
    let res = stack
        .http
        .get(stack.medtech_url("/mappings/device"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    stack.stop().await;
}

/// The full scenario on one stack.
async fn scenario(stack: Stack) {
    stack.provision().await;
    invalid_mappings_are_refused_with_path_and_line(&stack).await;
    debugger_has_no_side_effects(&stack).await;
    stack.configure().await;
    worked_example_becomes_the_observation(&stack).await;
    identical_message_writes_nothing(&stack).await;
    poison_messages_are_dead_lettered(&stack).await;
    a_type_without_fhir_template_is_dead_lettered(&stack).await;
    nothing_is_committed_while_fhir_is_down(stack).await;
}

mod embedded {
    use super::*;

    /// With authentication on (as `hds up --auth`), the pipeline signs its own token for
    /// fhir-svc: without one, fhir-svc answers 401 and the message would be dead-lettered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn with_auth_on_the_pipeline_writes_with_a_token() {
        let stack = Stack::embedded_with_auth().await;
        let anonymous = reqwest::get(stack.fhir_url(&format!("/Observation/{OBSERVATION_ID}")))
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "fhir-svc requires a token");
        stack.provision().await;
        stack.configure().await;
        worked_example_becomes_the_observation(&stack).await;
        assert_eq!(stack.metric("medtech_dead_letter_total", &[]).await, 0.0);
        stack.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn device_messages_to_observations_none_lost_none_duplicated() {
        scenario(Stack::embedded().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_configured_instance_is_deleted() {
        super::a_configured_instance_is_deleted(Stack::embedded().await).await;
    }

    /// Messages POSTed to the ingestion endpoint (a batch) take the same way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn http_ingestion_publishes_to_the_device_topic() {
        let stack = Stack::embedded().await;
        stack.provision().await;
        stack.configure().await;
        let second = MESSAGE.replace("19:18:23", "19:18:25");
        let batch = format!("[{MESSAGE}, {second}]");
        let res = stack
            .http
            .post(stack.medtech_url("/ingest"))
            .header("x-partition-key", "device1")
            .header("x-property-source", "gateway")
            .body(batch)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        assert_eq!(res.json::<Value>().await.unwrap()["accepted"], 2);
        stack
            .wait_for_resource(&format!("/Observation/{OBSERVATION_ID}"))
            .await;
        stack
            .wait_for_resource(&format!(
                "/Observation/{}",
                observation_id("20231009191825Z")
            ))
            .await;

        let res = stack
            .http
            .post(stack.medtech_url("/ingest"))
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let res = stack
            .http
            .post(format!("{}/ws1-nothere/ingest", stack.medtech.base()))
            .body(MESSAGE)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        stack.stop().await;
    }
}

mod kafka {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn device_messages_to_observations_none_lost_none_duplicated() {
        scenario(Stack::kafka().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_configured_instance_is_deleted() {
        super::a_configured_instance_is_deleted(Stack::kafka().await).await;
    }
}
