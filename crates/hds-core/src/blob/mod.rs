//! The blob-store seam: whole objects by key, streamed in and out.
//!
//! - [`s3::S3BlobStore`]: any S3-compatible store through aws-sdk-s3 (endpoint override, path
//!   style, multipart upload for large objects);
//! - [`local::LocalBlobStore`]: a folder; each object is written to a temporary file, synced
//!   and renamed into place, so a reader never sees a torn object.
//!
//! One contract suite (`tests/blob_contract.rs`) runs against both.

pub mod local;
pub mod s3;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A stream over bytes already in memory.
pub fn stream_from(bytes: impl Into<Bytes>) -> ByteStream {
    futures::stream::once(futures::future::ready(Ok(bytes.into()))).boxed()
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob key '{0}' is invalid: use '/'-separated segments of letters, digits and . _ - = +, no '..'")]
    BadKey(String),
    #[error("blob '{0}' not found")]
    NotFound(String),
    #[error("blob store configuration: {0}")]
    Config(String),
    #[error("blob store I/O on '{key}': {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    #[error("S3 {operation} of '{key}' failed: {reason}")]
    S3 {
        operation: &'static str,
        key: String,
        reason: String,
    },
}

/// An object key: `/`-separated segments, each of `[A-Za-z0-9._=+-]`, none `.` or `..`.
/// Valid by construction, so no key can escape the local store's folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    pub fn new(key: impl Into<String>) -> Result<Self, BlobError> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.len() <= 1024
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._=+-".contains(c))
            });
        if ok {
            Ok(Self(key))
        } else {
            Err(BlobError::BadKey(key))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// "s3" or "local", for logs and test names.
    fn kind(&self) -> &'static str;

    /// Stores the stream under `key`, replacing what was there. Returns the size in bytes. On
    /// error nothing is left under `key` that was not there before.
    async fn put(&self, key: &BlobKey, body: ByteStream) -> Result<u64, BlobError>;

    /// The object's bytes as a stream; [`BlobError::NotFound`] if absent.
    async fn get(&self, key: &BlobKey) -> Result<ByteStream, BlobError>;

    /// The object's size, or `None` if absent.
    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobError>;

    /// Removes the object; absent objects are not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;

    /// Every key that starts with `prefix`, in lexical order.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, BlobError>;

    /// Readiness: can the store be reached now?
    async fn check(&self) -> Result<(), BlobError>;

    async fn put_bytes(&self, key: &BlobKey, bytes: Bytes) -> Result<u64, BlobError> {
        self.put(key, stream_from(bytes)).await
    }

    async fn get_bytes(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        let chunks: Vec<Bytes> =
            self.get(key)
                .await?
                .try_collect()
                .await
                .map_err(|source| BlobError::Io {
                    key: key.to_string(),
                    source,
                })?;
        Ok(chunks.concat().into())
    }

    /// Removes every object under `prefix` (an instance's data when it is deleted).
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, BlobError> {
        let keys = self.list(prefix).await?;
        for k in &keys {
            self.delete(k).await?;
        }
        Ok(keys.len())
    }
}

pub type SharedBlobStore = Arc<dyn BlobStore>;

/// Builds the store the settings name.
pub async fn connect(settings: &crate::config::BlobSettings) -> Result<SharedBlobStore, BlobError> {
    match settings {
        crate::config::BlobSettings::S3(s) => Ok(Arc::new(s3::S3BlobStore::new(s).await?)),
        crate::config::BlobSettings::Local(l) => {
            Ok(Arc::new(local::LocalBlobStore::open(&l.path).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        assert!(BlobKey::new("ws-dicom/1.2.3/4.5/6.7.dcm").is_ok());
        for bad in [
            "",
            "/abs",
            "a//b",
            "../x",
            "a/../b",
            "a/./b",
            "a\\b",
            "a b",
            "trailing/",
        ] {
            assert!(BlobKey::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
