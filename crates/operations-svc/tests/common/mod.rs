//! The stacks the management API's tests run on: operations-svc, and when a test needs
//! operations to finish, the real fhir-svc, dicom-svc and medtech-svc in the same process,
//! meeting only through the bus (embedded on SQLite, or tansu on PostgreSQL).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hds_core::blob::local::LocalBlobStore;
use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::kafka::KafkaBus;
use hds_core::bus::SharedBus;
use hds_core::db::Database;
use hds_core::CancellationToken;
use hds_testkit::Tansu;
use serde_json::Value;

pub const API: &str = "api-version=2024-03-31";
pub const SUB: &str = "11111111-2222-3333-4444-555566667777";
pub const GROUP: &str = "rg_test.1";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Kafka,
}

pub struct Stack {
    pub base: String,
    /// Base URLs of the data-plane services, when started.
    pub fhir: Option<String>,
    pub dicom: Option<String>,
    pub medtech: Option<String>,
    /// fhir-svc's database, when started (for tests that need to break its data).
    pub fhir_db: Option<Database>,
    /// The bus every service of the stack is on (for tests that report as a service would).
    pub bus: SharedBus,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    _tansu: Option<Tansu>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

impl Stack {
    /// operations-svc alone: its operations stay `Requested`, nobody carries them out.
    pub async fn control_plane(backend: Backend) -> Self {
        Self::start(backend, false, |_| {}).await
    }

    /// operations-svc alone, with its settings changed by `customize`.
    pub async fn control_plane_with(
        backend: Backend,
        customize: impl FnOnce(&mut operations_svc::Settings),
    ) -> Self {
        Self::start(backend, false, customize).await
    }

    /// operations-svc and the three data-plane services.
    pub async fn with_data_plane(backend: Backend) -> Self {
        Self::start(backend, true, |_| {}).await
    }

    /// operations-svc, with its settings changed by `customize`, and the data plane.
    pub async fn with_data_plane_and(
        backend: Backend,
        customize: impl FnOnce(&mut operations_svc::Settings),
    ) -> Self {
        Self::start(backend, true, customize).await
    }

    async fn database(backend: Backend, dir: &std::path::Path, name: &str) -> Database {
        match backend {
            Backend::Embedded => hds_testkit::sqlite_database(dir, name).await,
            Backend::Kafka => hds_testkit::pg_database(name).await,
        }
    }

    async fn start(
        backend: Backend,
        data_plane: bool,
        customize: impl FnOnce(&mut operations_svc::Settings),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (bus, tansu): (SharedBus, _) = match backend {
            Backend::Embedded => {
                let bus_db = hds_testkit::sqlite_database(dir.path(), "bus").await;
                let bus = EmbeddedBus::open(bus_db, EmbeddedBusSettings::new("unused"))
                    .await
                    .unwrap();
                (Arc::new(bus), None)
            }
            Backend::Kafka => {
                let tansu = Tansu::start().await;
                let mut settings = tansu.settings();
                // tansu 0.6's DeleteTopics deletes every topic of the cluster, and its
                // storage then fails every request (see `KafkaSettings::delete_topics`).
                settings.delete_topics = false;
                (Arc::new(KafkaBus::new(&settings).unwrap()), Some(tansu))
            }
        };
        let shutdown = CancellationToken::new();
        let (mut fhir, mut dicom, mut medtech, mut fhir_db) = (None, None, None, None);
        if data_plane {
            let l = listener();
            let db = Self::database(backend, dir.path(), "fhir").await;
            fhir_db = Some(db.clone());
            let running = fhir_svc::start_with(
                fhir_svc::Settings::local_defaults(dir.path()),
                fhir_svc::Deps {
                    db,
                    bus: bus.clone(),
                },
                l,
                shutdown.clone(),
            )
            .await
            .unwrap();
            fhir = Some(format!("http://{}", running.addr));
            let l = listener();
            let running = dicom_svc::start_with(
                dicom_svc::Settings::local_defaults(dir.path()),
                dicom_svc::Deps {
                    db: Self::database(backend, dir.path(), "dicom").await,
                    bus: bus.clone(),
                    blobs: Arc::new(
                        LocalBlobStore::open(&dir.path().join("blobs"))
                            .await
                            .unwrap(),
                    ),
                },
                l,
                shutdown.clone(),
            )
            .await
            .unwrap();
            dicom = Some(format!("http://{}", running.addr));
            let l = listener();
            let running = medtech_svc::start_with(
                medtech_svc::Settings::local_defaults(dir.path()),
                medtech_svc::Deps {
                    db: Self::database(backend, dir.path(), "medtech").await,
                    bus: bus.clone(),
                },
                l,
                shutdown.clone(),
            )
            .await
            .unwrap();
            medtech = Some(format!("http://{}", running.addr));
        }
        let mut settings = operations_svc::Settings::local_defaults(dir.path());
        settings.bootstrap = None;
        // DICOM services' `serviceUrl` points at the dicom-svc under test.
        settings.management.dicom_base_url = dicom.clone();
        customize(&mut settings);
        let running = operations_svc::start_with(
            settings,
            operations_svc::Deps {
                db: Self::database(backend, dir.path(), "ops").await,
                bus: bus.clone(),
            },
            listener(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        Stack {
            base: format!("http://{}", running.addr),
            fhir,
            dicom,
            medtech,
            fhir_db,
            bus,
            // A request that never returns fails the test instead of hanging the suite.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            shutdown,
            _tansu: tansu,
            _dir: dir,
        }
    }

    pub fn workspace_url(&self, ws: &str) -> String {
        format!(
            "{}/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces/{ws}",
            self.base
        )
    }

    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{API}")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        assert!(
            res.headers().contains_key("x-ms-request-id"),
            "every answer carries x-ms-request-id"
        );
        res
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let res = self.send(method, path, body).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, value)
    }

    /// Polls an `Azure-AsyncOperation` URL until the operation ends (a bound, not a timing
    /// assumption: provisioning happens in the background services).
    pub async fn wait(&self, operation_url: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let res = self.http.get(operation_url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            match body["status"].as_str().unwrap() {
                "Requested" | "Running" => {}
                _ => return body,
            }
            assert!(Instant::now() < deadline, "operation did not end: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}
