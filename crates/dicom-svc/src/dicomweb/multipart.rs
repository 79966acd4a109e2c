//! multipart/related bodies (RFC 2387), as STOW-RS receives them and WADO-RS sends them.
//!
//! Reading uses `multer`, which parses any multipart body incrementally from a byte stream
//! (its form-data conveniences are simply unused: DICOMweb parts have no Content-Disposition).
//! multer wants a `Send` stream and actix's payload is not, so a small task forwards the
//! payload into a bounded channel; the bound keeps back-pressure on the client. Each part is
//! gathered as the chunks that arrived (no copying), up to a per-part limit.

use actix_web::web;
use bytes::Bytes;
use futures::StreamExt;

use crate::dicomweb::media::{self, APPLICATION_DICOM, MULTIPART_RELATED};
use crate::error::DicomError;

/// One body part: the bytes as they arrived.
#[derive(Debug, Default)]
pub struct Part {
    pub chunks: Vec<Bytes>,
    pub len: usize,
}

impl Part {
    fn push(&mut self, chunk: Bytes, limit: usize) -> Result<(), DicomError> {
        self.len += chunk.len();
        if self.len > limit {
            return Err(DicomError::PartTooLarge { limit });
        }
        if !chunk.is_empty() {
            self.chunks.push(chunk);
        }
        Ok(())
    }
}

enum Body {
    Multipart(multer::Multipart<'static>),
    /// A single-part `application/dicom` body, not yet read.
    Single(Option<web::Payload>),
}

/// The DICOM parts of a STOW-RS request, one at a time.
pub struct DicomParts {
    body: Body,
    limit: usize,
}

impl DicomParts {
    /// Checks the request's media type: `multipart/related` (of `application/dicom` parts) or
    /// a single `application/dicom` body; anything else is 415.
    pub fn new(
        content_type: &mime::Mime,
        payload: web::Payload,
        limit: usize,
    ) -> Result<Self, DicomError> {
        if media::is(content_type, APPLICATION_DICOM) {
            return Ok(Self {
                body: Body::Single(Some(payload)),
                limit,
            });
        }
        let unsupported = || DicomError::UnsupportedMediaType(content_type.to_string());
        if !media::is(content_type, MULTIPART_RELATED) {
            return Err(unsupported());
        }
        if media::param(content_type, "type")
            .is_some_and(|t| !t.eq_ignore_ascii_case(APPLICATION_DICOM))
        {
            return Err(unsupported());
        }
        let boundary = media::param(content_type, "boundary")
            .ok_or_else(|| {
                DicomError::bad_request("The multipart/related Content-Type has no boundary.")
            })?
            .to_owned();
        Ok(Self {
            body: Body::Multipart(multer::Multipart::new(sendable(payload), boundary)),
            limit,
        })
    }

    /// The next part, or `None` after the last. A part of another media type than
    /// `application/dicom` makes the request unsupported (415), as on Azure.
    pub async fn next(&mut self) -> Result<Option<Part>, DicomError> {
        match &mut self.body {
            Body::Single(payload) => {
                let Some(mut payload) = payload.take() else {
                    return Ok(None);
                };
                let mut part = Part::default();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|e| {
                        DicomError::bad_request(format!("Reading the request body failed: {e}"))
                    })?;
                    part.push(chunk, self.limit)?;
                }
                Ok(Some(part))
            }
            Body::Multipart(multipart) => {
                let Some(mut field) = multipart.next_field().await.map_err(malformed)? else {
                    return Ok(None);
                };
                if let Some(ct) = field.content_type() {
                    if !media::is(ct, APPLICATION_DICOM) {
                        return Err(DicomError::UnsupportedMediaType(ct.to_string()));
                    }
                }
                let mut part = Part::default();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    part.push(chunk, self.limit)?;
                }
                Ok(Some(part))
            }
        }
    }
}

fn malformed(e: multer::Error) -> DicomError {
    DicomError::bad_request(format!(
        "The multipart/related request body is malformed: {e}"
    ))
}

/// The payload as a `Send` stream (see the module comment).
fn sendable(
    mut payload: web::Payload,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = chunk.is_err();
            // The reader went away (the request failed early): stop reading.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Writes a multipart/related body: a boundary, then per part its header and bytes.
pub struct MultipartWriter {
    boundary: String,
}

impl Default for MultipartWriter {
    fn default() -> Self {
        Self {
            boundary: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

impl MultipartWriter {
    /// The response's Content-Type for parts of `part_type`.
    pub fn content_type(&self, part_type: &str) -> String {
        format!(
            "{MULTIPART_RELATED}; type=\"{part_type}\"; boundary={}",
            self.boundary
        )
    }

    /// What precedes a part's bytes.
    pub fn part_head(&self, content_type: &str) -> Bytes {
        Bytes::from(format!(
            "--{}\r\nContent-Type: {content_type}\r\n\r\n",
            self.boundary
        ))
    }

    /// What follows a part's bytes.
    pub fn part_tail(&self) -> Bytes {
        Bytes::from_static(b"\r\n")
    }

    /// The closing delimiter.
    pub fn end(&self) -> Bytes {
        Bytes::from(format!("--{}--\r\n", self.boundary))
    }
}
