//! What a FHIR service instance is made of, created and removed by the control plane.
//!
//! All instances share the service's tables, every row keyed by instance, so creating one is
//! recording it (done by the shared provisioning code) and deleting one removes its rows.

use async_trait::async_trait;
use hds_core::names::InstanceName;
use hds_core::provisioning::{InstanceLifecycle, LifecycleError};
use sqlx::{Any, Transaction};

pub struct FhirInstances;

#[async_trait]
impl InstanceLifecycle for FhirInstances {
    async fn provision(
        &self,
        _tx: &mut Transaction<'_, Any>,
        _instance: &InstanceName,
        _properties: &serde_json::Value,
    ) -> Result<(), LifecycleError> {
        Ok(())
    }

    async fn deprovision(
        &self,
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), LifecycleError> {
        crate::store::Store::delete_instance(tx, instance)
            .await
            .map_err(|e| LifecycleError {
                code: "StorageFailed".into(),
                message: e.to_string(),
            })
    }
}
