//! Retrieve instances (PS3.18 10.4.1.1): `GET {s}/studies/{study}[/series/{series}
//! [/instances/{instance}]]`. One instance may come as a bare `application/dicom` body; a study
//! or series is a `multipart/related` body with one part per instance, streamed from the blob
//! store. Instances are sent as stored, or re-encoded as explicit VR little endian when that is
//! asked for and the stored syntax allows it (`transcode`); any other transfer syntax is 406.
//! A transcoded instance is read whole into memory, one at a time.
//!
//! DICOM bodies carry `Content-Encoding: identity`, which tells the gzip middleware to leave
//! them alone: compressing pixel data costs CPU for little gain and breaks byte-exact reads.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hds_core::auth::Permission;
use hds_core::blob::BlobKey;

use super::transcode::{can_transcode, transcode};
use crate::dicomweb::media::{self, TransferSyntax, APPLICATION_DICOM};
use crate::dicomweb::multipart::MultipartWriter;
use crate::domain::Scope;
use crate::error::DicomError;
use crate::http::{scope, DicomCaller, DicomState};
use crate::partitions::Partitioned;
use crate::store::StoredInstance;

pub async fn retrieve(
    req: HttpRequest,
    caller: DicomCaller,
    _version: crate::http::Version,
    Partitioned(partition): Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let scope = scope(&req)?;
    let single = matches!(scope, Scope::Instance(..));
    let wanted = media::instance_representation(&req, single)?;
    let stored = state.store.instances(&partition, &scope).await?;
    if stored.is_empty() {
        return Err(scope.not_found());
    }
    let target = match &wanted.transfer_syntax {
        TransferSyntax::AsStored => None,
        TransferSyntax::Uid(uid) => Some(uid.clone()),
    };
    // Per instance: the syntax it is sent in, and whether that needs transcoding.
    let plan = |s: &StoredInstance| -> Result<(String, bool), DicomError> {
        match &target {
            Some(t) if *t != s.transfer_syntax_uid => {
                if can_transcode(&s.transfer_syntax_uid, t) {
                    Ok((t.clone(), true))
                } else {
                    Err(DicomError::NotAcceptable)
                }
            }
            _ => Ok((s.transfer_syntax_uid.clone(), false)),
        }
    };
    let planned: Vec<(StoredInstance, String, bool)> = stored
        .into_iter()
        .map(|s| plan(&s).map(|(ts, t)| (s, ts, t)))
        .collect::<Result<_, _>>()?;
    let blobs = state.store.blobs.clone();
    if !wanted.multipart {
        let (one, syntax, transcoding) = &planned[0];
        let key = BlobKey::new(&one.blob_key)?;
        if *transcoding {
            let body = transcode(blobs.get_bytes(&key).await?).await?;
            return Ok(HttpResponse::Ok()
                .content_type(format!("{APPLICATION_DICOM}; transfer-syntax={syntax}"))
                .insert_header((header::CONTENT_ENCODING, "identity"))
                .body(body));
        }
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
    let parts = futures::stream::iter(planned)
        .then(move |(s, syntax, transcoding)| {
            let blobs = blobs.clone();
            let writer = parts_writer.clone();
            async move {
                let key = BlobKey::new(&s.blob_key).map_err(std::io::Error::other)?;
                let body = if transcoding {
                    let bytes = blobs.get_bytes(&key).await.map_err(std::io::Error::other)?;
                    let bytes = transcode(bytes).await.map_err(std::io::Error::other)?;
                    hds_core::blob::stream_from(bytes)
                } else {
                    blobs.get(&key).await.map_err(std::io::Error::other)?
                };
                let head =
                    writer.part_head(&format!("{APPLICATION_DICOM}; transfer-syntax={syntax}"));
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
