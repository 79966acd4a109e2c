//! Follows `hds.operations.status`: the data-plane services' reports move operations on and,
//! when one ends, set its resource's provisioning state (or remove a deleted resource).

use hds_core::bus::{consume, Delivery, SharedBus, Subscription};
use hds_core::db::Database;
use hds_core::events::topics;
use hds_core::events::v1::{OperationState, OperationStatus as StatusEvent};
use hds_core::CancellationToken;
use prost::Message;

use crate::operations::{self, OperationKind, OperationStatus};
use crate::resources::{self, ProvisioningState};

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
        // The operation says which resource it changes: a FHIR destination's operation is
        // reported by its connector's instance, under the connector's id.
        if let Some((kind, resource_id)) = operations::subject(&mut tx, &event.operation_id).await?
        {
            let key = resource_id.to_ascii_lowercase();
            match (kind, status) {
                (Some(OperationKind::Deprovision), OperationStatus::Succeeded) => {
                    resources::remove_deleted(&mut *tx, &key, &event.operation_id).await?;
                }
                (_, OperationStatus::Succeeded) => {
                    resources::finish(
                        &mut *tx,
                        &key,
                        &event.operation_id,
                        ProvisioningState::Succeeded,
                    )
                    .await?;
                }
                (_, OperationStatus::Canceled) => {
                    resources::finish(
                        &mut *tx,
                        &key,
                        &event.operation_id,
                        ProvisioningState::Canceled,
                    )
                    .await?;
                }
                _ => {
                    resources::finish(
                        &mut *tx,
                        &key,
                        &event.operation_id,
                        ProvisioningState::Failed,
                    )
                    .await?;
                }
            }
        }
        tracing::info!(operation = %event.operation_id, resource = %event.resource_id, status = status.as_str(), reporter = %event.reporter, "operation finished");
    }
    tx.commit().await?;
    Ok(())
}
