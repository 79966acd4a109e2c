//! Retrieve instances (PS3.18 10.4.1.1): `GET {s}/studies/{study}[/series/{series}
//! [/instances/{instance}]]`. One instance may come as a bare `application/dicom` body; a study
//! or series is a `multipart/related` body with one part per instance, streamed from the blob
//! store. Instances are sent as stored (transcoding is not offered yet): a request for another
//! transfer syntax than the stored one is 406.
//!
//! DICOM bodies carry `Content-Encoding: identity`, which tells the gzip middleware to leave
//! them alone: compressing pixel data costs CPU for little gain and breaks byte-exact reads.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hds_core::auth::Permission;
use hds_core::blob::BlobKey;

use crate::dicomweb::media::{self, APPLICATION_DICOM};
use crate::dicomweb::multipart::MultipartWriter;
use crate::domain::Scope;
use crate::error::DicomError;
use crate::http::{scope, DicomCaller, DicomState, Instance};

pub async fn retrieve(
    req: HttpRequest,
    caller: DicomCaller,
    Instance(instance): Instance,
    _version: crate::http::Version,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let scope = scope(&req)?;
    let single = matches!(scope, Scope::Instance(..));
    let wanted = media::instance_representation(&req, single)?;
    let stored = state.store.instances(&instance, &scope).await?;
    if stored.is_empty() {
        return Err(scope.not_found());
    }
    if !stored
        .iter()
        .all(|s| wanted.transfer_syntax.serves(&s.transfer_syntax_uid))
    {
        return Err(DicomError::NotAcceptable);
    }
    let blobs = state.store.blobs.clone();
    if !wanted.multipart {
        let one = &stored[0];
        let key = BlobKey::new(&one.blob_key)?;
        let body = blobs.get(&key).await?;
        return Ok(HttpResponse::Ok()
            .content_type(format!(
                "{APPLICATION_DICOM}; transfer-syntax={}",
                one.transfer_syntax_uid
            ))
            .insert_header((header::CONTENT_ENCODING, "identity"))
            .no_chunking(u64::try_from(one.size_bytes).unwrap_or_default())
            .streaming(body));
    }
    let writer = std::sync::Arc::new(MultipartWriter::default());
    let content_type = writer.content_type(APPLICATION_DICOM);
    let parts_writer = writer.clone();
    // Blobs are opened one after the other as the body is sent, so a large study never sits
    // in memory.
    let parts = futures::stream::iter(stored)
        .then(move |s| {
            let blobs = blobs.clone();
            let writer = parts_writer.clone();
            async move {
                let key = BlobKey::new(&s.blob_key).map_err(std::io::Error::other)?;
                let body = blobs.get(&key).await.map_err(std::io::Error::other)?;
                let head = writer.part_head(&format!(
                    "{APPLICATION_DICOM}; transfer-syntax={}",
                    s.transfer_syntax_uid
                ));
                let tail = writer.part_tail();
                Ok::<_, std::io::Error>(
                    futures::stream::once(async move { Ok(head) })
                        .chain(body)
                        .chain(futures::stream::once(async move { Ok(tail) })),
                )
            }
        })
        .try_flatten();
    let end = writer.end();
    let body = parts.chain(futures::stream::once(async move {
        Ok::<Bytes, std::io::Error>(end)
    }));
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .streaming(body))
}
