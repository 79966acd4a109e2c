//! The four per-service binaries as separate processes on tansu (Kafka), PostgreSQL and
//! s3s-fs (S3). operations-svc provisions a workspace: its commands cross Kafka to each
//! data-plane service, whose status reports cross back; then every process stops cleanly on
//! SIGTERM.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hds_e2e::Service;
use hds_testkit::{free_port, pg_url, unique, S3Server, Tansu};
use operations_svc::bootstrap::{plan, Bootstrap};

#[tokio::test]
async fn four_processes_provision_a_workspace_over_kafka() {
    let tansu = Tansu::start().await;
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let workspace = unique("e2e")
        .replace('_', "")
        .chars()
        .take(20)
        .collect::<String>();

    let common = |schema: &str| -> BTreeMap<String, String> {
        [
            ("HDS_DATABASE__URL", pg_url()),
            ("HDS_DATABASE__SCHEMA", unique(schema)),
            ("HDS_BUS__KIND", "kafka".into()),
            ("HDS_BUS__KAFKA__BROKERS", tansu.brokers()),
            ("HDS_BUS__KAFKA__SESSION_TIMEOUT_MS", "6000".into()),
            ("HDS_BUS__KAFKA__MAX_POLL_INTERVAL_MS", "10000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let mut ops_env = common("ops");
    ops_env.insert("HDS_BOOTSTRAP__WORKSPACE".into(), workspace.clone());
    let mut dicom_env = common("dicom");
    let bucket = unique("e2e").replace('_', "-");
    for (k, v) in [
        ("HDS_BLOBS__KIND", "s3".to_owned()),
        ("HDS_BLOBS__S3__BUCKET", bucket),
        ("HDS_BLOBS__S3__ENDPOINT", s3.endpoint()),
        ("HDS_BLOBS__S3__ACCESS_KEY_ID", "test".into()),
        ("HDS_BLOBS__S3__SECRET_ACCESS_KEY", "test".into()),
    ] {
        dicom_env.insert(k.into(), v);
    }

    let mut services = vec![
        Service::spawn("fhir-svc", free_port(), &common("fhir"), dir.path()),
        Service::spawn("dicom-svc", free_port(), &dicom_env, dir.path()),
        Service::spawn("medtech-svc", free_port(), &common("medtech"), dir.path()),
        Service::spawn("operations-svc", free_port(), &ops_env, dir.path()),
    ];
    for s in services.iter_mut() {
        s.wait_ready().await;
    }
    let base = |name: &str| {
        services
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .base
            .clone()
    };
    let client = reqwest::Client::new();

    // operations-svc asked for three instances; each operation ends only when the data-plane
    // service that owns it reported back over Kafka.
    let bootstrap = Bootstrap {
        workspace: workspace.parse().unwrap(),
        ..Bootstrap::default()
    };
    let planned = plan(&bootstrap);
    assert_eq!(planned.len(), 3);
    for p in &planned {
        let url = format!(
            "{}/subscriptions/{}/providers/Microsoft.HealthcareApis/locations/{}/operationresults/{}?api-version=2024-03-31",
            base("operations-svc"), bootstrap.subscription_id, bootstrap.location, p.operation_id
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let result = loop {
            let r: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
            if r["status"] == "Succeeded" {
                break r;
            }
            assert!(
                r["status"] == "Requested" || r["status"] == "Running",
                "operation for {} went wrong: {r}",
                p.instance
            );
            assert!(
                Instant::now() < deadline,
                "operation for {} still {r} after 90 s",
                p.instance
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(result["name"], p.operation_id.as_str());
        assert!(result["endTime"].is_string());

        let owner = p.kind.service_binary();
        let listed: serde_json::Value = client
            .get(format!("{}/instances", base(owner)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = listed["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![p.instance.to_string().as_str()],
            "{owner} instances"
        );
    }

    // Graceful shutdown: every process exits 0 on SIGTERM.
    for s in services {
        let name = s.name;
        let (status, log) = s.terminate().await;
        assert!(status.success(), "{name} exited with {status}:\n{log}");
        assert!(!log.contains("panicked"), "{name} panicked:\n{log}");
        assert!(
            log.contains(&format!("{name} stopped")),
            "{name} did not stop cleanly:\n{log}"
        );
    }
}
