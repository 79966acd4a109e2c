//! The four per-service binaries as separate processes on tansu (Kafka), PostgreSQL and
//! s3s-fs (S3). operations-svc provisions a workspace: its commands cross Kafka to each
//! data-plane service, whose status reports cross back; then every process stops cleanly on
//! SIGTERM.

use std::time::{Duration, Instant};

use hds_e2e::Stack;
use hds_testkit::unique;
use operations_svc::bootstrap::{plan, Bootstrap};

#[tokio::test]
async fn four_processes_provision_a_workspace_over_kafka() {
    let workspace = unique("e2e")
        .replace('_', "")
        .chars()
        .take(20)
        .collect::<String>();
    let stack = Stack::start(|name, env| {
        if name == "operations-svc" {
            env.insert("HDS_BOOTSTRAP__WORKSPACE".into(), workspace.clone());
        }
    })
    .await;
    let base = |name: &str| stack.base(name);
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
    stack.stop_cleanly().await;
}
