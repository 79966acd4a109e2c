//! Transcoding on retrieval: an instance stored in another transfer syntax is re-encoded as
//! explicit VR little endian, the DICOMweb default, when that is asked for. dicom-rs reads
//! the data set in any syntax it knows and dicom-pixeldata's `Transcode` decodes
//! encapsulated pixel data with the codecs linked in (JPEG baseline/extended/lossless,
//! JPEG 2000, RLE Lossless; see the workspace manifest). A syntax without a decoder (JPEG-LS,
//! JPEG XL, MPEG video) cannot be produced: 406, as Azure answers a transcoding it cannot do.

use bytes::Bytes;
use dicom_encoding::TransferSyntaxIndex;
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::{entries, TransferSyntaxRegistry};

use crate::dicomweb::media::EXPLICIT_VR_LITTLE_ENDIAN;
use crate::error::DicomError;
use crate::stow::parse;

/// Whether an instance stored in `from` can be sent in `to`.
pub fn can_transcode(from: &str, to: &str) -> bool {
    to == EXPLICIT_VR_LITTLE_ENDIAN
        && TransferSyntaxRegistry
            .get(from)
            .is_some_and(|ts| ts.is_codec_free() || ts.can_decode_all())
}

/// The stored file re-encoded in explicit VR little endian, its pixel data decoded if it was
/// encapsulated (CPU work: run it off the request's thread).
pub fn to_explicit_vr_little_endian(stored: Bytes) -> Result<Bytes, DicomError> {
    let mut obj = parse::open(stored).map_err(|e| {
        tracing::warn!(error = %e, "a stored instance could not be read for transcoding");
        DicomError::NotAcceptable
    })?;
    obj.transcode(&entries::EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| {
            tracing::warn!(error = %e, "the pixel data of a stored instance could not be decoded");
            DicomError::NotAcceptable
        })?;
    obj.meta_mut().update_information_group_length();
    let mut out = Vec::new();
    obj.write_all(&mut out).map_err(|e| {
        tracing::warn!(error = %e, "transcoding a stored instance failed");
        DicomError::NotAcceptable
    })?;
    Ok(Bytes::from(out))
}

/// `to_explicit_vr_little_endian` on the blocking pool.
pub async fn transcode(stored: Bytes) -> Result<Bytes, DicomError> {
    tokio::task::spawn_blocking(move || to_explicit_vr_little_endian(stored))
        .await
        .map_err(|e| DicomError::Internal(format!("transcoding task: {e}")))?
}
