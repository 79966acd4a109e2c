//! The Synthea set (`../shared/data/synthea`, or `HDS_SYNTHEA_DIR`): the hospital and
//! practitioner batches first (conditional creates with `ifNoneExist`), then 120 patient
//! transactions (`urn:uuid:` references, conditional references to practitioners and
//! organisations). Every bundle must load; the stored resource counts per type must equal the
//! bundles'; every reference of every stored resource must resolve to a stored resource.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;

use common::Env;
use serde_json::Value;

fn synthea_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HDS_SYNTHEA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea")
        });
    dir.is_dir().then_some(dir)
}

fn bundles(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json.bz2"))
        .collect();
    // "0-hospital..." and "0-practitioner..." sort first.
    files.sort();
    // The suite loads the two batches and two patients; `make test-synthea` loads everything
    // (HDS_SYNTHEA_LIMIT=all) in a release build.
    let limit: usize = match std::env::var("HDS_SYNTHEA_LIMIT").as_deref() {
        Ok("all") => usize::MAX,
        Ok(n) => n.parse().expect("HDS_SYNTHEA_LIMIT: a number or 'all'"),
        Err(_) => 4,
    };
    files.truncate(limit);
    files
}

fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

async fn synthea_loads_whole(env: Env) {
    let Some(dir) = synthea_dir() else {
        eprintln!("Synthea data not found: skipped (set HDS_SYNTHEA_DIR)");
        return;
    };
    env.provision("ws1-fhir").await;
    let base = env.url("/ws1-fhir");
    let client = reqwest::Client::new();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for file in bundles(&dir) {
        let out = Command::new("bzcat").arg(&file).output().expect("bzcat");
        assert!(out.status.success());
        let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
        for e in bundle["entry"].as_array().unwrap() {
            *expected
                .entry(e["resource"]["resourceType"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let res = client
            .post(&base)
            .header("content-type", "application/fhir+json")
            .body(out.stdout)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{}: {body}", file.display());
        for e in body["entry"].as_array().unwrap() {
            let s = e["response"]["status"].as_str().unwrap();
            assert!(s.starts_with('2'), "{}: entry {s}: {e}", file.display());
        }
    }

    // Everything stored, read back through history (every resource has one version).
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut refs: Vec<(String, String)> = Vec::new();
    let mut url = format!("{base}/_history?_count=1000");
    loop {
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        for e in page["entry"].as_array().unwrap() {
            let r = &e["resource"];
            let rt = r["resourceType"].as_str().unwrap().to_owned();
            let key = format!("{rt}/{}", r["id"].as_str().unwrap());
            let mut found = Vec::new();
            references(r, &mut found);
            refs.extend(found.into_iter().map(|f| (key.clone(), f)));
            keys.insert(key);
            *stored.entry(rt).or_default() += 1;
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(l) => url = l["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(stored, expected, "resource counts per type");
    let dangling: Vec<&(String, String)> = refs
        .iter()
        .filter(|(_, r)| !r.starts_with('#') && !keys.contains(r.as_str()))
        .collect();
    assert!(
        dangling.is_empty(),
        "{} references do not resolve, e.g. {:?}",
        dangling.len(),
        &dangling[..dangling.len().min(5)]
    );
    eprintln!(
        "loaded {} resources of {} types; {} references resolve",
        keys.len(),
        stored.len(),
        refs.len()
    );
    env.stop().await;
}

fn big_bundles(s: &mut fhir_svc::Settings) {
    // Synthea's patient transactions have up to a few thousand entries.
    s.fhir.max_bundle_entries = 10_000;
}

#[tokio::test]
async fn embedded_synthea_loads_whole() {
    synthea_loads_whole(Env::embedded_custom(big_bundles).await).await
}

#[tokio::test]
async fn kafka_synthea_loads_whole() {
    synthea_loads_whole(Env::kafka_custom(big_bundles).await).await
}
