//! The FHIR service through the real Python clients fhirpy and fhirclient (PyPI), against
//! `hds up`: CRUD, vread, history, conditional create/update/delete, JSON Patch, a
//! transaction. `make test` installs the clients into `~/.cache/hds-py` (see
//! scripts/test-tools.sh); the scenario is `tests/python/fhir_clients.py`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn fhirpy_and_fhirclient_work_against_hds() {
    let data = tempfile::tempdir().unwrap();
    let fhir_port = port();
    let mut up = Command::new(env!("CARGO_BIN_EXE_hds"))
        .arg("up")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--operations-port", &port().to_string()])
        .args(["--fhir-port", &fhir_port.to_string()])
        .args(["--dicom-port", &port().to_string()])
        .args(["--medtech-port", &port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Its log, kept to say why it stopped if it does not start (it happened once, 2026-12-07).
    let mut log_lines = BufReader::new(up.stderr.take().unwrap()).lines();
    let log = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok(Some(l)) = log_lines.next_line().await {
            kept.push(l);
        }
        kept.join("\n")
    });
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut fhir = None;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(url) = l.strip_prefix("fhir-svc ") {
                fhir = Some(url.to_owned());
            }
            if l.starts_with("stop with") {
                break;
            }
        }
    })
    .await
    .expect("hds up started");
    let Some(base) = fhir else {
        let status = up.wait().await;
        panic!(
            "hds up printed no fhir-svc URL; it ended with {status:?}; its log:\n{}",
            log.await.unwrap_or_default()
        );
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/fhir_clients.py");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new(hds_testkit::python())
            .arg(&script)
            .arg(&base)
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
    assert!(text.contains("fhirpy and fhirclient: ok"), "{text}");
    let _ = up.kill().await;
}
