//! What a MedTech service instance is made of: the topic it reads device messages from and
//! its consumer group there ([`DeviceSource`]: `hds.devices.{instance}` in
//! `medtech-svc.{instance}`, or the event hub and consumer group its
//! `ingestionEndpointConfiguration` names), its configuration (which the provisioning
//! command's properties may carry, as Azure's IotConnector and FhirDestination do) and, once
//! it is configured, its pipeline.
//!
//! Deleting an instance stops its pipeline and deletes its configuration, its consumer group
//! and its default topic. A topic the user named is the user's and stays, as deleting an
//! Azure MedTech service leaves its event hub alone.

use async_trait::async_trait;
use hds_core::bus::SharedBus;
use hds_core::names::InstanceName;
use hds_core::provisioning::{InstanceLifecycle, LifecycleError, TOPIC_PARTITIONS};
use sqlx::{Any, Transaction};

use crate::config::ingestion::{ConsumerGroup, DeviceTopic, IngestionEndpoint};
use crate::config::store::{self, Part};
use crate::config::{arm, DeviceSource};
use crate::pipeline::Pipelines;

pub struct MedtechInstances {
    pub bus: SharedBus,
    pub pipelines: Pipelines,
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
        arm::check_one_destination(properties).map_err(|e| LifecycleError {
            code: arm::TooManyDestinations::CODE.into(),
            message: e.to_string(),
        })?;
        // Every command of a connector carries its whole `properties`, so an absent
        // `ingestionEndpointConfiguration` means the defaults, not "unchanged".
        let ingestion = IngestionEndpoint::from_properties(properties, instance).map_err(|e| {
            LifecycleError {
                code: "InvalidIngestionEndpointConfiguration".into(),
                message: e.to_string(),
            }
        })?;
        let mut parts = arm::parts_from_properties(properties).map_err(|e| LifecycleError {
            code: "InvalidMapping".into(),
            message: e.to_string(),
        })?;
        let stored = serde_json::to_string(&ingestion).map_err(|e| LifecycleError {
            code: "InvalidIngestionEndpointConfiguration".into(),
            message: e.to_string(),
        })?;
        parts.push((Part::Ingestion, stored));
        store::set_in(tx, &instance.to_string(), &parts)
            .await
            .map_err(storage_failure)?;
        // Ready before the command succeeds, so devices may produce at once; a running
        // pipeline moves to it when it sees the new revision (`Pipelines::refresh`).
        let source = ingestion.source(instance);
        self.bus
            .ensure_topic(source.topic.as_str(), TOPIC_PARTITIONS)
            .await
            .map_err(bus_failure)
    }

    async fn deprovision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), LifecycleError> {
        let source = store::get_in(tx, &instance.to_string())
            .await
            .map_err(storage_failure)?
            .source(instance);
        // The worker leaves the group before the group is deleted.
        self.pipelines.stop(instance).await;
        store::delete(tx, &instance.to_string())
            .await
            .map_err(storage_failure)?;
        for group in groups_to_delete(instance, &source) {
            self.bus
                .delete_group(group.as_str())
                .await
                .map_err(bus_failure)?;
        }
        // Only hds's own topic; deleting one that was never created is no error.
        self.bus
            .delete_topic(DeviceTopic::default_for(instance).as_str())
            .await
            .map_err(bus_failure)
    }
}

/// The group the pipeline used, and the instance's default group too when that was another
/// one: a connector moved from the default group to a named one left offsets there.
fn groups_to_delete(instance: &InstanceName, source: &DeviceSource) -> Vec<ConsumerGroup> {
    let default = ConsumerGroup::default_for(instance);
    if source.group == default {
        vec![default]
    } else {
        vec![source.group.clone(), default]
    }
}
