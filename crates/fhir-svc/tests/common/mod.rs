//! The fhir-svc under test, on SQLite + the embedded bus or PostgreSQL + Kafka (tansu).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use fhir_svc::{Deps, Settings};
use hds_core::auth::AuthSettings;
use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::kafka::KafkaBus;
use hds_core::bus::{SharedBus, Subscription};
use hds_core::events::v1::{OperationCommand, OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, to_message, topics};
use hds_core::names::ServiceKind;
use hds_core::CancellationToken;
use hds_testkit::{unique, Tansu};
use prost::Message;

pub struct Env {
    pub base: String,
    pub bus: SharedBus,
    pub shutdown: CancellationToken,
    pub running: Option<hds_core::ops::Running>,
    pub _tansu: Option<Tansu>,
    pub _dir: tempfile::TempDir,
    pub deps: Deps,
}

impl Env {
    pub async fn embedded() -> Self {
        Self::embedded_with(AuthSettings::default()).await
    }

    /// The embedded stack, with settings changed by `customize`.
    pub async fn embedded_custom(customize: impl FnOnce(&mut Settings)) -> Self {
        let mut env = Self::embedded_with(AuthSettings::default()).await;
        env.restart_with(customize).await;
        env
    }

    /// PostgreSQL + Kafka, with settings changed by `customize`.
    pub async fn kafka_custom(customize: impl FnOnce(&mut Settings)) -> Self {
        let mut env = Self::kafka().await;
        env.restart_with(customize).await;
        env
    }

    /// Stops the service and starts it again on the same database and bus.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await
    }

    async fn restart_with(&mut self, customize: impl FnOnce(&mut Settings)) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await;
        }
        let mut settings = Settings::local_defaults(self._dir.path());
        customize(&mut settings);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        self.shutdown = CancellationToken::new();
        // The old pool's connections died with the old service's runtimes.
        self.deps.db = self.deps.db.reopen().await.unwrap();
        let deps = self.deps.clone();
        let running = fhir_svc::start_with(settings, deps, listener, self.shutdown.clone())
            .await
            .unwrap();
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    pub async fn embedded_with(auth: AuthSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = hds_testkit::sqlite_database(dir.path(), "fhir").await;
        let bus_db = hds_testkit::sqlite_database(dir.path(), "bus").await;
        let bus: SharedBus = Arc::new(
            EmbeddedBus::open(bus_db, EmbeddedBusSettings::new("unused"))
                .await
                .unwrap(),
        );
        Self::start(Deps { db, bus }, auth, None, dir).await
    }

    pub async fn kafka() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tansu = Tansu::start().await;
        let bus: SharedBus = Arc::new(KafkaBus::new(&tansu.settings()).unwrap());
        let db = hds_testkit::pg_database("fhir").await;
        Self::start(Deps { db, bus }, AuthSettings::default(), Some(tansu), dir).await
    }

    pub async fn start(
        deps: Deps,
        auth: AuthSettings,
        tansu: Option<Tansu>,
        dir: tempfile::TempDir,
    ) -> Self {
        // One status partition: the order of status events is the order of handling.
        deps.bus
            .ensure_topic(topics::OPERATIONS_STATUS, 1)
            .await
            .unwrap();
        let mut settings = Settings::local_defaults(dir.path());
        settings.auth = auth;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let bus = deps.bus.clone();
        let kept = deps.clone();
        let running = fhir_svc::start_with(settings, deps, listener, shutdown.clone())
            .await
            .unwrap();
        Env {
            base: format!("http://{}", running.addr),
            bus,
            shutdown,
            running: Some(running),
            _tansu: tansu,
            _dir: dir,
            deps: kept,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn command(&self, kind: OperationKind, instance: &str) -> OperationCommand {
        self.command_with(kind, instance, &serde_json::json!({}))
            .await
    }

    /// A command carrying these ARM `properties` of the service.
    pub async fn command_with(
        &self,
        kind: OperationKind,
        instance: &str,
        properties: &serde_json::Value,
    ) -> OperationCommand {
        let cmd = OperationCommand {
            event_id: new_event_id(),
            operation_id: new_event_id(),
            kind: kind as i32,
            resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.HealthcareApis/workspaces/ws1/fhirservices/{instance}"),
            service_kind: ServiceKind::Fhir.to_proto() as i32,
            instance: instance.into(),
            properties_json: properties.to_string(),
            requested_at_unix_ms: 0,
        };
        self.publish(&cmd).await;
        cmd
    }

    pub async fn publish(&self, cmd: &OperationCommand) {
        self.bus
            .publish(
                topics::OPERATIONS_COMMANDS,
                to_message(cmd, cmd.resource_id.clone()),
            )
            .await
            .unwrap();
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.running.take().unwrap().wait())
            .await
            .expect("graceful shutdown within 30 s");
    }
}

/// The next provisioning status: the reports of fhir-svc's own jobs (`$reindex`,
/// `$export`, which carry their operation kind) share the topic and are passed over.
pub async fn next_status(sub: &mut Box<dyn Subscription>) -> OperationStatus {
    loop {
        let d = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("a status within 60 s")
            .unwrap();
        let status = OperationStatus::decode(d.payload.as_slice()).unwrap();
        if status.kind == OperationKind::Unspecified as i32 {
            return status;
        }
    }
}

impl Env {
    /// Provisions `instance` and waits until fhir-svc reported it ready.
    pub async fn provision(&self, instance: &str) {
        self.provision_with(instance, &serde_json::json!({})).await
    }

    /// Provisions (or re-provisions) `instance` with these ARM `properties` and waits until
    /// fhir-svc reported it handled: from then on the settings apply.
    pub async fn provision_with(&self, instance: &str, properties: &serde_json::Value) {
        let mut statuses = self
            .bus
            .subscribe(&unique("g"), &[topics::OPERATIONS_STATUS])
            .await
            .unwrap();
        let cmd = self
            .command_with(OperationKind::ProvisionInstance, instance, properties)
            .await;
        loop {
            let s = next_status(&mut statuses).await;
            if s.operation_id == cmd.operation_id {
                assert_eq!(s.state, OperationState::Succeeded as i32);
                break;
            }
        }
        statuses.close().await;
    }
}

/// The `next` link of a searchset Bundle, if it has one.
pub fn next_link(bundle: &serde_json::Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}
