//! `$export` (Bulk Data Access): kick-off, status, the manifest, the files, cancellation, and
//! the instance's `exportConfiguration` deciding where files go. On SQLite + the embedded bus
//! with a folder as the export store, and on PostgreSQL + Kafka (tansu) with a real S3
//! server (s3s-fs).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Env;
use hds_core::blob::BlobKey;
use hds_core::config::{BlobConfig, BlobKind};
use hds_testkit::{unique, S3Server};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const INSTANCE: &str = "ws1-exp";

struct Fhir {
    client: Client,
    base: String,
}

impl Fhir {
    async fn put(&self, path: &str, body: Value) {
        let res = self
            .client
            .put(format!("{}{path}", self.base))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    async fn kick_off(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("prefer", "respond-async")
            .header("accept", "application/fhir+json")
            .send()
            .await
            .unwrap()
    }

    /// Kicks off an export and polls its status until the manifest comes (within a minute).
    async fn export(&self, path: &str) -> (String, Value) {
        let res = self.kick_off(path).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{path}");
        let status = res.headers()["content-location"]
            .to_str()
            .unwrap()
            .to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let res = self.client.get(&status).send().await.unwrap();
            match res.status() {
                StatusCode::OK => return (status, res.json().await.unwrap()),
                StatusCode::ACCEPTED => assert!(res.headers().contains_key("x-progress")),
                other => panic!("status {other}: {}", res.text().await.unwrap()),
            }
            assert!(std::time::Instant::now() < deadline, "export still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every resource of the manifest's files, by type, as "Type/id", sorted.
    async fn exported(&self, manifest: &Value) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in manifest["output"].as_array().unwrap() {
            let res = self
                .client
                .get(file["url"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-type"], "application/fhir+ndjson");
            let text = res.text().await.unwrap();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len() as u64, file["count"].as_u64().unwrap());
            for r in lines {
                assert_eq!(r["resourceType"], file["type"]);
                out.entry(file["type"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    ));
            }
        }
        for ids in out.values_mut() {
            ids.sort();
        }
        out
    }
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("Fam{id}")}]})
}

fn observation(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "x"},
        "subject": {"reference": format!("Patient/{patient}")}})
}

fn set(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn exports_by_level(env: Env, store: hds_core::blob::SharedBlobStore) {
    let fhir = Fhir {
        client: Client::new(),
        base: env.url(&format!("/{INSTANCE}")),
    };
    // Without exportConfiguration there is nowhere to write: refused, as in Azure.
    env.provision(INSTANCE).await;
    assert_eq!(
        fhir.kick_off("/$export").await.status(),
        StatusCode::BAD_REQUEST
    );
    env.provision_with(
        INSTANCE,
        &json!({"exportConfiguration": {"storageAccountName": "hdsexports"}}),
    )
    .await;

    for p in ["p1", "p2", "p3"] {
        fhir.put(&format!("/Patient/{p}"), patient(p)).await;
    }
    fhir.put("/Observation/o1", observation("o1", "p1")).await;
    fhir.put("/Observation/o2", observation("o2", "p2")).await;
    fhir.put(
        "/Organization/org1",
        json!({"resourceType": "Organization", "id": "org1", "name": "Org"}),
    )
    .await;
    fhir.put(
        "/Group/g1",
        json!({"resourceType": "Group", "id": "g1", "type": "person",
        "actual": true, "member": [{"entity": {"reference": "Patient/p1"}}]}),
    )
    .await;
    fhir.put("/Patient/gone", patient("gone")).await;
    let deleted = fhir
        .client
        .delete(format!("{}/Patient/gone", fhir.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // System level: every current resource, the deleted one left out.
    let (status, manifest) = fhir.export("/$export").await;
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["request"].as_str().unwrap().ends_with("/$export"));
    assert!(manifest["transactionTime"].is_string());
    assert_eq!(manifest["error"], json!([]));
    let all = fhir.exported(&manifest).await;
    assert_eq!(
        all["Patient"],
        set(&["Patient/p1", "Patient/p2", "Patient/p3"])
    );
    assert_eq!(
        all["Observation"],
        set(&["Observation/o1", "Observation/o2"])
    );
    assert_eq!(all["Organization"], set(&["Organization/org1"]));
    assert_eq!(all["Group"], set(&["Group/g1"]));
    // The files are in the export store under {storage account}/{container}/{job}.
    let job = status.rsplit('/').next().unwrap();
    let keys = store
        .list(&format!("hdsexports/export-{job}/{job}/"))
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        manifest["output"].as_array().unwrap().len(),
        "{keys:?}"
    );

    // Patient level: patients and their compartments only; _type narrows it.
    let (_, manifest) = fhir.export("/Patient/$export").await;
    let patients = fhir.exported(&manifest).await;
    // (A Group is in its members' compartments: R4 puts it there through `member`.)
    assert_eq!(
        patients.keys().collect::<Vec<_>>(),
        ["Group", "Observation", "Patient"]
    );
    assert_eq!(patients["Patient"], all["Patient"]);
    let (_, manifest) = fhir
        .export("/Patient/$export?_type=Observation&_container=mine")
        .await;
    assert_eq!(
        fhir.exported(&manifest).await,
        BTreeMap::from([(
            "Observation".to_owned(),
            set(&["Observation/o1", "Observation/o2"])
        )])
    );
    assert!(!store.list("hdsexports/mine/").await.unwrap().is_empty());

    // Group level: the members and their compartments.
    let (_, manifest) = fhir.export("/Group/g1/$export").await;
    let group = fhir.exported(&manifest).await;
    assert_eq!(group["Patient"], set(&["Patient/p1"]));
    assert_eq!(group["Observation"], set(&["Observation/o1"]));

    // _since: only what changed since then.
    let since = chrono::Utc::now();
    fhir.put("/Patient/p2", patient("p2")).await;
    let (_, manifest) = fhir
        .export(&format!(
            "/$export?_since={}",
            since.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        ))
        .await;
    assert_eq!(
        fhir.exported(&manifest).await,
        BTreeMap::from([("Patient".to_owned(), set(&["Patient/p2"]))])
    );

    // DELETE releases a job: its status is 404 and its files are gone.
    let res = fhir.client.delete(&status).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(fhir.client.get(&status).send().await.unwrap().status(), 404);
    // Again (e.g. after removing the files failed): it finishes, still 202.
    let again = fhir.client.delete(&status).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let unknown = fhir
        .client
        .delete(format!("{}/_operations/export/nosuchjob", fhir.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let key = BlobKey::new(format!("hdsexports/export-{job}/{job}/Patient-1.ndjson")).unwrap();
    assert_eq!(store.head(&key).await.unwrap(), None);

    // Bad kick-offs are the client's mistakes, with an OperationOutcome.
    for bad in [
        "/$export?_type=NoSuchType",
        "/$export?_since=yesterday",
        "/$export?_outputFormat=text/csv",
        "/$export?_container=Bad_Name",
        "/$export?_typeFilter=Patient%3Factive%3Dtrue",
    ] {
        let res = fhir.kick_off(bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome", "{bad}");
    }
    let sync = fhir
        .client
        .get(format!("{}/$export", fhir.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        sync.status(),
        StatusCode::BAD_REQUEST,
        "without Prefer: respond-async"
    );
    assert_eq!(
        fhir.kick_off("/Group/none/$export").await.status(),
        StatusCode::NOT_FOUND
    );
    env.stop().await;
}

#[tokio::test]
async fn embedded_exports_to_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exports");
    let config = BlobConfig::local(&path);
    let env = Env::embedded_custom(|s| s.exports = Some(config.clone())).await;
    let store = hds_core::blob::connect(&config.resolve().unwrap())
        .await
        .unwrap();
    exports_by_level(env, store).await;
}

#[tokio::test]
async fn kafka_exports_to_s3() {
    let s3 = S3Server::start().await;
    let settings = s3.settings(&unique("exports").replace('_', "-"));
    let config = BlobConfig {
        kind: BlobKind::S3,
        local: None,
        s3: Some(settings),
    };
    let env = Env::kafka_custom(|s| s.exports = Some(config.clone())).await;
    let store = hds_core::blob::connect(&config.resolve().unwrap())
        .await
        .unwrap();
    exports_by_level(env, store).await;
}
