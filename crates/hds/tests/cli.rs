//! `hds workspace|fhir|dicom|medtech ...` against operations-svc and the data plane as
//! separate processes (PostgreSQL + tansu): the commands create, list and delete real
//! resources, show an operation's progress while the data plane has not carried it out,
//! and exit non-zero with the ARM error (at PUT time, or the operation's) on failure.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use hds_e2e::{binary, Stack};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const SUB: &str = "22222222-3333-4444-5555-666677778888";
const GROUP: &str = "cli-rg";
const WS: &str = "cliws";

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn command(stack: &Stack, args: &[&str]) -> Command {
    let mut c = Command::new(binary("hds"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HDS_MANAGEMENT_URL", stack.base("operations-svc"))
        .env("HDS_SUBSCRIPTION", SUB)
        .env("HDS_RESOURCE_GROUP", GROUP)
        .args(args)
        .kill_on_drop(true);
    c
}

async fn hds(stack: &Stack, args: &[&str]) -> Out {
    let out = tokio::time::timeout(Duration::from_secs(60), command(stack, args).output())
        .await
        .unwrap_or_else(|_| panic!("hds {args:?} did not finish in 60 s:\n{}", stack.logs()))
        .unwrap();
    Out {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(stack: &Stack, args: &[&str]) -> Out {
    let out = hds(stack, args).await;
    assert!(
        out.status.success(),
        "hds {args:?}: {out}\n{}",
        stack.logs()
    );
    out
}

async fn fails(stack: &Stack, args: &[&str]) -> Out {
    let out = hds(stack, args).await;
    assert!(!out.status.success(), "hds {args:?} succeeded: {out}");
    out
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn instances(stack: &Stack, service: &str) -> Vec<String> {
    let listed: Value = reqwest::get(format!("{}/instances", stack.base(service)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The resource as the management API shows it.
async fn resource(stack: &Stack, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!(
        "{}/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces/{WS}/{path}?api-version=2024-03-31",
        stack.base("operations-svc")
    ))
    .await
    .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_cli_manages_workspaces_and_services_end_to_end() {
    let mut stack = Stack::start(|name, env| {
        if name == "operations-svc" {
            env.insert("HDS_BOOTSTRAP__ENABLED".into(), "false".into());
        }
    })
    .await;
    let files = tempfile::tempdir().unwrap();
    let device_mapping = write(
        files.path(),
        "iot.json",
        &json!({"deviceMapping": {"content": {
            "templateType": "CollectionContent",
            "template": [{"templateType": "JsonPathContent", "template": {
                "typeName": "heartrate", "typeMatchExpression": "$..[?(@heartRate)]",
                "deviceIdExpression": "$.deviceId", "timestampExpression": "$.endDate",
                "values": [{"required": true, "valueExpression": "$.heartRate", "valueName": "hr"}]}}]
        }}}),
    );
    let bad_mapping = write(
        files.path(),
        "bad.json",
        &json!({"deviceMapping": {"content": {
            "templateType": "CollectionContent",
            "template": [{"templateType": "NoSuchTemplate", "template": {}}]
        }}}),
    );

    // Workspace.
    let out = ok(&stack, &["workspace", "create", WS]).await;
    assert!(
        out.stdout.trim().ends_with(&format!(
            "/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces/{WS}"
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!("workspace {WS}: Succeeded")),
        "{out}"
    );
    let out = ok(&stack, &["workspace", "list"]).await;
    assert_eq!(out.stdout, format!("{WS}\tSucceeded\tlocal\n"), "{out}");

    // A FHIR service and a DICOM service: the commands return once they serve.
    let out = ok(&stack, &["fhir", "create", "-w", WS, "fhir1"]).await;
    assert!(
        out.stderr.contains("FHIR service fhir1: Succeeded"),
        "{out}"
    );
    assert!(out.stdout.trim().ends_with("/fhirservices/fhir1"), "{out}");
    assert_eq!(instances(&stack, "fhir-svc").await, [format!("{WS}-fhir1")]);
    let r = reqwest::get(format!("{}/{WS}-fhir1/metadata", stack.base("fhir-svc")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the FHIR service serves");
    let out = ok(&stack, &["dicom", "create", "-w", WS, "dicom1"]).await;
    assert!(
        out.stderr.contains("DICOM service dicom1: Succeeded"),
        "{out}"
    );
    assert_eq!(
        instances(&stack, "dicom-svc").await,
        [format!("{WS}-dicom1")]
    );

    // Progress: with medtech-svc down the operation stays Requested, and the command says so
    // while it waits; it finishes when medtech-svc is back and has carried it out.
    stack.stop("medtech-svc").await;
    let mut child = command(
        &stack,
        &[
            "medtech",
            "create",
            "-w",
            WS,
            "iot1",
            "--properties",
            &device_mapping,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut progress = String::new();
    let mut buf = [0u8; 256];
    let waiting = tokio::time::timeout(Duration::from_secs(30), async {
        while !progress.contains("IoT connector iot1: Requested.") {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "hds medtech create ended early: {progress}");
            progress.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(waiting.is_ok(), "no progress shown: {progress:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the command returned before the operation ended"
    );
    let (status, body) = resource(&stack, "iotconnectors/iot1").await;
    assert_eq!(status, 200);
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    stack.start_again("medtech-svc").await;
    let mut rest = String::new();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        stderr.read_to_string(&mut rest).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("hds medtech create finished once medtech-svc was back");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    progress.push_str(&rest);
    assert!(status.success(), "{status}: {progress}");
    assert!(
        progress.contains("IoT connector iot1: Succeeded"),
        "{progress}"
    );
    assert!(stdout.trim().ends_with("/iotconnectors/iot1"), "{stdout}");
    assert_eq!(
        instances(&stack, "medtech-svc").await,
        [format!("{WS}-iot1")]
    );

    // Its FHIR destination, in the FHIR service made above.
    let (_, fhir) = resource(&stack, "fhirservices/fhir1").await;
    let destination = write(
        files.path(),
        "dest.json",
        &json!({
            "resourceIdentityResolutionType": "Create",
            "fhirServiceResourceId": fhir["id"],
            "fhirMapping": {"content": {"templateType": "CollectionFhir", "template": [
                {"templateType": "CodeValueFhir", "template": {
                    "typeName": "heartrate", "periodInterval": 0,
                    "codes": [{"system": "http://loinc.org", "code": "8867-4"}],
                    "value": {"valueName": "hr", "valueType": "Quantity", "unit": "count/min"}}}
            ]}}
        }),
    );
    let out = ok(
        &stack,
        &[
            "medtech",
            "destination",
            "create",
            "-w",
            WS,
            "--connector",
            "iot1",
            "dest1",
            "--properties",
            &destination,
        ],
    )
    .await;
    assert!(
        out.stderr.contains("FHIR destination dest1: Succeeded"),
        "{out}"
    );
    let out = ok(&stack, &["medtech", "list", "-w", WS]).await;
    assert_eq!(out.stdout, "iot1\tSucceeded\tlocal\n", "{out}");

    // A data-plane failure: medtech-svc refuses the mapping; the operation and the resource
    // end Failed, and the command exits non-zero with the reason.
    let out = fails(
        &stack,
        &[
            "medtech",
            "create",
            "-w",
            WS,
            "bad1",
            "--properties",
            &bad_mapping,
        ],
    )
    .await;
    assert!(
        out.stderr
            .contains("IoT connector bad1 Failed: InvalidMapping"),
        "{out}"
    );
    assert!(
        out.stderr.contains("$.deviceMapping.content.template[0]"),
        "{out}"
    );
    let (_, body) = resource(&stack, "iotconnectors/bad1").await;
    assert_eq!(body["properties"]["provisioningState"], "Failed", "{body}");
    let out = ok(&stack, &["iot", "list", "-w", WS]).await;
    assert_eq!(
        out.stdout, "bad1\tFailed\tlocal\niot1\tSucceeded\tlocal\n",
        "{out}"
    );

    // ARM errors at request time: the status and code, non-zero exit, nothing created.
    let out = fails(&stack, &["fhir", "create", "-w", "nothere", "fhir2"]).await;
    assert!(
        out.stderr.contains("404") && out.stderr.contains("ParentResourceNotFound"),
        "{out}"
    );
    let out = fails(&stack, &["dicom", "create", "-w", WS, "Bad_Name"]).await;
    assert!(
        out.stderr.contains("400") && out.stderr.contains("InvalidResourceName"),
        "{out}"
    );
    let out = fails(&stack, &["workspace", "delete", WS]).await;
    assert!(
        out.stderr.contains("409") && out.stderr.contains("NestedResourcesExist"),
        "{out}"
    );
    let out = fails(
        &stack,
        &[
            "fhir",
            "create",
            "-w",
            WS,
            "fhir2",
            "--url",
            "http://127.0.0.1:1",
        ],
    )
    .await;
    assert!(
        out.stderr.contains("cannot reach the management API"),
        "{out}"
    );

    // Deletion, children first; then the data plane serves none of it.
    ok(
        &stack,
        &[
            "medtech",
            "destination",
            "delete",
            "-w",
            WS,
            "--connector",
            "iot1",
            "dest1",
        ],
    )
    .await;
    ok(&stack, &["medtech", "delete", "-w", WS, "iot1"]).await;
    let out = ok(&stack, &["fhir", "delete", "-w", WS, "fhir1"]).await;
    assert!(
        out.stderr.contains("FHIR service fhir1: Succeeded"),
        "{out}"
    );
    ok(&stack, &["dicom", "delete", "-w", WS, "dicom1"]).await;
    let out = ok(&stack, &["dicom", "delete", "-w", WS, "dicom1"]).await;
    assert_eq!(out.stdout, "DICOM service dicom1 does not exist\n", "{out}");
    for service in ["fhir-svc", "dicom-svc"] {
        assert!(instances(&stack, service).await.is_empty(), "{service}");
    }
    assert_eq!(
        instances(&stack, "medtech-svc").await,
        Vec::<String>::new(),
        "medtech-svc"
    );
    let r = reqwest::get(format!("{}/{WS}-fhir1/metadata", stack.base("fhir-svc")))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the deleted FHIR service's URL");
    let (status, _) = resource(&stack, "fhirservices/fhir1").await;
    assert_eq!(status, 404);
    // A resource whose creation failed can be deleted, and then its workspace.
    ok(&stack, &["medtech", "delete", "-w", WS, "bad1"]).await;
    let out = ok(&stack, &["workspace", "delete", WS]).await;
    assert!(
        out.stderr.contains(&format!("workspace {WS}: Succeeded")),
        "{out}"
    );
    let out = ok(&stack, &["workspace", "list"]).await;
    assert_eq!(out.stdout, "", "{out}");
    stack.stop_cleanly().await;
}
