//! The MedTech issue's delivery guarantees with the real processes on tansu and PostgreSQL:
//! medtech-svc killed with SIGKILL in the middle of a stream and started again (three times),
//! then fhir-svc down for 30 s while devices go on sending. Every device message ends as exactly one
//! Observation, written once (version 1: what is read again after the kill merges into
//! nothing), or, for the poison messages among them, in the dead-letter topic, with the rest
//! of their partition written.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use hds_core::events::topics::MEDTECH_DEADLETTER;
use hds_core::events::v1::DeadLetter;
use hds_e2e::{eventually, eventually_or, Stack};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};

const WS: &str = "durable";
const DEVICES: usize = 20;
/// Messages before the kill, and during the FHIR outage.
const FIRST: usize = 2000;
const DURING_OUTAGE: usize = 300;
/// Of the first messages, these are not JSON.
const POISON: [usize; 2] = [150, 1200];

const DEVICE_MAPPING: &str = r#"{"templateType": "CollectionContent", "template": [{
  "templateType": "JsonPathContent", "template": {
    "typeName": "bloodpressure", "typeMatchExpression": "$..[?(@systolic && @diastolic)]",
    "deviceIdExpression": "$.deviceid", "patientIdExpression": "$.patientid",
    "timestampExpression": "$.measurementdatetime",
    "values": [
      {"valueName": "systolic", "valueExpression": "$.systolic", "required": true},
      {"valueName": "diastolic", "valueExpression": "$.diastolic", "required": true}]}}]}"#;

const FHIR_MAPPING: &str = r#"{"templateType": "CollectionFhir", "template": [{
  "templateType": "CodeValueFhir", "template": {
    "typeName": "bloodpressure", "periodInterval": 0,
    "codes": [{"system": "http://loinc.org", "code": "85354-9"}],
    "components": [
      {"codes": [{"system": "http://loinc.org", "code": "8480-6"}],
       "value": {"valueName": "systolic", "valueType": "Quantity", "unit": "mmHg"}},
      {"codes": [{"system": "http://loinc.org", "code": "8462-4"}],
       "value": {"valueName": "diastolic", "valueType": "Quantity", "unit": "mmHg"}}]}}]}"#;

/// Message `k`: its device, and its bytes (each at an instant of its own, so each makes an
/// Observation of its own with `periodInterval` 0).
fn message(k: usize) -> (String, Vec<u8>) {
    let device = format!("device{}", k % DEVICES);
    if POISON.contains(&k) {
        return (device, format!("poison {k}: not JSON").into_bytes());
    }
    let at = chrono::DateTime::from_timestamp(1_700_000_000 + k as i64, 0).unwrap();
    let body = json!({
        "systolic": 100 + k % 50, "diastolic": 60 + k % 30,
        "deviceid": device, "patientid": format!("patient{}", k % DEVICES),
        "measurementdatetime": at.to_rfc3339(),
    });
    (device, body.to_string().into_bytes())
}

async fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    for k in range {
        let (key, payload) = message(k);
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// The number of Observations in the FHIR service (`None` while it does not answer).
async fn observations(http: &reqwest::Client, fhir: &str) -> Option<u64> {
    let r = http
        .get(format!("{fhir}/Observation?_summary=count"))
        .send()
        .await
        .ok()?;
    let bundle: Value = r.json().await.ok()?;
    bundle["total"].as_u64()
}

#[tokio::test]
async fn device_events_survive_a_killed_medtech_svc_and_a_fhir_outage() {
    let mut stack = Stack::start(|name, env| match name {
        "operations-svc" => {
            env.insert("HDS_BOOTSTRAP__WORKSPACE".into(), WS.into());
            env.insert("HDS_BOOTSTRAP__DICOM_SERVICE".into(), "".into());
        }
        "medtech-svc" => {
            // Windows of up to 200 messages, a fifth of a second: the kills land among
            // many commits, and in the middle of windows being written.
            env.insert("HDS_MEDTECH__FLUSH_INTERVAL_MS".into(), "200".into());
            env.insert("HDS_MEDTECH__FLUSH_MESSAGES".into(), "200".into());
        }
        _ => {}
    })
    .await;
    let http = reqwest::Client::new();
    let fhir = format!("{}/{WS}-fhir", stack.base("fhir-svc"));
    let medtech = format!("{}/{WS}-medtech", stack.base("medtech-svc"));
    let destination = json!({"resolutionType": "Create", "fhirService": format!("{WS}-fhir")});
    for (path, body) in [
        ("/mappings/device", DEVICE_MAPPING.to_owned()),
        ("/mappings/fhir", FHIR_MAPPING.to_owned()),
        ("/destination", destination.to_string()),
    ] {
        // Accepted once operations-svc's bootstrap has provisioned the instance.
        eventually(90, &format!("PUT {path}"), || {
            let (http, url, body) = (&http, format!("{medtech}{path}"), body.clone());
            async move {
                let r = http.put(url).body(body).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        })
        .await;
    }
    eventually(90, "the FHIR service", || observations(&http, &fhir)).await;

    let topic = format!("hds.devices.{WS}-medtech");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack.tansu.brokers())
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    // Devices send while medtech-svc writes; it is killed with SIGKILL once it is under
    // way, with most of the stream still to come.
    let sending = {
        let (producer, topic) = (producer.clone(), topic.clone());
        tokio::spawn(async move { produce(&producer, &topic, 0..FIRST).await })
    };
    let at_kill = eventually(120, "the first Observations", || async {
        observations(&http, &fhir).await.filter(|n| *n >= 50)
    })
    .await;
    stack.kill("medtech-svc").await;
    assert!(
        at_kill < (FIRST - POISON.len()) as u64 / 2,
        "medtech-svc was to be killed mid-stream, but {at_kill} Observations were there"
    );
    stack.start_again("medtech-svc").await;
    // And again while it works through what was left (windows of 200, written in parts):
    // a crash between any window's commit and its writes would lose that window.
    for at_least in [800, 1400] {
        let logs = || stack.logs();
        eventually_or(120, "more Observations", logs, || async {
            observations(&http, &fhir).await.filter(|n| *n >= at_least)
        })
        .await;
        stack.kill("medtech-svc").await;
        stack.start_again("medtech-svc").await;
    }
    sending.await.unwrap();

    // fhir-svc down for 30 s while devices go on sending (the outage is the scenario).
    stack.stop("fhir-svc").await;
    produce(&producer, &topic, FIRST..FIRST + DURING_OUTAGE).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    stack.start_again("fhir-svc").await;

    let expected = (FIRST + DURING_OUTAGE - POISON.len()) as u64;
    let logs = || stack.logs();
    eventually_or(
        180,
        "every device message as an Observation",
        logs,
        || async { observations(&http, &fhir).await.filter(|n| *n >= expected) },
    )
    .await;

    // Exactly one Observation per message, each written once.
    let mut ids = HashSet::new();
    let mut next = Some(format!("{fhir}/Observation?_count=1000"));
    while let Some(url) = next.take() {
        let page: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        for e in page["entry"].as_array().into_iter().flatten() {
            let o = &e["resource"];
            assert_eq!(o["meta"]["versionId"], "1", "written more than once: {o}");
            assert!(ids.insert(o["id"].as_str().unwrap().to_owned()));
        }
        next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
    }
    assert_eq!(ids.len() as u64, expected, "{}", stack.logs());

    // The poison messages, and only they, in the dead-letter topic, as they were sent.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.tansu.brokers())
        .set("group.id", "durability-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[MEDTECH_DEADLETTER]).unwrap();
    // A replay after the kill may publish a letter again (same event id, which consumers
    // drop): each poison message is there, and nothing else.
    let mut letters: BTreeSet<Vec<u8>> = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while letters.len() < POISON.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let letter = DeadLetter::decode(m.payload().unwrap_or_default()).unwrap();
            assert_eq!(letter.error_code, "InvalidDeviceMessage", "{letter:?}");
            letters.insert(letter.original_payload);
        }
    }
    let wanted: BTreeSet<Vec<u8>> = POISON.iter().map(|k| message(*k).1).collect();
    assert_eq!(letters, wanted, "dead letters");
    stack.stop_cleanly().await;
}
