//! Bad configuration or an unreachable dependency at start: a clear one-line reason and a
//! non-zero exit, never a panic or a hang.

use hds_e2e::run_to_exit;

fn assert_refused(status: std::process::ExitStatus, out: &str, code: i32, says: &str) {
    assert_eq!(status.code(), Some(code), "{out}");
    assert!(out.contains(says), "expected '{says}' in:\n{out}");
    assert!(!out.contains("panicked"), "panicked:\n{out}");
}

#[tokio::test]
async fn a_bad_value_names_its_key() {
    let (status, out) = run_to_exit("fhir-svc", &[], &[("HDS_HTTP__BIND", "not-an-address")]).await;
    assert_refused(status, &out, 2, "http.bind");
    let (status, out) = run_to_exit("dicom-svc", &[], &[("HDS_BLOBS__KIND", "tape")]).await;
    assert_refused(status, &out, 2, "blobs.kind");
}

#[tokio::test]
async fn an_unknown_key_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("svc.toml");
    std::fs::write(&file, "[database]\nurll = \"postgres://x\"\n").unwrap();
    let (status, out) =
        run_to_exit("medtech-svc", &["--config", file.to_str().unwrap()], &[]).await;
    assert_refused(status, &out, 2, "urll");
    let (status, out) = run_to_exit("medtech-svc", &["--config", "/no/such/file.toml"], &[]).await;
    assert_refused(status, &out, 2, "does not exist");
}

#[tokio::test]
async fn no_auth_off_loopback() {
    let (status, out) = run_to_exit("operations-svc", &["--bind", "0.0.0.0:0"], &[]).await;
    assert_refused(
        status,
        &out,
        2,
        "refusing to listen on 0.0.0.0:0 without authentication",
    );
}

#[tokio::test]
async fn unreachable_dependencies_are_named() {
    let (status, out) = run_to_exit(
        "fhir-svc",
        &["--bind", "127.0.0.1:0"],
        &[(
            "HDS_DATABASE__URL",
            "postgres://postgres:secret@127.0.0.1:1/none",
        )],
    )
    .await;
    assert_refused(status, &out, 1, "cannot connect to the database");
    assert!(!out.contains("secret"), "password in the message:\n{out}");

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/fhir.db", dir.path().display());
    let (status, out) = run_to_exit(
        "fhir-svc",
        &["--bind", "127.0.0.1:0"],
        &[
            ("HDS_DATABASE__URL", db.as_str()),
            ("HDS_BUS__KIND", "kafka"),
            ("HDS_BUS__KAFKA__BROKERS", "127.0.0.1:1"),
        ],
    )
    .await;
    assert_refused(status, &out, 1, "kafka at 127.0.0.1:1");
}
