//! The control plane's "done when", end to end: the real Azure SDK for Python
//! (`azure-mgmt-healthcareapis`) against operations-svc, fhir-svc, dicom-svc and medtech-svc
//! as separate processes on tansu (Kafka) and PostgreSQL. Between the SDK's creations and its
//! deletions (`tests/python/healthcareapis_sdk.py create` / `delete`) the data plane is used
//! as a client would: FHIR create and read at the new FHIR service's URL, and a device message
//! produced to the IoT connector's Kafka topic becoming an Observation in that FHIR service
//! (the MedTech issue's worked example, resolution type Create). After the deletions, those
//! URLs answer 404.

use std::path::PathBuf;
use std::time::Duration;

use hds_e2e::{eventually, Stack};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio::process::Command;

const WS: &str = "sdkws";
const MESSAGE: &str = r#"{"systolic":120,"diastolic":80,"deviceid":"device1","patientid":"patient1","measurementdatetime":"2023-10-09T19:18:23+00:00"}"#;
const PATIENT: &str = "cd3ee1fc63936b0083c968fe962a726d383ab6ee83af53d4f50507ccd646b68a";
const DEVICE: &str = "e55c4dadeb1050efd66966053edc1a9f921022858367eff94c3fc7660ed1f1ef";
const OBSERVATION: &str = "9775bc0753197aa95458c15a4d5eef689c07b33d7f19706dde2247b3124abfad";

/// Runs one phase of the SDK scenario; its output.
async fn sdk(stack: &Stack, phase: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/healthcareapis_sdk.py");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(hds_testkit::python())
            .arg(&script)
            .arg(stack.base("operations-svc"))
            .arg(phase)
            .output(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "SDK phase {phase} did not finish in 90 s:\n{}",
            stack.logs()
        )
    })
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("azure-mgmt-healthcareapis: ok"),
        "SDK phase {phase}:\n{text}\n{}",
        stack.logs()
    );
    text
}

#[tokio::test]
async fn the_sdk_provisions_services_that_serve_and_deletes_them() {
    let stack = Stack::start(|name, env| match name {
        "operations-svc" => {
            env.insert("HDS_BOOTSTRAP__ENABLED".into(), "false".into());
        }
        "medtech-svc" => {
            env.insert("HDS_MEDTECH__FLUSH_INTERVAL_MS".into(), "200".into());
        }
        _ => {}
    })
    .await;
    let http = reqwest::Client::new();
    let fhir = format!("{}/{WS}-fhir1", stack.base("fhir-svc"));
    let dicom = format!("{}/{WS}-dicom1/v1/studies", stack.base("dicom-svc"));
    let ingest = format!("{}/{WS}-iot1/ingest", stack.base("medtech-svc"));

    // Nothing serves before the SDK creates it.
    let r = http.get(format!("{fhir}/metadata")).send().await.unwrap();
    assert_eq!(r.status(), 404, "FHIR before creation");

    let created = sdk(&stack, "create").await;
    let created: Value = serde_json::from_str(
        created
            .lines()
            .find_map(|l| l.strip_prefix("created: "))
            .unwrap_or_else(|| panic!("no 'created:' line in {created}")),
    )
    .unwrap();
    assert!(created["fhirServiceId"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/workspaces/{WS}/fhirservices/fhir1")));

    // The new FHIR service serves: create, then read.
    let r = http
        .post(format!("{fhir}/Patient"))
        .header("content-type", "application/fhir+json")
        .json(&json!({"resourceType": "Patient", "name": [{"family": "Sdk"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "FHIR create at {fhir}");
    let made: Value = r.json().await.unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let r = http
        .get(format!("{fhir}/Patient/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["name"][0]["family"], "Sdk");
    // So does the DICOM service.
    let r = http.get(&dicom).send().await.unwrap();
    assert!(r.status().is_success(), "QIDO at {dicom}: {}", r.status());

    // A device produces to the connector's event hub (the SDK named it "devices": that is
    // the Kafka topic medtech-svc reads) with a plain Kafka client; medtech-svc turns it into
    // an Observation in the destination's FHIR service.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack.tansu.brokers())
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("devices").key("device1").payload(MESSAGE),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    let search = format!("{fhir}/Observation?code=http://loinc.org|85354-9");
    let observation = eventually(60, "the device message as an Observation", || {
        let (http, search) = (&http, &search);
        async move {
            let bundle: Value = http.get(search).send().await.ok()?.json().await.ok()?;
            bundle["entry"][0]["resource"]
                .is_object()
                .then(|| bundle["entry"][0]["resource"].clone())
        }
    })
    .await;
    assert_eq!(observation["id"], OBSERVATION, "{observation}");
    assert_eq!(
        observation["subject"]["reference"],
        format!("Patient/{PATIENT}")
    );
    assert_eq!(
        observation["device"]["reference"],
        format!("Device/{DEVICE}")
    );
    assert_eq!(
        observation["effectivePeriod"]["start"],
        observation["effectivePeriod"]["end"]
    );
    let values: Vec<&Value> = observation["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["valueQuantity"]["value"])
        .collect();
    assert_eq!(values, [&json!(120), &json!(80)], "{observation}");
    for (kind, id) in [("Patient", PATIENT), ("Device", DEVICE)] {
        let r = http
            .get(format!("{fhir}/{kind}/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{kind} made in Create mode");
    }

    // The SDK deletes everything in reverse order (and sees 404s from the management API).
    sdk(&stack, "delete").await;

    // The data-plane URLs are gone with their resources.
    for url in [
        format!("{fhir}/Patient/{id}"),
        format!("{fhir}/Observation/{OBSERVATION}"),
        format!("{fhir}/metadata"),
        dicom.clone(),
    ] {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "GET {url} after deletion");
    }
    let r = http.post(&ingest).body(MESSAGE).send().await.unwrap();
    assert_eq!(r.status(), 404, "POST {ingest} after deletion");
    for service in ["fhir-svc", "dicom-svc", "medtech-svc"] {
        let listed: Value = http
            .get(format!("{}/instances", stack.base(service)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["value"], json!([]), "{service} instances");
    }
    stack.stop_cleanly().await;
}
