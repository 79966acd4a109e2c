//! Retrieve rendered (PS3.18 10.4.1.1.4): `GET .../instances/{i}/rendered` (the first frame)
//! and `.../frames/{n}/rendered`, as `image/jpeg` (the default) or `image/png`, with
//! `quality` (1..100, JPEG only, default 100). dicom-pixeldata applies the modality and VOI
//! LUTs of native pixel data and gives an 8- or 16-bit image, which is sent in 8 bits.

use std::io::Cursor;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use dicom_pixeldata::PixelDecoder;
use hds_core::auth::Permission;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat};

use super::frames::{frame_not_found, FrameNumber};
use crate::dicomweb::media;
use crate::error::DicomError;
use crate::http::{scope, DicomCaller, DicomState, Version};
use crate::partitions::Partitioned;

/// The image formats offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    Jpeg { quality: u8 },
    Png,
}

impl Rendition {
    fn content_type(self) -> &'static str {
        match self {
            Rendition::Jpeg { .. } => "image/jpeg",
            Rendition::Png => "image/png",
        }
    }
}

fn rendition(req: &HttpRequest) -> Result<Rendition, DicomError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|_| DicomError::bad_request("The query string included invalid characters."))?
        .into_inner();
    let mut quality = 100_u8;
    for (name, value) in &pairs {
        if name.eq_ignore_ascii_case("quality") {
            quality = value
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|q| (1..=100).contains(q))
                .ok_or_else(|| {
                    DicomError::bad_request("Image quality must be between 1 and 100 inclusive")
                })?;
        }
    }
    let ranges = media::accept_ranges(req);
    if ranges.is_empty() {
        return Ok(Rendition::Jpeg { quality });
    }
    for m in &ranges {
        if media::is(m, "image/png") {
            return Ok(Rendition::Png);
        }
        let any =
            m.subtype() == mime::STAR && (m.type_() == mime::STAR || m.type_() == mime::IMAGE);
        if media::is(m, "image/jpeg") || any {
            return Ok(Rendition::Jpeg { quality });
        }
    }
    Err(DicomError::NotAcceptable)
}

/// Frame `frame` of a stored instance as an image file.
fn render(stored: Bytes, frame: FrameNumber, as_: Rendition) -> Result<Vec<u8>, DicomError> {
    let obj = crate::stow::parse::open(stored).map_err(DicomError::Internal)?;
    let decoded = obj.decode_pixel_data().map_err(|e| {
        tracing::info!(error = %e, "pixel data cannot be decoded for rendering");
        DicomError::NotAcceptable
    })?;
    if frame.0 > decoded.number_of_frames() {
        return Err(frame_not_found());
    }
    let image = decoded.to_dynamic_image(frame.0 - 1).map_err(|e| {
        tracing::info!(error = %e, "pixel data cannot be rendered");
        DicomError::NotAcceptable
    })?;
    // JPEG and the browsers' PNG support are 8 bits per sample.
    let image = if image.color().has_color() {
        DynamicImage::ImageRgb8(image.to_rgb8())
    } else {
        DynamicImage::ImageLuma8(image.to_luma8())
    };
    let mut out = Vec::new();
    let written = match as_ {
        Rendition::Jpeg { quality } => {
            JpegEncoder::new_with_quality(&mut out, quality).encode_image(&image)
        }
        Rendition::Png => image.write_to(&mut Cursor::new(&mut out), ImageFormat::Png),
    };
    written.map_err(|e| DicomError::Internal(format!("encoding the image: {e}")))?;
    Ok(out)
}

pub async fn rendered(
    req: HttpRequest,
    caller: DicomCaller,
    _version: Version,
    Partitioned(partition): Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let scope = scope(&req)?;
    let frame = match req.match_info().get("frame") {
        None => FrameNumber(1),
        Some(raw) => match FrameNumber::parse_list(raw)?.as_slice() {
            [one] => *one,
            _ => {
                return Err(DicomError::bad_request(
                    "A rendered frame is one frame number.",
                ))
            }
        },
    };
    let as_ = rendition(&req)?;
    let bytes = super::read_one(&state, &partition, &scope).await?.1;
    let image = tokio::task::spawn_blocking(move || render(bytes, frame, as_))
        .await
        .map_err(|e| DicomError::Internal(format!("rendering task: {e}")))??;
    Ok(HttpResponse::Ok()
        .content_type(as_.content_type())
        .insert_header((actix_web::http::header::CONTENT_ENCODING, "identity"))
        .body(image))
}
