//! Helpers for the end-to-end tests: the built service binaries as child processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A binary of this workspace, built next to the test executable (`make test` builds them
/// first with `cargo build --workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A service process with its output captured in a file.
pub struct Service {
    pub name: &'static str,
    pub base: String,
    log: PathBuf,
    child: Child,
}

impl Service {
    pub fn spawn(
        name: &'static str,
        port: u16,
        env: &BTreeMap<String, String>,
        dir: &std::path::Path,
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        // Appended to: a service started again keeps the log of its earlier run.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env)
            .env("HDS_HTTP__BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .expect("start service");
        Service {
            name,
            base: format!("http://127.0.0.1:{port}"),
            log,
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/health/ready` until it answers 200.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in 90 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown of any kind (nothing flushed, nothing committed).
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("running");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 60 s of SIGTERM", self.name))
            .expect("wait");
        (status, self.log())
    }
}

/// Runs a binary to completion (it is expected to refuse to start): exit status and output.
pub async fn run_to_exit(name: &str, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .args(args)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} hung instead of refusing to start"))
    .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// The four service binaries as separate processes on one tansu broker, PostgreSQL (a schema
/// each) and, for dicom-svc, s3s-fs: operations-svc and the data plane as deployed.
/// medtech-svc writes to this fhir-svc; DICOM services' `serviceUrl` names this dicom-svc.
pub struct Stack {
    pub services: Vec<Service>,
    /// Port and environment of each service, to start one again.
    envs: BTreeMap<&'static str, (u16, BTreeMap<String, String>)>,
    pub tansu: hds_testkit::Tansu,
    _s3: hds_testkit::S3Server,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// Starts the four services and waits until each is ready. `customize` may add or change
    /// the environment of each (`(service name, env)`).
    pub async fn start(customize: impl Fn(&str, &mut BTreeMap<String, String>)) -> Self {
        use hds_testkit::{free_port, pg_url, unique, S3Server, Tansu};
        let tansu = Tansu::start().await;
        let s3 = S3Server::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let names = ["fhir-svc", "dicom-svc", "medtech-svc", "operations-svc"];
        let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let base = |name: &str| {
            let i = names.iter().position(|n| *n == name).expect("service");
            format!("http://127.0.0.1:{}", ports[i])
        };
        let mut services = Vec::new();
        let mut envs = BTreeMap::new();
        for (name, port) in names.into_iter().zip(ports.iter().copied()) {
            let mut env: BTreeMap<String, String> = [
                ("HDS_DATABASE__URL", pg_url()),
                (
                    "HDS_DATABASE__SCHEMA",
                    unique(name.trim_end_matches("-svc")),
                ),
                ("HDS_BUS__KIND", "kafka".into()),
                ("HDS_BUS__KAFKA__BROKERS", tansu.brokers()),
                ("HDS_BUS__KAFKA__SESSION_TIMEOUT_MS", "6000".into()),
                ("HDS_BUS__KAFKA__MAX_POLL_INTERVAL_MS", "10000".into()),
                // tansu 0.6 deletes every topic of the cluster on DeleteTopics (see
                // `KafkaSettings::delete_topics`); these stacks delete instances.
                ("HDS_BUS__KAFKA__DELETE_TOPICS", "false".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            match name {
                "dicom-svc" => {
                    for (k, v) in [
                        ("HDS_BLOBS__KIND", "s3".to_owned()),
                        ("HDS_BLOBS__S3__BUCKET", unique("e2e").replace('_', "-")),
                        ("HDS_BLOBS__S3__ENDPOINT", s3.endpoint()),
                        ("HDS_BLOBS__S3__ACCESS_KEY_ID", "test".into()),
                        ("HDS_BLOBS__S3__SECRET_ACCESS_KEY", "test".into()),
                    ] {
                        env.insert(k.into(), v);
                    }
                }
                "medtech-svc" => {
                    env.insert("HDS_MEDTECH__FHIR_BASE_URL".into(), base("fhir-svc"));
                }
                "operations-svc" => {
                    env.insert("HDS_MANAGEMENT__DICOM_BASE_URL".into(), base("dicom-svc"));
                }
                _ => {}
            }
            customize(name, &mut env);
            services.push(Service::spawn(name, port, &env, dir.path()));
            envs.insert(name, (port, env));
        }
        for s in services.iter_mut() {
            s.wait_ready().await;
        }
        Stack {
            services,
            envs,
            tansu,
            _s3: s3,
            dir,
        }
    }

    /// The base URL of a service (`fhir-svc`, ...), running or stopped.
    pub fn base(&self, name: &str) -> String {
        let (port, _) = self
            .envs
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the stack"));
        format!("http://127.0.0.1:{port}")
    }

    /// Stops one service (SIGTERM; it must exit 0).
    pub async fn stop(&mut self, name: &str) {
        let i = self
            .services
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let (status, log) = self.services.remove(i).terminate().await;
        assert!(status.success(), "{name} exited with {status}:\n{log}");
    }

    /// Kills one service with SIGKILL, as a crash or an OOM kill would.
    pub async fn kill(&mut self, name: &str) {
        let i = self
            .services
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        self.services.remove(i).kill().await;
    }

    /// Starts a stopped service again, on its port, database and settings; waits until ready.
    pub async fn start_again(&mut self, name: &str) {
        let (&name, (port, env)) = self
            .envs
            .get_key_value(name)
            .unwrap_or_else(|| panic!("no {name} in the stack"));
        let mut service = Service::spawn(name, *port, env, self.dir.path());
        service.wait_ready().await;
        self.services.push(service);
    }

    /// The logs of every service, for failure messages.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|s| format!("--- {} ---\n{}", s.name, s.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM to every service: each must exit 0, without a panic, saying it stopped.
    pub async fn stop_cleanly(self) {
        for s in self.services {
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
}

/// Polls `check` until it returns `Some`, at most `secs` seconds (a bound, not a timing
/// assumption); `what` names what was awaited in the panic.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or(secs, what, String::new, check).await
}

/// As [`eventually`]; a timeout's panic also shows `context()` (say, the stack's logs), so
/// that a wait that runs out can be told apart from a slow machine.
pub async fn eventually_or<T, F, Fut>(
    secs: u64,
    what: &str,
    context: impl Fn() -> String,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
