//! Follows `hds.operations.status`: the data-plane services' reports move operations on and,
//! when one ends, set its resource's provisioning state (or remove a deleted resource).
//! Reports naming a data-plane kind (`OperationStatus.kind`: a FHIR `$export` or `$reindex`
//! job) are of work the reporter started: the first one records the operation.

use hds_core::bus::{consume, Delivery, SharedBus, Subscription};
use hds_core::db::Database;
use hds_core::events::topics;
use hds_core::events::v1::{OperationState, OperationStatus as StatusEvent};
use hds_core::CancellationToken;
use prost::Message;

use crate::operations::{self, NewOperation, OperationKind, OperationStatus, Report};
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
    match OperationKind::reported(event.kind) {
        Ok(None) => control_plane(db, &event, status).await,
        Ok(Some(kind)) => data_plane(db, &event, kind, status).await,
        Err(kind) => {
            tracing::warn!(operation = %event.operation_id, kind, reporter = %event.reporter, "status of an unknown operation kind skipped");
            Ok(())
        }
    }
}

fn error_of(event: &StatusEvent, status: OperationStatus) -> Option<(&str, &str)> {
    (status == OperationStatus::Failed)
        .then_some((event.error_code.as_str(), event.error_message.as_str()))
}

/// A report on an operation operations-svc started: it moves the operation on and, when the
/// operation ends, sets its resource's state.
async fn control_plane(
    db: &Database,
    event: &StatusEvent,
    status: OperationStatus,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let report = Report {
        status,
        percent: event.percent_complete,
        error: error_of(event, status),
        // Our own clock, as for the start time this operation was recorded with.
        at_ms: hds_core::events::now_unix_ms(),
        result: None,
        kind: None,
    };
    let changed = operations::advance(&mut tx, &event.operation_id, report).await?;
    if changed && status.is_terminal() {
        // The operation says which resource it changes: a FHIR destination's operation is
        // reported by its connector's instance, under the connector's id.
        if let Some((kind, resource_id)) = operations::subject(&mut tx, &event.operation_id).await?
        {
            let key = resource_id.to_ascii_lowercase();
            match (kind, status) {
                // Work that a data-plane service started changes no resource (a report
                // without its kind, for such an operation, must not end a resource's change).
                (Some(k), _) if k.is_data_plane() => {}
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

/// A report on work a data-plane service started itself (a FHIR `$export` job, ...): the
/// first report seen records the operation, under the reporter's job id, in the subscription
/// and location of the service it belongs to; every report then moves it on, never back.
/// The resource itself is not touched: a running export is no change of the FHIR service.
async fn data_plane(
    db: &Database,
    event: &StatusEvent,
    kind: OperationKind,
    status: OperationStatus,
) -> anyhow::Result<()> {
    let at_ms = match event.occurred_at_unix_ms {
        // The reporter's clock: the job's own times, whatever the delay on the bus.
        t if t > 0 => t,
        _ => hds_core::events::now_unix_ms(),
    };
    let mut tx = db.begin().await?;
    if operations::subject(&mut tx, &event.operation_id)
        .await?
        .is_none()
    {
        let key = event.resource_id.to_ascii_lowercase();
        let Some(resource) = resources::get(&mut *tx, &key).await? else {
            // Nobody could find it: Operation Results - Get needs the resource's
            // subscription and location. (A service deleted while its job's first report
            // was on the way.)
            tracing::warn!(operation = %event.operation_id, resource = %event.resource_id, reporter = %event.reporter, "report on work of an unknown resource skipped");
            return Ok(());
        };
        let Some(subscription) = subscription_of(&resource.id) else {
            tracing::warn!(resource = %resource.id, "a resource id without subscription");
            return Ok(());
        };
        operations::insert_at(
            &mut tx,
            NewOperation {
                id: &event.operation_id,
                subscription_id: subscription,
                location: &resource.location,
                kind,
                resource_id: &resource.id,
            },
            at_ms,
        )
        .await?;
    }
    let result = (!event.result_json.is_empty()).then_some(event.result_json.as_str());
    let report = Report {
        status,
        percent: event.percent_complete,
        error: error_of(event, status),
        at_ms,
        result,
        kind: Some(kind),
    };
    if operations::advance(&mut tx, &event.operation_id, report).await? && status.is_terminal() {
        tracing::info!(operation = %event.operation_id, kind = kind.as_str(), resource = %event.resource_id, status = status.as_str(), reporter = %event.reporter, "data-plane operation finished");
    }
    tx.commit().await?;
    Ok(())
}

/// `{s}` of `/subscriptions/{s}/...`.
fn subscription_of(resource_id: &str) -> Option<&str> {
    let mut segments = resource_id.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some(s), Some(sub)) if s.eq_ignore_ascii_case("subscriptions") && !sub.is_empty() => {
            Some(sub)
        }
        _ => None,
    }
}
