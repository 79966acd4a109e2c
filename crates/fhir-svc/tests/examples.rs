//! Every official R4 example resource (npm `hl7.fhir.r4.examples` 4.0.1, fetched into
//! `~/.cache/hds-fhir` by `scripts/fhir-definitions.py`, which `make test` runs) is accepted,
//! stored and read back equal as JSON apart from `meta` — decimals keep their digits, element
//! order is kept. On SQLite + embedded bus and PostgreSQL + Kafka.

mod common;

use std::path::PathBuf;

use common::Env;
use futures::StreamExt;
use serde_json::Value;

/// Examples the server refuses, and why: each breaks R4 itself (the validator's own list,
/// crates/fhir-validation/tests/examples.rs, names the exact error).
const KNOWN_REFUSALS: &[(&str, &str)] = &[
    (
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        "its id has 67 characters; FHIR ids have at most 64",
    ),
    (
        "ImplementationGuide-fhir.json",
        "no name and no status, both 1..1",
    ),
    (
        "Questionnaire-qs1.json",
        "32 nested display items without linkId, which is 1..1",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-author.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-end.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-effective.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-end.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-keyword.json",
        "no base (1..*)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        "no base (1..*)",
    ),
];

fn without_meta(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("meta");
    }
    v
}

async fn every_example_round_trips(env: Env) {
    env.provision("ws1-fhir").await;
    let base = env.url("/ws1-fhir");
    let client = reqwest::Client::new();
    // Put on the server, the requests have no retries: a failure is the server's.
    let mut files: Vec<PathBuf> = std::fs::read_dir(hds_testkit::fhir_examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && name.starts_with(|c: char| c.is_ascii_uppercase())
        })
        .collect();
    files.sort();
    assert!(files.len() > 5000, "only {} examples", files.len());

    let results: Vec<(String, Option<String>)> = futures::stream::iter(files)
        .map(|path| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let original: Value = serde_json::from_str(&text).unwrap();
                let rt = original["resourceType"].as_str().unwrap().to_owned();
                let id = original["id"].as_str().unwrap().to_owned();
                let url = format!("{base}/{rt}/{id}");
                let put = client
                    .put(&url)
                    .header("content-type", "application/fhir+json")
                    .body(text)
                    .send()
                    .await
                    .unwrap();
                if !put.status().is_success() {
                    let status = put.status();
                    let body = put.text().await.unwrap_or_default();
                    return (name, Some(format!("PUT {status}: {body}")));
                }
                let got = client.get(&url).send().await.unwrap();
                let status = got.status();
                let body = got.text().await.unwrap_or_default();
                let Ok(read) = serde_json::from_str::<Value>(&body) else {
                    return (name, Some(format!("GET {status}: {body}")));
                };
                if without_meta(read) != without_meta(original) {
                    return (name, Some("read back differs".into()));
                }
                (name, None)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let failures: Vec<String> = results
        .iter()
        .filter_map(|(name, why)| why.as_ref().map(|w| format!("{name}: {w}")))
        .filter(|f| !KNOWN_REFUSALS.iter().any(|(k, _)| f.starts_with(k)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} examples failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for (known, _) in KNOWN_REFUSALS {
        // Refused as a client mistake, with an OperationOutcome.
        let refused = results.iter().any(|(n, why)| {
            n == known
                && why
                    .as_deref()
                    .is_some_and(|w| w.starts_with("PUT 400") && w.contains("OperationOutcome"))
        });
        assert!(
            refused,
            "{known} is no longer refused: drop it from KNOWN_REFUSALS"
        );
    }
    env.stop().await;
}

#[tokio::test]
async fn embedded_every_example_round_trips() {
    every_example_round_trips(Env::embedded().await).await
}

#[tokio::test]
async fn kafka_every_example_round_trips() {
    every_example_round_trips(Env::kafka().await).await
}
