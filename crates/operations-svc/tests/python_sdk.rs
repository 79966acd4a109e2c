//! The "done when": the real Azure SDK for Python, `azure-mgmt-healthcareapis`
//! (PyPI), drives the management API through a workspace, a FHIR service, a DICOM service,
//! an IoT connector and its FHIR destination, with the real data-plane services carrying out
//! every operation, on PostgreSQL + Kafka (tansu) as deployed. `make test` installs the SDK into
//! `~/.cache/hds-py` (scripts/test-tools.sh); the scenario is
//! `tests/python/healthcareapis_sdk.py`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Backend, Stack};
use tokio::process::Command;

#[tokio::test]
async fn the_azure_sdk_for_python_manages_every_resource_kind() {
    let stack = Stack::with_data_plane(Backend::Kafka).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/healthcareapis_sdk.py");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new(hds_testkit::python())
            .arg(&script)
            .arg(&stack.base)
            .output(),
    )
    .await
    .expect("the scenario finished")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("azure-mgmt-healthcareapis: ok"), "{text}");
    // The SDK deleted everything: the data plane serves none of it any more.
    for base in [&stack.fhir, &stack.dicom, &stack.medtech] {
        let listed: serde_json::Value =
            reqwest::get(format!("{}/instances", base.as_ref().unwrap()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(listed["value"], serde_json::json!([]), "{base:?}");
    }
}
