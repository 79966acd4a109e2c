//! What a DICOM service instance is made of: index rows keyed by instance, and the blobs
//! under `{instance}/` in the blob store. Deleting an instance removes both: the rows in the
//! provisioning transaction, the blobs before it commits.

use async_trait::async_trait;
use hds_core::blob::SharedBlobStore;
use hds_core::names::InstanceName;
use hds_core::provisioning::{InstanceLifecycle, LifecycleError};
use sqlx::{Any, Transaction};

pub struct DicomInstances {
    pub blobs: SharedBlobStore,
}

/// Where an instance's blobs live.
pub fn blob_prefix(instance: &InstanceName) -> String {
    format!("{instance}/")
}

#[async_trait]
impl InstanceLifecycle for DicomInstances {
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
        crate::store::Store::delete_instance_rows(tx, instance)
            .await
            .map_err(|e| LifecycleError {
                code: "StorageFailed".into(),
                message: e.to_string(),
            })?;
        // Blobs go first: if this fails the command is reported failed and the instance
        // stays, so a retried delete finds what is left (deleting is idempotent).
        self.blobs
            .delete_prefix(&blob_prefix(instance))
            .await
            .map(|n| tracing::info!(instance = %instance, blobs = n, "instance blobs deleted"))
            .map_err(|e| LifecycleError {
                code: "BlobDeletionFailed".into(),
                message: e.to_string(),
            })
    }
}
