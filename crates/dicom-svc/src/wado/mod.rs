//! Retrieve Transaction, WADO-RS (PS3.18 10.4): instances (`retrieve`, with `transcode` to
//! explicit VR little endian), their metadata (`metadata`), `frames` and `rendered` images.

pub mod frames;
pub mod metadata;
pub mod rendered;
pub mod retrieve;
pub mod transcode;

use bytes::Bytes;
use hds_core::blob::BlobKey;

use crate::domain::Scope;
use crate::error::DicomError;
use crate::http::DicomState;
use crate::partitions::DataPartition;
use crate::store::StoredInstance;

/// The one instance `scope` names, with its stored bytes.
pub async fn read_one(
    state: &DicomState,
    partition: &DataPartition,
    scope: &Scope,
) -> Result<(StoredInstance, Bytes), DicomError> {
    let stored = state
        .store
        .instances(partition, scope)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| scope.not_found())?;
    let bytes = state
        .store
        .blobs
        .get_bytes(&BlobKey::new(&stored.blob_key)?)
        .await?;
    Ok((stored, bytes))
}
