//! Follows `hds.operations.status`: the data-plane services' reports move operations on and,
//! when one ends, set its resource's provisioning state (or remove a deleted resource).

use hds_core::bus::{consume, Delivery, SharedBus, Subscription};
use hds_core::db::Database;
use hds_core::events::topics;
use hds_core::events::v1::{OperationState, OperationStatus as StatusEvent};
use hds_core::CancellationToken;
use prost::Message;
use sqlx::Row;

use crate::operations::{self, OperationStatus};

pub struct StatusConsumer {
    db: Database,
    subscription: Box<dyn Subscription>,
}

impl StatusConsumer {
    pub async fn subscribe(db: Database, bus: &SharedBus) -> Result<Self, hds_core::bus::BusError> {
        let subscription = bus
            .subscribe(crate::NAME, &[topics::OPERATIONS_STATUS])
            .await?;
        Ok(Self { db, subscription })
    }

    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let db = self.db;
        tokio::spawn(async move {
            let result = consume(self.subscription, shutdown, move |d| {
                let db = db.clone();
                async move { handle(&db, d).await }
            })
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "status consumer stopped");
            }
        })
    }
}

async fn handle(db: &Database, delivery: Delivery) -> anyhow::Result<()> {
    let event = match StatusEvent::decode(delivery.payload.as_slice()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(offset = delivery.offset, error = %e, "undecodable status skipped");
            return Ok(());
        }
    };
    let Some(status) = OperationState::try_from(event.state)
        .ok()
        .and_then(OperationStatus::from_proto)
    else {
        return Ok(());
    };
    let error = (status == OperationStatus::Failed)
        .then_some((event.error_code.as_str(), event.error_message.as_str()));
    let mut tx = db.begin().await?;
    let changed = operations::advance(
        &mut tx,
        &event.operation_id,
        status,
        event.percent_complete,
        error,
    )
    .await?;
    if changed && status.is_terminal() {
        let kind: Option<String> = sqlx::query("SELECT kind FROM operations WHERE id = $1")
            .bind(&event.operation_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("kind"))
            .transpose()?;
        let key = event.resource_id.to_ascii_lowercase();
        match (kind.as_deref(), status) {
            (Some("Deprovision"), OperationStatus::Succeeded) => {
                sqlx::query("DELETE FROM resources WHERE id_key = $1")
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {
                let state = if status == OperationStatus::Succeeded {
                    "Succeeded"
                } else {
                    status.as_str()
                };
                sqlx::query("UPDATE resources SET provisioning_state = $1, updated_ms = $2 WHERE id_key = $3")
                    .bind(state)
                    .bind(hds_core::events::now_unix_ms())
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tracing::info!(operation = %event.operation_id, resource = %event.resource_id, status = status.as_str(), reporter = %event.reporter, "operation finished");
    }
    tx.commit().await?;
    Ok(())
}
