//! medtech-svc and fhir-svc in one test, both started in-process with `start_with`, on
//! SQLite + the embedded bus or on PostgreSQL + Kafka (tansu). Either service can be stopped
//! and started again on the same address (and database), as a crash and restart would.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hds_core::auth::{AuthSettings, LocalKey, LOCAL_ISSUER};
use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::kafka::{KafkaBus, KafkaSettings};
use hds_core::bus::{OutgoingMessage, SharedBus};
use hds_core::db::{Database, DatabaseSettings};
use hds_core::events::v1::{OperationCommand, OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, to_message, topics};
use hds_core::names::ServiceKind;
use hds_core::ops::Running;
use hds_core::CancellationToken;
use hds_testkit::{unique, Tansu};
use prost::Message;
use serde_json::Value;

pub const DEVICE_MAPPING: &str = r#"{
  "templateType": "CollectionContent",
  "template": [{
    "templateType": "JsonPathContent",
    "template": {
      "typeName": "bloodpressure",
      "typeMatchExpression": "$..[?(@systolic && @diastolic)]",
      "deviceIdExpression": "$.deviceid",
      "patientIdExpression": "$.patientid",
      "timestampExpression": "$.measurementdatetime",
      "values": [
        {"valueName": "systolic", "valueExpression": "$.systolic", "required": true},
        {"valueName": "diastolic", "valueExpression": "$.diastolic", "required": true}
      ]
    }
  }]
}"#;

pub const FHIR_MAPPING: &str = r#"{
  "templateType": "CollectionFhir",
  "template": [{
    "templateType": "CodeValueFhir",
    "template": {
      "typeName": "bloodpressure",
      "periodInterval": 0,
      "codes": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}],
      "components": [
        {"codes": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}],
         "value": {"valueName": "systolic", "valueType": "Quantity", "unit": "mmHg",
                   "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"codes": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}],
         "value": {"valueName": "diastolic", "valueType": "Quantity", "unit": "mmHg",
                   "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
      ]
    }
  }]
}"#;

pub const MESSAGE: &str = r#"{"systolic":120,"diastolic":80,"deviceid":"device1","patientid":"patient1","measurementdatetime":"2023-10-09T19:18:23+00:00"}"#;

pub const PATIENT_ID: &str = "cd3ee1fc63936b0083c968fe962a726d383ab6ee83af53d4f50507ccd646b68a";
pub const DEVICE_ID: &str = "e55c4dadeb1050efd66966053edc1a9f921022858367eff94c3fc7660ed1f1ef";
pub const OBSERVATION_ID: &str = "9775bc0753197aa95458c15a4d5eef689c07b33d7f19706dde2247b3124abfad";

pub const FHIR_INSTANCE: &str = "ws1-fhir";
pub const MEDTECH_INSTANCE: &str = "ws1-medtech";

/// One in-process service that can be stopped and started again on its address.
pub struct Service {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl Service {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(60), r.wait())
                .await
                .expect("graceful shutdown within 60 s");
        }
    }
}

/// The same address again, once the previous server let it go.
fn listener(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for {addr}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

/// How a stack's services are set up beyond the defaults.
#[derive(Clone)]
pub struct Options {
    /// Both services' `[auth]`; the stack's HTTP client then sends a token of its own.
    pub auth: AuthSettings,
    /// Adjusts medtech-svc's `[medtech]` settings at each start.
    pub medtech: fn(&mut medtech_svc::MedtechSettings),
    /// Adjusts fhir-svc's settings at each start.
    pub fhir: fn(&mut fhir_svc::Settings),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auth: AuthSettings::default(),
            medtech: |_| {},
            fhir: |_| {},
        }
    }
}

/// The audience of the stack's tokens, as `hds up --auth` has it.
pub const AUDIENCE: &str = "hds";

pub struct Stack {
    pub bus: SharedBus,
    options: Options,
    pub fhir: Service,
    pub medtech: Service,
    /// Each start connects anew: a PostgreSQL connection opened while serving a request
    /// belongs to that server's runtime, which a stop shuts down.
    fhir_db: DatabaseSettings,
    medtech_db: DatabaseSettings,
    pub http: reqwest::Client,
    _tansu: Option<Tansu>,
    dir: tempfile::TempDir,
}

impl Stack {
    pub async fn embedded() -> Self {
        Self::embedded_with(Options::default()).await
    }

    /// On the embedded bus, with authentication on in both services as `hds up --auth` sets
    /// it: a local signing key, whose public half both services trust.
    pub async fn embedded_with_auth() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = LocalKey::load_or_create(&dir.path().join("auth")).unwrap();
        let auth = AuthSettings {
            enabled: true,
            issuer: Some(LOCAL_ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            public_key_file: Some(key.public_key_file),
            ..AuthSettings::default()
        };
        Self::embedded_in(
            dir,
            Options {
                auth,
                ..Options::default()
            },
        )
        .await
    }

    pub async fn embedded_with(options: Options) -> Self {
        Self::embedded_in(tempfile::tempdir().unwrap(), options).await
    }

    async fn embedded_in(dir: tempfile::TempDir, options: Options) -> Self {
        let bus_db = hds_testkit::sqlite_database(dir.path(), "bus").await;
        let bus: SharedBus = Arc::new(
            EmbeddedBus::open(bus_db, EmbeddedBusSettings::new("unused"))
                .await
                .unwrap(),
        );
        let sqlite = |name: &str| {
            DatabaseSettings::new(hds_core::db::sqlite_url(
                &dir.path().join(format!("{name}.db")),
            ))
        };
        let (fhir_db, medtech_db) = (sqlite("fhir"), sqlite("medtech"));
        Self::start(bus, fhir_db, medtech_db, None, dir, options).await
    }

    pub async fn kafka() -> Self {
        Self::kafka_with(|_| {}, Options::default()).await
    }

    /// On tansu, with the bus' consumer settings adjusted by `kafka`.
    pub async fn kafka_with(kafka: impl FnOnce(&mut KafkaSettings), options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tansu = Tansu::start().await;
        let mut settings = tansu.settings();
        // tansu 0.6's DeleteTopics deletes every topic (see `KafkaSettings::delete_topics`).
        settings.delete_topics = false;
        kafka(&mut settings);
        let bus: SharedBus = Arc::new(KafkaBus::new(&settings).unwrap());
        let fhir_db = hds_testkit::pg_settings("fhir");
        let medtech_db = hds_testkit::pg_settings("medtech");
        Self::start(bus, fhir_db, medtech_db, Some(tansu), dir, options).await
    }

    async fn start(
        bus: SharedBus,
        fhir_db: DatabaseSettings,
        medtech_db: DatabaseSettings,
        tansu: Option<Tansu>,
        dir: tempfile::TempDir,
        options: Options,
    ) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let http = if options.auth.enabled {
            // The test's own calls: configure (Owner), read FHIR (FHIR Data Contributor).
            let key = LocalKey::load_or_create(&dir.path().join("auth")).unwrap();
            let roles = ["FHIR Data Contributor".to_owned(), "Owner".to_owned()];
            let token = key
                .mint("test", AUDIENCE, &roles, Duration::from_secs(3600))
                .unwrap();
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
            reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap()
        } else {
            reqwest::Client::new()
        };
        let mut stack = Stack {
            options,
            fhir: Service {
                addr: any,
                shutdown: CancellationToken::new(),
                running: None,
            },
            medtech: Service {
                addr: any,
                shutdown: CancellationToken::new(),
                running: None,
            },
            bus,
            fhir_db,
            medtech_db,
            http,
            _tansu: tansu,
            dir,
        };
        stack.start_fhir().await;
        stack.start_medtech().await;
        stack
    }

    /// Starts fhir-svc (again), on its previous address if it had one.
    pub async fn start_fhir(&mut self) {
        let l = listener(self.fhir.addr);
        let mut settings = fhir_svc::Settings::local_defaults(self.dir.path());
        settings.auth = self.options.auth.clone();
        (self.options.fhir)(&mut settings);
        let shutdown = CancellationToken::new();
        let deps = fhir_svc::Deps {
            db: Database::connect(&self.fhir_db).await.unwrap(),
            bus: self.bus.clone(),
        };
        let running = fhir_svc::start_with(settings, deps, l, shutdown.clone())
            .await
            .unwrap();
        self.fhir = Service {
            addr: running.addr,
            shutdown,
            running: Some(running),
        };
    }

    /// Starts medtech-svc (again), writing to this stack's fhir-svc.
    pub async fn start_medtech(&mut self) {
        let l = listener(self.medtech.addr);
        let mut settings = medtech_svc::Settings::local_defaults(self.dir.path());
        settings.medtech.fhir_base_url = self.fhir.base();
        settings.medtech.flush_interval_ms = 100;
        settings.medtech.max_retry_ms = 500;
        settings.auth = self.options.auth.clone();
        (self.options.medtech)(&mut settings.medtech);
        let shutdown = CancellationToken::new();
        let deps = medtech_svc::Deps {
            db: Database::connect(&self.medtech_db).await.unwrap(),
            bus: self.bus.clone(),
        };
        let running = medtech_svc::start_with(settings, deps, l, shutdown.clone())
            .await
            .unwrap();
        self.medtech = Service {
            addr: running.addr,
            shutdown,
            running: Some(running),
        };
    }

    /// Provisions the FHIR and the MedTech instance and waits until both are ready.
    pub async fn provision(&self) {
        self.operate(
            OperationKind::ProvisionInstance,
            &[
                (ServiceKind::Fhir, FHIR_INSTANCE, "fhirservices/fhir"),
                (
                    ServiceKind::Medtech,
                    MEDTECH_INSTANCE,
                    "iotconnectors/medtech",
                ),
            ],
        )
        .await;
    }

    /// Deletes the MedTech instance and waits (up to 60 s) until its deletion succeeded.
    pub async fn deprovision_medtech(&self) {
        self.operate(
            OperationKind::DeprovisionInstance,
            &[(
                ServiceKind::Medtech,
                MEDTECH_INSTANCE,
                "iotconnectors/medtech",
            )],
        )
        .await;
    }

    /// Provisions (again) the MedTech instance with these IotConnector `properties`, as
    /// operations-svc sends a connector's or destination's change, and returns the report
    /// (success or not).
    pub async fn provision_medtech_with(&self, properties: &Value) -> OperationStatus {
        self.operate_with(
            OperationKind::ProvisionInstance,
            &[(
                ServiceKind::Medtech,
                MEDTECH_INSTANCE,
                "iotconnectors/medtech",
                properties.to_string(),
            )],
        )
        .await
        .remove(0)
    }

    /// Sends one operation command per instance and waits (up to 60 s each) until every one
    /// of them reported success.
    async fn operate(&self, kind: OperationKind, targets: &[(ServiceKind, &str, &str)]) {
        let targets: Vec<_> = targets
            .iter()
            .map(|(s, i, p)| (*s, *i, *p, "{}".to_owned()))
            .collect();
        for s in self.operate_with(kind, &targets).await {
            assert_eq!(s.state, OperationState::Succeeded as i32, "{kind:?}: {s:?}");
        }
    }

    /// Sends one operation command per instance (with its `properties` JSON) and returns the
    /// final report of each, in order (waiting up to 60 s each).
    async fn operate_with(
        &self,
        kind: OperationKind,
        targets: &[(ServiceKind, &str, &str, String)],
    ) -> Vec<OperationStatus> {
        self.bus
            .ensure_topic(topics::OPERATIONS_STATUS, 1)
            .await
            .unwrap();
        let mut statuses = self
            .bus
            .subscribe(&unique("g"), &[topics::OPERATIONS_STATUS])
            .await
            .unwrap();
        let mut waiting = Vec::new();
        for (service, instance, path, properties) in targets {
            let cmd = OperationCommand {
                event_id: new_event_id(),
                operation_id: new_event_id(),
                kind: kind as i32,
                resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.HealthcareApis/workspaces/ws1/{path}"),
                service_kind: service.to_proto() as i32,
                instance: (*instance).into(),
                properties_json: properties.clone(),
                requested_at_unix_ms: 0,
            };
            self.bus
                .publish(
                    topics::OPERATIONS_COMMANDS,
                    to_message(&cmd, cmd.resource_id.clone()),
                )
                .await
                .unwrap();
            waiting.push(cmd.operation_id);
        }
        let mut done: Vec<Option<OperationStatus>> = vec![None; waiting.len()];
        while done.iter().any(Option::is_none) {
            let d = tokio::time::timeout(Duration::from_secs(60), statuses.next())
                .await
                .unwrap_or_else(|_| panic!("{kind:?}: a status within 60 s"))
                .unwrap();
            let s = OperationStatus::decode(d.payload.as_slice()).unwrap();
            let finished = [OperationState::Succeeded, OperationState::Failed]
                .iter()
                .any(|f| *f as i32 == s.state);
            if let Some(i) = waiting.iter().position(|w| *w == s.operation_id) {
                if finished {
                    done[i] = Some(s);
                }
            }
        }
        statuses.close().await;
        done.into_iter().flatten().collect()
    }

    pub fn medtech_url(&self, path: &str) -> String {
        format!("{}/{MEDTECH_INSTANCE}{path}", self.medtech.base())
    }

    pub fn fhir_url(&self, path: &str) -> String {
        format!("{}/{FHIR_INSTANCE}{path}", self.fhir.base())
    }

    /// Sets the worked example's mappings and a Create destination on this stack's fhir-svc.
    pub async fn configure(&self) {
        for (path, body) in [
            ("/mappings/device", DEVICE_MAPPING.to_owned()),
            ("/mappings/fhir", FHIR_MAPPING.to_owned()),
            (
                "/destination",
                serde_json::json!({"resolutionType": "Create", "fhirService": FHIR_INSTANCE})
                    .to_string(),
            ),
        ] {
            let res = self
                .http
                .put(self.medtech_url(path))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
        }
    }

    /// Produces a device message to the instance's topic, as a device would.
    pub async fn produce(&self, payload: &[u8]) {
        self.produce_to(&format!("hds.devices.{MEDTECH_INSTANCE}"), payload)
            .await;
    }

    /// Produces a device message to `topic`, keyed by the device (one partition for all).
    pub async fn produce_to(&self, topic: &str, payload: &[u8]) {
        self.bus
            .publish(
                topic,
                OutgoingMessage::new(payload.to_vec()).with_key("device1"),
            )
            .await
            .unwrap();
    }

    /// `GET` of a FHIR resource: its body, or `None` when it is not there (404).
    pub async fn fhir_read(&self, path: &str) -> Option<Value> {
        let res = self.http.get(self.fhir_url(path)).send().await.ok()?;
        (res.status() == 200).then_some(())?;
        res.json().await.ok()
    }

    /// Waits (polling, up to 60 s) until the FHIR resource exists.
    pub async fn wait_for_resource(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.fhir_read(path).await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not appear within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sum of a medtech-svc metric over the series whose labels contain all `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.medtech.base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits (polling, up to 60 s) until the metric reaches `at_least`.
    pub async fn wait_for_metric(&self, name: &str, labels: &[&str], at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.metric(name, labels).await;
            if v >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} stayed at {v} (< {at_least}) for 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        self.medtech.stop().await;
        self.fhir.stop().await;
    }
}
