//! What a DICOM service instance is made of: index rows keyed by instance (or by one of its
//! data partitions, `partitions`), and the blobs under `{instance}/` in the blob store.
//! Deleting an instance removes both, for every partition: the rows in the provisioning
//! transaction, the blobs before it commits.
//!
//! `enableDataPartitions` is read per request from the instance's properties; turning it off
//! once partitions other than `Microsoft.Default` exist is refused, as Azure refuses it
//! (`DataPartitionsFeatureCannotBeDisabledException`): their data would become unreachable.

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
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
        properties: &serde_json::Value,
    ) -> Result<(), LifecycleError> {
        if crate::partitions::enabled(properties) {
            return Ok(());
        }
        let partitioned = crate::partitions::has_created(tx, instance)
            .await
            .map_err(|e| LifecycleError {
                code: "StorageFailed".into(),
                message: e.to_string(),
            })?;
        if partitioned {
            return Err(LifecycleError {
                code: "DataPartitionsFeatureCannotBeDisabled".into(),
                message: "Data partitions feature cannot be disabled while existing data has \
                          already been partitioned."
                    .into(),
            });
        }
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
