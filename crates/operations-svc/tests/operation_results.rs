//! Operation Results - Get, fed by the data plane's status reports over the bus; on SQLite +
//! the embedded bus and on PostgreSQL + Kafka.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::kafka::KafkaBus;
use hds_core::bus::SharedBus;
use hds_core::events::v1::{OperationCommand, OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, to_message, topics};
use hds_core::CancellationToken;
use hds_testkit::{unique, Tansu};
use operations_svc::bootstrap::{plan, Bootstrap};
use operations_svc::{Deps, Settings};
use prost::Message;

struct Env {
    base: String,
    bus: SharedBus,
    bootstrap: Bootstrap,
    shutdown: CancellationToken,
    _tansu: Option<Tansu>,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = hds_testkit::sqlite_database(dir.path(), "ops").await;
        let bus_db = hds_testkit::sqlite_database(dir.path(), "bus").await;
        let bus: SharedBus = Arc::new(
            EmbeddedBus::open(bus_db, EmbeddedBusSettings::new("unused"))
                .await
                .unwrap(),
        );
        Self::start(Deps { db, bus }, None, dir).await
    }

    async fn kafka() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tansu = Tansu::start().await;
        let bus: SharedBus = Arc::new(KafkaBus::new(&tansu.settings()).unwrap());
        let db = hds_testkit::pg_database("ops").await;
        Self::start(Deps { db, bus }, Some(tansu), dir).await
    }

    async fn start(deps: Deps, tansu: Option<Tansu>, dir: tempfile::TempDir) -> Self {
        let bootstrap = Bootstrap {
            workspace: "ws1".parse().unwrap(),
            dicom_service: None,
            medtech_service: None,
            ..Bootstrap::default()
        };
        let mut settings = Settings::local_defaults(dir.path());
        settings.bootstrap = Some(bootstrap.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let bus = deps.bus.clone();
        let running = operations_svc::start_with(settings, deps, listener, shutdown.clone())
            .await
            .unwrap();
        Env {
            base: format!("http://{}", running.addr),
            bus,
            bootstrap,
            shutdown,
            _tansu: tansu,
            _dir: dir,
        }
    }

    fn result_url(&self, id: &str, version: Option<&str>) -> String {
        let mut url = format!(
            "{}/subscriptions/{}/providers/Microsoft.HealthcareApis/locations/{}/operationresults/{id}",
            self.base, self.bootstrap.subscription_id, self.bootstrap.location
        );
        if let Some(v) = version {
            url.push_str(&format!("?api-version={v}"));
        }
        url
    }

    async fn result(&self, id: &str) -> (u16, serde_json::Value) {
        let r = reqwest::get(self.result_url(id, Some("2024-03-31")))
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

async fn a_failed_provisioning_ends_the_operation_with_its_error(env: Env) {
    let planned = plan(&env.bootstrap);
    assert_eq!(planned.len(), 1);
    let op = &planned[0];

    let (status, body) = env.result(&op.operation_id).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "Requested");
    assert_eq!(body["name"], op.operation_id.as_str());
    assert!(body["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/operationresults/{}", op.operation_id)));
    assert!(body["startTime"].is_string());
    assert!(body.get("endTime").is_none());

    // The command went out through the outbox.
    let mut commands = env
        .bus
        .subscribe(&unique("g"), &[topics::OPERATIONS_COMMANDS])
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(60), commands.next())
        .await
        .unwrap()
        .unwrap();
    let command = OperationCommand::decode(d.payload.as_slice()).unwrap();
    assert_eq!(command.operation_id, op.operation_id);
    assert_eq!(command.kind, OperationKind::ProvisionInstance as i32);
    assert_eq!(command.instance, "ws1-fhir");
    commands.close().await;

    // A data-plane service reports failure.
    let report = OperationStatus {
        event_id: new_event_id(),
        operation_id: op.operation_id.clone(),
        resource_id: op.resource_id.clone(),
        reporter: "fhir-svc".into(),
        state: OperationState::Failed as i32,
        percent_complete: 100,
        error_code: "StorageFull".into(),
        error_message: "no room".into(),
        occurred_at_unix_ms: 0,
        ..OperationStatus::default()
    };
    env.bus
        .publish(
            topics::OPERATIONS_STATUS,
            to_message(&report, op.operation_id.clone()),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (_, body) = env.result(&op.operation_id).await;
        if body["status"] != "Requested" {
            break body;
        }
        assert!(Instant::now() < deadline, "the report was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "Failed");
    assert_eq!(body["error"]["code"], "StorageFull");
    assert_eq!(body["error"]["message"], "no room");
    assert!(body["endTime"].is_string());
    env.shutdown.cancel();
}

async fn requests_are_checked_as_arm_does(env: Env) {
    let id = &plan(&env.bootstrap)[0].operation_id;
    let missing = reqwest::get(env.result_url(id, None)).await.unwrap();
    assert_eq!(missing.status(), 400);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");

    let wrong = reqwest::get(env.result_url(id, Some("2018-08-20-preview")))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidApiVersionParameter");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2024-03-31"));

    let twice = reqwest::get(format!(
        "{}&api-version=2024-03-31",
        env.result_url(id, Some("2024-03-31"))
    ))
    .await
    .unwrap();
    assert_eq!(twice.status(), 400);
    let body: serde_json::Value = twice.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidRequestContent", "{body}");

    let (status, body) = env.result("00000000-0000-0000-0000-000000000001").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "OperationNotFound");

    let elsewhere = reqwest::get(format!(
        "{}/subscriptions/x/nothing?api-version=2024-03-31",
        env.base
    ))
    .await
    .unwrap();
    assert_eq!(elsewhere.status(), 404);
    let body: serde_json::Value = elsewhere.json().await.unwrap();
    assert!(body["error"]["code"].is_string());
    env.shutdown.cancel();
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn a_failed_provisioning_ends_the_operation_with_its_error() {
                super::a_failed_provisioning_ends_the_operation_with_its_error(
                    super::Env::$backend().await,
                )
                .await
            }
            #[tokio::test]
            async fn requests_are_checked_as_arm_does() {
                super::requests_are_checked_as_arm_does(super::Env::$backend().await).await
            }
        }
    };
}

suite!(embedded);
suite!(kafka);
