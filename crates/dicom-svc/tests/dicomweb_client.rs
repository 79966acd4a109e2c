//! dicom-svc through the real Python DICOMweb client `dicomweb-client`, and every file of
//! `pydicom-data` stored and read back byte for byte, and its compressed and big-endian files
//! transcoded equal to their explicit VR little endian twins, on both stacks. `make test` installs
//! both packages into `~/.cache/hds-py` (scripts/test-tools.sh); the scenario is
//! `tests/python/dicom_clients.py`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Env;
use tokio::process::Command;

async fn scenario(env: Env) {
    env.provision("ws1-dicom").await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/dicom_clients.py");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new(hds_testkit::python())
            .arg(&script)
            .arg(env.url("/ws1-dicom/v2"))
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
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("dicomweb-client: ok"), "{text}");
    assert!(text.contains("pydicom-data: ok"), "{text}");
    assert!(text.contains("compressed: ok"), "{text}");
    // Every study was deleted after its check: nothing is left behind.
    assert!(env.blob_keys("ws1-dicom/").await.is_empty());
    assert_eq!(env.rows("dicom_instances", "ws1-dicom").await, 0);
    env.stop().await;
}

#[tokio::test]
async fn embedded() {
    scenario(Env::embedded().await).await
}

#[tokio::test]
async fn kafka() {
    scenario(Env::kafka().await).await
}
