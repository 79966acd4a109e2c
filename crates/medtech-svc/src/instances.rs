//! What a MedTech service instance is made of: its device topic `hds.devices.{instance}`
//! (devices and gateways produce to it) and, once mappings arrive, its consumer group.
//! Deleting an instance deletes both.

use async_trait::async_trait;
use hds_core::bus::SharedBus;
use hds_core::events::topics;
use hds_core::names::InstanceName;
use hds_core::provisioning::{InstanceLifecycle, LifecycleError, TOPIC_PARTITIONS};
use sqlx::{Any, Transaction};

pub struct MedtechInstances {
    pub bus: SharedBus,
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

#[async_trait]
impl InstanceLifecycle for MedtechInstances {
    async fn provision(
        &self,
        _tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
        _properties: &serde_json::Value,
    ) -> Result<(), LifecycleError> {
        self.bus
            .ensure_topic(&topics::devices(instance), TOPIC_PARTITIONS)
            .await
            .map_err(bus_failure)
    }

    async fn deprovision(
        &self,
        _tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), LifecycleError> {
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
