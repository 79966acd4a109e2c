//! The real backends hds tests run against, started on loopback by the tests themselves:
//! - [`Tansu`]: a Kafka-compatible broker (the `tansu` binary, SQLite storage), one per test
//!   that needs one, so a test may stop and restart its broker;
//! - [`S3Server`]: an S3-compatible server (the `s3s-fs` binary) over a fresh folder;
//! - PostgreSQL from `HDS_TEST_DATABASE_URL` (default: the local server), one schema per test.
//!
//! `make test` installs the two binaries (see `scripts/test-tools.sh`); they are looked up in
//! `HDS_TANSU_BIN` / `HDS_S3S_BIN`, then on `PATH`, then in `~/.cargo/bin`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hds_core::blob::s3::S3Settings;
use hds_core::bus::kafka::{KafkaBus, KafkaSettings};
use hds_core::bus::EventBus;
use hds_core::db::{Database, DatabaseSettings};
use tokio::process::{Child, Command};

/// A short unique lowercase name: `{prefix}_{8 hex}`; topics, schemas, buckets and groups.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// A free loopback port (bound and released; good enough for a test's own server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn find_binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidate = home.join(".cargo/bin").join(name);
    assert!(
        candidate.is_file(),
        "`{name}` not found (set {env}, or run `make test`, which installs it)"
    );
    candidate
}

async fn wait_for_port(addr: SocketAddr, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening on {addr}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tansu broker with SQLite storage in a folder of its own.
pub struct Tansu {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Tansu {
    pub async fn start() -> Self {
        let mut t = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            child: None,
        };
        t.launch().await;
        t
    }

    async fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.path().join("tansu.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("tansu log");
        // tansu 0.6 resolves the storage path against its working directory.
        let mut child = Command::new(find_binary("HDS_TANSU_BIN", "tansu"))
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start tansu");
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        wait_for_port(addr, "tansu", &mut child, &log_path).await;
        self.child = Some(child);
        // Listening is not serving yet: wait until a metadata request is answered.
        let bus = KafkaBus::new(&self.settings()).expect("kafka client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = bus.check().await {
            assert!(Instant::now() < deadline, "tansu not answering: {e}");
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client settings suited to tansu (see INFRA.md: short group timeouts).
    pub fn settings(&self) -> KafkaSettings {
        let mut s = KafkaSettings::new(self.brokers());
        s.session_timeout_ms = 6_000;
        s.max_poll_interval_ms = 10_000;
        s.message_timeout_ms = 10_000;
        s
    }

    /// Kills the broker (as a crash would); its storage stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }

    /// Starts the broker again on the same port and storage.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }
}

/// An s3s-fs server over a fresh folder, credentials `test`/`test`.
pub struct S3Server {
    dir: tempfile::TempDir,
    port: u16,
    _child: Child,
}

impl S3Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("s3 data dir");
        let log_path = dir.path().join("s3s.log");
        let log = std::fs::File::create(&log_path).expect("s3s log");
        let mut child = Command::new(find_binary("HDS_S3S_BIN", "s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "test", "--secret-key", "test"])
            .arg(&data)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start s3s-fs");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, "s3s-fs", &mut child, &log_path).await;
        Self {
            dir,
            port,
            _child: child,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder that holds the buckets (to check for leftovers).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn settings(&self, bucket: &str) -> S3Settings {
        S3Settings {
            bucket: bucket.to_owned(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            force_path_style: true,
            part_size: 5 * 1024 * 1024,
            create_bucket: true,
        }
    }
}

/// `HDS_TEST_DATABASE_URL`, or the local PostgreSQL server.
pub fn pg_url() -> String {
    std::env::var("HDS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// PostgreSQL settings in a fresh schema of the test database.
pub fn pg_settings(prefix: &str) -> DatabaseSettings {
    let mut s = DatabaseSettings::new(pg_url()).with_schema(unique(prefix));
    s.max_connections = 5;
    s
}

pub async fn pg_database(prefix: &str) -> Database {
    Database::connect(&pg_settings(prefix))
        .await
        .expect("connect to the test PostgreSQL (set HDS_TEST_DATABASE_URL)")
}

/// A SQLite database in `dir`.
pub async fn sqlite_database(dir: &Path, name: &str) -> Database {
    Database::connect(&DatabaseSettings::new(hds_core::db::sqlite_url(
        &dir.join(format!("{name}.db")),
    )))
    .await
    .expect("open SQLite")
}

/// The Python of the project's test virtualenv (`HDS_PY_VENV`, default `~/.cache/hds-py/venv`,
/// made by scripts/test-tools.sh), with the real clients the tests drive.
pub fn python() -> std::path::PathBuf {
    let venv = std::env::var_os("HDS_PY_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/hds-py/venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/test-tools.sh (make test does)",
        python.display()
    );
    python
}

/// The official R4 examples package (`HDS_FHIR_EXAMPLES`, default `~/.cache/hds-fhir/package`,
/// fetched by scripts/fhir-definitions.py).
pub fn fhir_examples() -> std::path::PathBuf {
    let dir = std::env::var_os("HDS_FHIR_EXAMPLES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/hds-fhir/package"));
    assert!(
        dir.is_dir(),
        "{} missing: run scripts/fhir-definitions.py --fetch-only (make test does)",
        dir.display()
    );
    dir
}

fn home() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("HOME").expect("HOME is set"))
}
