//! What a MedTech service instance is made of: its device topic `hds.devices.{instance}`
//! (devices and gateways produce to it), its configuration (which the provisioning command's
//! properties may carry, as Azure's IotConnector and FhirDestination do) and, once it is
//! configured, its pipeline and consumer group. Deleting an instance stops its pipeline and
//! deletes all of them.

use async_trait::async_trait;
use hds_core::bus::SharedBus;
use hds_core::events::topics;
use hds_core::names::InstanceName;
use hds_core::provisioning::{InstanceLifecycle, LifecycleError, TOPIC_PARTITIONS};
use sqlx::{Any, Transaction};

use crate::config::{arm, store};
use crate::pipeline::Pipelines;

pub struct MedtechInstances {
    pub bus: SharedBus,
    pub pipelines: Pipelines,
}

/// The consumer group that reads an instance's device topic.
pub fn consumer_group(instance: &InstanceName) -> String {
    format!("{}.{instance}", crate::NAME)
}

fn bus_failure(e: hds_core::bus::BusError) -> LifecycleError {
    LifecycleError {
        code: "EventBusFailed".into(),
        message: e.to_string(),
    }
}

fn storage_failure(e: sqlx::Error) -> LifecycleError {
    LifecycleError {
        code: "StorageFailed".into(),
        message: e.to_string(),
    }
}

#[async_trait]
impl InstanceLifecycle for MedtechInstances {
    async fn provision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
        properties: &serde_json::Value,
    ) -> Result<(), LifecycleError> {
        let parts = arm::parts_from_properties(properties).map_err(|e| LifecycleError {
            code: "InvalidMapping".into(),
            message: e.to_string(),
        })?;
        if !parts.is_empty() {
            store::set_in(tx, &instance.to_string(), &parts)
                .await
                .map_err(storage_failure)?;
        }
        self.bus
            .ensure_topic(&topics::devices(instance), TOPIC_PARTITIONS)
            .await
            .map_err(bus_failure)
    }

    async fn deprovision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), LifecycleError> {
        // The worker leaves the group before the group is deleted.
        self.pipelines.stop(instance).await;
        store::delete(tx, &instance.to_string())
            .await
            .map_err(storage_failure)?;
        self.bus
            .delete_group(&consumer_group(instance))
            .await
            .map_err(bus_failure)?;
        self.bus
            .delete_topic(&topics::devices(instance))
            .await
            .map_err(bus_failure)
    }
}
