//! The data-plane side of provisioning, the same in fhir-svc, dicom-svc and medtech-svc.
//!
//! operations-svc publishes an [`OperationCommand`] on `hds.operations.commands`; each
//! data-plane service consumes them in its own group, takes those of its kind, creates or
//! deletes the instance and reports an [`OperationStatus`] on `hds.operations.status`. The
//! instance row, the service's own work and the status event are one transaction, and a
//! command's event id is recorded with it, so a redelivered command is a no-op.
//!
//! What an instance needs beyond its row (topics, blobs, tables keyed by instance) is the
//! service's business, behind [`InstanceLifecycle`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prost::Message;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::bus::{consume, Delivery, SharedBus};
use crate::db::{Database, Migrations};
use crate::events::v1::{OperationCommand, OperationKind, OperationState, OperationStatus};
use crate::events::{new_event_id, now_unix_ms, topics};
use crate::names::{InstanceName, ServiceKind};
use crate::outbox::{self, Relay, RelayWaker};

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/provisioning/postgres"),
        sqlite: sqlx::migrate!("./migrations/provisioning/sqlite"),
    }
}

/// Why an instance could not be created or deleted; reported to the operation as its error.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LifecycleError {
    pub code: String,
    pub message: String,
}

/// What a service does when one of its instances is created or deleted.
#[async_trait]
pub trait InstanceLifecycle: Send + Sync + 'static {
    /// Prepares what the instance needs. Runs inside the transaction that records it.
    async fn provision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
        properties: &serde_json::Value,
    ) -> Result<(), LifecycleError>;

    /// Removes all of the instance's data. Runs inside the transaction that forgets it.
    async fn deprovision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), LifecycleError>;
}

/// An instance a service serves.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub name: String,
    pub resource_id: String,
    pub properties: serde_json::Value,
    pub created_unix_ms: i64,
}

/// The instances of this service, cached for request routing. Several replicas share one
/// database, so a miss or an entry older than [`CACHE_TTL`] reads it again.
#[derive(Clone)]
pub struct InstanceRegistry {
    db: Database,
    cache: Arc<RwLock<HashMap<String, Cached>>>,
}

/// A lookup's answer (present or absent) and when it was read.
type Cached = (Option<Instance>, Instant);

const CACHE_TTL: Duration = Duration::from_secs(5);

fn instance_from_row(row: &sqlx::any::AnyRow) -> Result<Instance, sqlx::Error> {
    let props: String = row.try_get("properties_json")?;
    Ok(Instance {
        name: row.try_get("name")?,
        resource_id: row.try_get("resource_id")?,
        properties: serde_json::from_str(&props).unwrap_or(serde_json::Value::Null),
        created_unix_ms: row.try_get("created_ms")?,
    })
}

impl InstanceRegistry {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            cache: Arc::default(),
        }
    }

    /// The instance, if this service serves it.
    pub async fn get(&self, name: &InstanceName) -> Result<Option<Instance>, sqlx::Error> {
        let key = name.to_string();
        if let Some((hit, at)) = self.cache.read().await.get(&key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(hit.clone());
            }
        }
        let found = sqlx::query(
            "SELECT name, resource_id, properties_json, created_ms FROM instances WHERE name = $1",
        )
        .bind(&key)
        .fetch_optional(self.db.pool())
        .await?
        .map(|r| instance_from_row(&r))
        .transpose()?;
        self.cache
            .write()
            .await
            .insert(key, (found.clone(), Instant::now()));
        Ok(found)
    }

    pub async fn list(&self) -> Result<Vec<Instance>, sqlx::Error> {
        sqlx::query(
            "SELECT name, resource_id, properties_json, created_ms FROM instances ORDER BY name",
        )
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(instance_from_row)
        .collect()
    }

    async fn forget(&self, name: &str) {
        self.cache.write().await.remove(name);
    }
}

/// Handles the provisioning commands of one service kind.
pub struct Provisioner {
    db: Database,
    kind: ServiceKind,
    reporter: &'static str,
    lifecycle: Arc<dyn InstanceLifecycle>,
    registry: InstanceRegistry,
    relay: RelayWaker,
}

impl Provisioner {
    /// Handles one delivery of `hds.operations.commands`. Errors are transient (the database
    /// is unreachable) and make the consumer retry; a failed lifecycle step is a result,
    /// reported as the operation's failure.
    pub async fn handle(&self, delivery: Delivery) -> anyhow::Result<()> {
        let command = match OperationCommand::decode(delivery.payload.as_slice()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(offset = delivery.offset, error = %e, "undecodable operation command skipped");
                return Ok(());
            }
        };
        let kind = crate::events::v1::ServiceKind::try_from(command.service_kind)
            .ok()
            .and_then(ServiceKind::from_proto);
        if kind != Some(self.kind) {
            return Ok(());
        }
        let instance: InstanceName = match command.instance.parse() {
            Ok(i) => i,
            Err(e) => {
                return self
                    .report(
                        &command,
                        Err(LifecycleError {
                            code: "InvalidInstanceName".into(),
                            message: e.to_string(),
                        }),
                    )
                    .await
            }
        };

        let mut tx = self.db.begin().await?;
        // Recording the command first both deduplicates and takes SQLite's write lock early.
        let fresh = sqlx::query(
            "INSERT INTO handled_commands (event_id, handled_ms) VALUES ($1, $2) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&command.event_id)
        .bind(now_unix_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(());
        }
        let outcome = match OperationKind::try_from(command.kind) {
            Ok(OperationKind::ProvisionInstance) => {
                self.provision(&mut tx, &instance, &command).await?
            }
            Ok(OperationKind::DeprovisionInstance) => self.deprovision(&mut tx, &instance).await?,
            _ => Err(LifecycleError {
                code: "UnsupportedOperation".into(),
                message: format!(
                    "{} cannot handle operation kind {}",
                    self.reporter, command.kind
                ),
            }),
        };
        if outcome.is_err() {
            // Undo the lifecycle's partial work but keep the command handled.
            tx.rollback().await?;
            tx = self.db.begin().await?;
            sqlx::query(
                "INSERT INTO handled_commands (event_id, handled_ms) VALUES ($1, $2) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&command.event_id)
            .bind(now_unix_ms())
            .execute(&mut *tx)
            .await?;
        }
        self.enqueue_status(&mut tx, &command, &outcome).await?;
        tx.commit().await?;
        self.registry.forget(&instance.to_string()).await;
        self.relay.wake();
        let done = if command.kind == OperationKind::DeprovisionInstance as i32 {
            "deleted"
        } else {
            "ready"
        };
        match &outcome {
            Ok(()) => {
                tracing::info!(instance = %instance, operation = %command.operation_id, "instance {done}")
            }
            Err(e) => {
                tracing::warn!(instance = %instance, operation = %command.operation_id, error = %e, "provisioning failed")
            }
        }
        Ok(())
    }

    async fn provision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
        command: &OperationCommand,
    ) -> Result<Result<(), LifecycleError>, sqlx::Error> {
        let properties: serde_json::Value = if command.properties_json.is_empty() {
            serde_json::json!({})
        } else {
            match serde_json::from_str(&command.properties_json) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(Err(LifecycleError {
                        code: "InvalidProperties".into(),
                        message: format!("properties are not JSON: {e}"),
                    }))
                }
            }
        };
        let now = now_unix_ms();
        sqlx::query(
            "INSERT INTO instances (name, resource_id, properties_json, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE SET \
             resource_id = excluded.resource_id, properties_json = excluded.properties_json, \
             updated_ms = excluded.updated_ms",
        )
        .bind(instance.to_string())
        .bind(&command.resource_id)
        .bind(properties.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(self.lifecycle.provision(tx, instance, &properties).await)
    }

    async fn deprovision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<Result<(), LifecycleError>, sqlx::Error> {
        if let Err(e) = self.lifecycle.deprovision(tx, instance).await {
            return Ok(Err(e));
        }
        sqlx::query("DELETE FROM instances WHERE name = $1")
            .bind(instance.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(Ok(()))
    }

    async fn enqueue_status(
        &self,
        tx: &mut Transaction<'_, Any>,
        command: &OperationCommand,
        outcome: &Result<(), LifecycleError>,
    ) -> anyhow::Result<()> {
        let (state, code, message) = match outcome {
            Ok(()) => (OperationState::Succeeded, String::new(), String::new()),
            Err(e) => (OperationState::Failed, e.code.clone(), e.message.clone()),
        };
        let status = OperationStatus {
            event_id: new_event_id(),
            operation_id: command.operation_id.clone(),
            resource_id: command.resource_id.clone(),
            reporter: self.reporter.to_owned(),
            state: state as i32,
            percent_complete: 100,
            error_code: code,
            error_message: message,
            occurred_at_unix_ms: now_unix_ms(),
            // operations-svc started this operation and knows its kind.
            kind: OperationKind::Unspecified as i32,
            result_json: String::new(),
        };
        outbox::enqueue(
            tx,
            topics::OPERATIONS_STATUS,
            command.operation_id.clone(),
            &status,
        )
        .await?;
        Ok(())
    }

    /// A failure found before any transaction: report it on its own.
    async fn report(
        &self,
        command: &OperationCommand,
        outcome: Result<(), LifecycleError>,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        self.enqueue_status(&mut tx, command, &outcome).await?;
        tx.commit().await?;
        self.relay.wake();
        Ok(())
    }
}

/// Partitions of the topics hds creates for itself.
pub const TOPIC_PARTITIONS: u32 = 4;

/// The background work every data-plane service runs: the outbox relay and the consumer of
/// provisioning commands. Returns the instance registry for request routing.
pub struct DataPlane {
    pub registry: InstanceRegistry,
    pub relay: RelayWaker,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DataPlane {
    /// Runs the shared migrations and starts the relay and the command consumer (group:
    /// `reporter`, e.g. "fhir-svc").
    pub async fn start(
        db: Database,
        bus: SharedBus,
        kind: ServiceKind,
        reporter: &'static str,
        lifecycle: Arc<dyn InstanceLifecycle>,
        shutdown: CancellationToken,
    ) -> Result<Self, crate::ops::StartError> {
        db.migrate(&outbox::migrations()).await?;
        db.migrate(&migrations()).await?;
        for topic in [topics::OPERATIONS_COMMANDS, topics::OPERATIONS_STATUS] {
            bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
        }
        let relay = Relay::new(db.clone(), bus.clone());
        let waker = relay.waker();
        let registry = InstanceRegistry::new(db.clone());
        let provisioner = Arc::new(Provisioner {
            db,
            kind,
            reporter,
            lifecycle,
            registry: registry.clone(),
            relay: waker.clone(),
        });
        let subscription = bus
            .subscribe(reporter, &[topics::OPERATIONS_COMMANDS])
            .await?;
        let relay_task = relay.spawn(shutdown.clone());
        let consumer_task = tokio::spawn(async move {
            let result = consume(subscription, shutdown, move |d| {
                let p = provisioner.clone();
                async move { p.handle(d).await }
            })
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "provisioning consumer stopped");
            }
        });
        Ok(Self {
            registry,
            relay: waker,
            tasks: vec![relay_task, consumer_task],
        })
    }
}
