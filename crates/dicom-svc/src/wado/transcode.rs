//! Transcoding on retrieval: an instance stored in a transfer syntax that dicom-rs reads
//! element by element (implicit VR little endian, deflated explicit VR little endian) is
//! re-encoded as explicit VR little endian, the DICOMweb default, when that is asked for.
//! Anything else (compressed pixel data, big endian) would need codecs this service does not
//! carry: such a request is 406, as Azure answers a transcoding it cannot do.

use bytes::Bytes;

use crate::dicomweb::media::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use crate::error::DicomError;
use crate::stow::parse;

const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";

/// Whether an instance stored in `from` can be sent in `to`.
pub fn can_transcode(from: &str, to: &str) -> bool {
    to == EXPLICIT_VR_LITTLE_ENDIAN
        && [
            IMPLICIT_VR_LITTLE_ENDIAN,
            DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        ]
        .contains(&from)
}

/// The stored file re-encoded in explicit VR little endian (CPU work: run it off the
/// request's thread).
pub fn to_explicit_vr_little_endian(stored: Bytes) -> Result<Bytes, DicomError> {
    let mut obj = parse::open(stored).map_err(|e| {
        tracing::warn!(error = %e, "a stored instance could not be read for transcoding");
        DicomError::NotAcceptable
    })?;
    obj.meta_mut().transfer_syntax = EXPLICIT_VR_LITTLE_ENDIAN.to_owned();
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
