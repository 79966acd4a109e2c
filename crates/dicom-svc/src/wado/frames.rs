//! Retrieve frames (PS3.18 10.4.1.1.3): `GET .../instances/{i}/frames/{list}`, the listed
//! frames (1-based, comma-separated) as `multipart/related; type="application/octet-stream"`,
//! one part per frame with its uncompressed bytes, or one frame as a bare
//! `application/octet-stream` body. Encapsulated pixel data is decoded first (the codecs are
//! listed in `transcode`); one without a decoder linked (JPEG-LS) is 406.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use dicom_pixeldata::PixelDecoder;
use hds_core::auth::Permission;

use crate::dicomweb::media::{self, EXPLICIT_VR_LITTLE_ENDIAN, MULTIPART_RELATED};
use crate::dicomweb::multipart::MultipartWriter;
use crate::error::DicomError;
use crate::http::{scope, DicomCaller, DicomState, Version};
use crate::partitions::Partitioned;

pub const OCTET_STREAM: &str = "application/octet-stream";

/// A 1-based frame number, as the path lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameNumber(pub u32);

impl FrameNumber {
    /// The frame numbers of a path segment (`1,3,5`).
    pub fn parse_list(raw: &str) -> Result<Vec<FrameNumber>, DicomError> {
        let invalid = || {
            DicomError::bad_request(
                "The specified frames value is not valid. At least one frame must be present, and all requested frames must have value greater than 0.",
            )
        };
        let frames: Vec<FrameNumber> = raw
            .split(',')
            .map(|f| match f.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(FrameNumber(n)),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()?;
        if frames.is_empty() {
            return Err(invalid());
        }
        Ok(frames)
    }

    fn index(self) -> u32 {
        self.0 - 1
    }
}

pub fn frame_not_found() -> DicomError {
    DicomError::NotFound("The specified frame cannot be found.".into())
}

/// The uncompressed bytes of `frames` of a stored instance.
fn cut(stored: Bytes, frames: &[FrameNumber]) -> Result<Vec<Bytes>, DicomError> {
    let obj = crate::stow::parse::open(stored).map_err(DicomError::Internal)?;
    let decoded = obj.decode_pixel_data().map_err(|e| {
        tracing::info!(error = %e, "pixel data cannot be decoded for frames");
        DicomError::NotAcceptable
    })?;
    frames
        .iter()
        .map(|f| {
            if f.0 > decoded.number_of_frames() {
                return Err(frame_not_found());
            }
            decoded
                .frame_data(f.index())
                .map(Bytes::copy_from_slice)
                .map_err(|_| frame_not_found())
        })
        .collect()
}

/// How the frames are to be sent: multipart or one bare part. 406 for other media types or
/// a transfer syntax other than uncompressed.
fn representation(req: &HttpRequest, count: usize) -> Result<bool, DicomError> {
    let ranges = media::accept_ranges(req);
    if ranges.is_empty() {
        return Ok(true);
    }
    for m in &ranges {
        let syntax_ok = media::param(m, "transfer-syntax")
            .map(|t| t.trim_matches('"'))
            .is_none_or(|t| t == "*" || t == EXPLICIT_VR_LITTLE_ENDIAN);
        if m.type_() == mime::STAR && m.subtype() == mime::STAR {
            return Ok(true);
        }
        if media::is(m, MULTIPART_RELATED)
            // dicomweb-client asks for `type="*/*"` by default.
            && media::param(m, "type").is_none_or(|t| {
                let t = t.trim_matches('"');
                t.eq_ignore_ascii_case(OCTET_STREAM) || t == "*/*" || t == "application/*"
            })
            && syntax_ok
        {
            return Ok(true);
        }
        if media::is(m, OCTET_STREAM) && syntax_ok {
            if count == 1 {
                return Ok(false);
            }
            return Err(DicomError::bad_request(
                "The accept header is supported for single frame retrieval, use multi-part accept header instead.",
            ));
        }
    }
    Err(DicomError::NotAcceptable)
}

pub async fn frames(
    req: HttpRequest,
    caller: DicomCaller,
    _version: Version,
    Partitioned(partition): Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let scope = scope(&req)?;
    let list = FrameNumber::parse_list(req.match_info().get("frames").unwrap_or_default())?;
    let multipart = representation(&req, list.len())?;
    let bytes = super::read_one(&state, &partition, &scope).await?.1;
    let parts = tokio::task::spawn_blocking(move || cut(bytes, &list))
        .await
        .map_err(|e| DicomError::Internal(format!("frames task: {e}")))??;
    if !multipart {
        return Ok(HttpResponse::Ok()
            .content_type(OCTET_STREAM)
            .insert_header((header::CONTENT_ENCODING, "identity"))
            .body(parts.into_iter().next().unwrap_or_default()));
    }
    let writer = MultipartWriter::default();
    let part_type = format!("{OCTET_STREAM}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}");
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.len() + 128).sum());
    for p in &parts {
        body.extend_from_slice(&writer.part_head(&part_type));
        body.extend_from_slice(p);
        body.extend_from_slice(&writer.part_tail());
    }
    body.extend_from_slice(&writer.end());
    Ok(HttpResponse::Ok()
        .content_type(format!(
            "{}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}",
            writer.content_type(OCTET_STREAM)
        ))
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists_are_one_based() {
        assert_eq!(
            FrameNumber::parse_list("1,3").unwrap(),
            vec![FrameNumber(1), FrameNumber(3)]
        );
        for bad in ["", "0", "1,,2", "a", "-1"] {
            assert!(FrameNumber::parse_list(bad).is_err(), "{bad}");
        }
    }
}
