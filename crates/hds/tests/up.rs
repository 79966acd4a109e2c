//! `hds up` as a newcomer runs it: four services in one process on embedded defaults, the
//! default workspace provisioned, URLs printed; Ctrl-C/SIGTERM stops it cleanly and the data
//! survives a restart.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Up {
    child: Child,
    lines: Vec<String>,
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn up(data: &std::path::Path, ports: [u16; 4]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hds"))
        .arg("up")
        .arg("--data-dir")
        .arg(data)
        .args(["--operations-port", &ports[0].to_string()])
        .args(["--fhir-port", &ports[1].to_string()])
        .args(["--dicom-port", &ports[2].to_string()])
        .args(["--medtech-port", &ports[3].to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let read = async {
        while let Some(line) = out.next_line().await.unwrap() {
            let done = line.starts_with("stop with");
            lines.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("hds up printed its URLs within 120 s");
    Up { child, lines }
}

impl Up {
    fn url(&self, service: &str) -> String {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{service} ")))
            .unwrap_or_else(|| panic!("no line for {service}: {:?}", self.lines))
            .to_owned()
    }

    fn try_curl(&self) -> String {
        let line = self
            .lines
            .iter()
            .find(|l| l.starts_with("try: curl"))
            .unwrap();
        line.split('\'').nth(1).unwrap().to_owned()
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("stopped within 60 s")
            .unwrap();
        assert!(status.success(), "hds up exited with {status}");
    }
}

async fn instances(base: &str) -> Vec<String> {
    let (root, _) = base.rsplit_once('/').unwrap();
    let v: serde_json::Value = reqwest::get(format!("{root}/instances"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn up_serves_all_four_and_keeps_data_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let ports = [port(), port(), port(), port()];
    let first = up(data.path(), ports).await;

    assert_eq!(
        first.url("operations-svc"),
        format!("http://127.0.0.1:{}", ports[0])
    );
    assert_eq!(
        first.url("fhir-svc"),
        format!("http://127.0.0.1:{}/default-fhir", ports[1])
    );
    assert_eq!(
        first.url("dicom-svc"),
        format!("http://127.0.0.1:{}/default-dicom", ports[2])
    );
    assert_eq!(
        first.url("medtech-svc"),
        format!("http://127.0.0.1:{}/default-medtech", ports[3])
    );
    for p in ports {
        let r = reqwest::get(format!("http://127.0.0.1:{p}/health/ready"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "port {p}");
    }
    for (svc, name) in [
        ("fhir-svc", "default-fhir"),
        ("dicom-svc", "default-dicom"),
        ("medtech-svc", "default-medtech"),
    ] {
        assert_eq!(instances(&first.url(svc)).await, vec![name.to_owned()]);
    }
    // The suggested first curl works.
    let op: serde_json::Value = reqwest::get(first.try_curl())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(op["status"], "Succeeded", "{op}");
    first.stop().await;

    // Same data folder: same instances, provisioned once, nothing new to do.
    let second = up(data.path(), ports).await;
    assert_eq!(
        instances(&second.url("fhir-svc")).await,
        vec!["default-fhir".to_owned()]
    );
    let again: serde_json::Value = reqwest::get(second.try_curl())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "Succeeded");
    assert_eq!(
        again["endTime"], op["endTime"],
        "the workspace was provisioned again"
    );
    second.stop().await;
}

#[tokio::test]
async fn up_with_auth_requires_tokens_from_hds_token() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hds"))
        .arg("up")
        .arg("--auth")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--operations-port", "0"])
        .args(["--fhir-port", "0"])
        .args(["--dicom-port", "0"])
        .args(["--medtech-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    // Ports 0: the services bind what is free and `hds up` prints where (no port race).
    let mut origin = None;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(l) = out.next_line().await.unwrap() {
            if let Some(url) = l.strip_prefix("fhir-svc ") {
                let rest = url.strip_prefix("http://").unwrap();
                origin = Some(format!("http://{}", rest.split('/').next().unwrap()));
            }
            if l.starts_with("stop with") {
                break;
            }
        }
    })
    .await
    .unwrap();
    let fhir = format!(
        "{}/instances",
        origin.expect("hds up printed the fhir-svc URL")
    );
    assert_eq!(reqwest::get(&fhir).await.unwrap().status(), 401);

    let token = std::process::Command::new(env!("CARGO_BIN_EXE_hds"))
        .args(["token", "--role", "FHIR Data Reader", "--key-dir"])
        .arg(data.path().join("auth"))
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let ok = reqwest::Client::new()
        .get(&fhir)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let unknown_role = std::process::Command::new(env!("CARGO_BIN_EXE_hds"))
        .args(["token", "--role", "FHIR Data Boss"])
        .output()
        .unwrap();
    assert_eq!(unknown_role.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown_role.stderr).contains("unknown role"));
    let _ = child.kill().await;
}
