//! Blobs in an S3-compatible store through aws-sdk-s3.
//!
//! Objects up to `part_size` go up in one PutObject; larger ones are streamed as a multipart
//! upload, one part in memory at a time, and the upload is aborted on any error so that no
//! partial object becomes visible.

use async_trait::async_trait;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{BlobError, BlobKey, BlobStore, ByteStream};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    /// For S3-compatible stores (MinIO, s3s-fs, ...): `http://host:port`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    #[serde(default = "default_true")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub force_path_style: bool,
    /// Objects larger than this go up as a multipart upload in parts of this size (>= 5 MiB).
    #[serde(default = "default_part_size")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub part_size: usize,
    /// Create the bucket at start if it does not exist.
    #[serde(default = "default_true")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub create_bucket: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_part_size() -> usize {
    8 * 1024 * 1024
}

const MIN_PART: usize = 5 * 1024 * 1024;

pub struct S3BlobStore {
    client: Client,
    bucket: String,
    part_size: usize,
    /// Read each object over a connection of its own (see [`S3BlobStore::get`]).
    fresh_reads: bool,
}

fn s3_err<'a, E: std::fmt::Display>(
    operation: &'static str,
    key: &'a str,
) -> impl FnOnce(E) -> BlobError + 'a {
    move |e| BlobError::S3 {
        operation,
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// The innermost message of an SDK error (the outer one only says "service error").
fn sdk_reason<E: std::error::Error>(e: &E) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

impl S3BlobStore {
    pub async fn new(settings: &S3Settings) -> Result<Self, BlobError> {
        if settings.part_size < MIN_PART {
            return Err(BlobError::Config(format!(
                "blobs.part_size must be at least {MIN_PART} bytes (S3's minimum part size)"
            )));
        }
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(Credentials::new(
                &settings.access_key_id,
                &settings.secret_access_key,
                None,
                None,
                "hds-config",
            ))
            .force_path_style(settings.force_path_style);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let store = Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            part_size: settings.part_size,
            fresh_reads: settings.endpoint.as_deref().is_some_and(|e| {
                e.get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
            }),
        };
        if settings.create_bucket {
            store.ensure_bucket().await?;
        }
        Ok(store)
    }

    async fn ensure_bucket(&self) -> Result<(), BlobError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                }) {
                    Ok(())
                } else {
                    Err(BlobError::Unavailable(format!(
                        "cannot create bucket '{}': {}",
                        self.bucket,
                        sdk_reason(&e)
                    )))
                }
            }
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        mut body: ByteStream,
    ) -> Result<u64, BlobError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err("CreateMultipartUpload", key)(sdk_reason(&e)))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let result = async {
            let mut parts = Vec::new();
            let mut size = first.len() as u64;
            let mut buf = BytesMut::with_capacity(self.part_size);
            buf.extend_from_slice(&first);
            let mut ended = false;
            loop {
                while !ended && buf.len() < self.part_size {
                    match body.next().await {
                        Some(chunk) => {
                            let chunk = chunk.map_err(|source| BlobError::Io {
                                key: key.to_owned(),
                                source,
                            })?;
                            size += chunk.len() as u64;
                            buf.extend_from_slice(&chunk);
                        }
                        None => ended = true,
                    }
                }
                if buf.is_empty() {
                    break;
                }
                // Every part but the last is exactly `part_size` (S3 wants >= 5 MiB).
                let part = buf.split_to(buf.len().min(self.part_size)).freeze();
                let number = parts.len() as i32 + 1;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(S3Body::from(part))
                    .send()
                    .await
                    .map_err(|e| s3_err("UploadPart", key)(sdk_reason(&e)))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build(),
                );
                if ended && buf.is_empty() {
                    break;
                }
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| s3_err("CompleteMultipartUpload", key)(sdk_reason(&e)))?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &BlobKey, mut body: ByteStream) -> Result<u64, BlobError> {
        let k = key.as_str();
        // Read up to one part: small objects need no multipart upload.
        let mut buf = BytesMut::new();
        let mut ended = false;
        while buf.len() <= self.part_size {
            match body.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk.map_err(|source| BlobError::Io {
                    key: k.to_owned(),
                    source,
                })?),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            return self.put_multipart(k, buf.freeze(), body).await;
        }
        let size = buf.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(k)
            .body(S3Body::from(buf.freeze()))
            .send()
            .await
            .map_err(|e| s3_err("PutObject", k)(sdk_reason(&e)))?;
        Ok(size)
    }

    async fn get(&self, key: &BlobKey) -> Result<ByteStream, BlobError> {
        let k = key.as_str();
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(k)
            .customize();
        if self.fresh_reads {
            // A plain-HTTP endpoint is a store nearby (MinIO, s3s-fs, ...), where a connection
            // costs a fraction of a millisecond. Some such servers (s3s-fs) write a response's
            // head and body separately with Nagle's algorithm on: on a reused connection the
            // body then waits for the client's delayed ACK of the head, 40 ms on Linux, on
            // every read. A new connection ACKs at once (quick-ACK mode), so reads ask for
            // `Connection: close` and take ~1 ms instead. Writes and TLS endpoints keep pooled
            // connections.
            request = request.mutate_request(|r| {
                r.headers_mut().insert("connection", "close");
            });
        }
        match request.send().await {
            Ok(out) => Ok(tokio_util::io::ReaderStream::with_capacity(
                out.body.into_async_read(),
                64 * 1024,
            )
            .boxed()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(BlobError::NotFound(k.to_owned()))
            }
            Err(e) => Err(s3_err("GetObject", k)(sdk_reason(&e))),
        }
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        let k = key.as_str();
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(k)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_err("HeadObject", k)(sdk_reason(&e))),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let k = key.as_str();
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(k)
            .send()
            .await
            .map_err(|e| s3_err("DeleteObject", k)(sdk_reason(&e)))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, BlobError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_err("ListObjectsV2", prefix)(sdk_reason(&e)))?;
            for o in out.contents() {
                if let Some(k) = o.key() {
                    if let Ok(k) = BlobKey::new(k) {
                        keys.push(k);
                    }
                }
            }
            match out.next_continuation_token() {
                Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| BlobError::Unavailable(sdk_reason(&e)))
    }
}
