//! Media types of DICOMweb and how a request's `Accept` picks one (PS3.18 8.7), with Azure's
//! defaults: `*/*` means the stored transfer syntax, an explicit `application/dicom` without a
//! `transfer-syntax` parameter means explicit VR little endian.

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::error::DicomError;

pub const APPLICATION_DICOM: &str = "application/dicom";
pub const DICOM_JSON: &str = "application/dicom+json";
pub const MULTIPART_RELATED: &str = "multipart/related";
/// Explicit VR Little Endian: what DICOMweb answers when no transfer syntax is asked for.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian: stored as is, but Azure warns that it does not match the SOP class.
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";

/// The transfer syntax a retrieval asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferSyntax {
    /// `transfer-syntax=*`: as stored.
    AsStored,
    Uid(String),
}

impl TransferSyntax {
    fn parse(raw: Option<&str>, default: TransferSyntax) -> Result<Self, DicomError> {
        match raw.map(|v| v.trim().trim_matches('"')) {
            None => Ok(default),
            Some("*") => Ok(TransferSyntax::AsStored),
            Some(uid) if crate::domain::Uid::parse(uid).is_some() => {
                Ok(TransferSyntax::Uid(uid.to_owned()))
            }
            Some(_) => Err(DicomError::bad_request(
                "The specified Transfer Syntax value is not valid.",
            )),
        }
    }
}

/// How retrieved instances are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRepresentation {
    /// multipart/related (or a single-part `application/dicom` body).
    pub multipart: bool,
    pub transfer_syntax: TransferSyntax,
}

/// The media ranges of `Accept`, most preferred first (by `q`, then by order).
pub fn accept_ranges(req: &HttpRequest) -> Vec<mime::Mime> {
    let mut ranges: Vec<(f32, usize, mime::Mime)> = req
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_media_list)
        .filter_map(|s| s.trim().parse::<mime::Mime>().ok())
        .enumerate()
        .map(|(i, m)| {
            let q = m
                .get_param("q")
                .and_then(|q| q.as_str().parse().ok())
                .unwrap_or(1.0);
            (q, i, m)
        })
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().map(|(_, _, m)| m).collect()
}

/// Splits a header value at commas outside quoted strings (`type="a,b"` stays whole).
fn split_media_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

pub fn param<'a>(m: &'a mime::Mime, name: &str) -> Option<&'a str> {
    m.params()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn is(m: &mime::Mime, essence: &str) -> bool {
    m.essence_str().eq_ignore_ascii_case(essence)
}

/// Which representation of instances the request accepts; `single` for one instance (which
/// may also be sent as a bare `application/dicom` body). 406 when none can be served.
pub fn instance_representation(
    req: &HttpRequest,
    single: bool,
) -> Result<InstanceRepresentation, DicomError> {
    let ranges = accept_ranges(req);
    if ranges.is_empty() {
        return Ok(InstanceRepresentation {
            multipart: !single,
            transfer_syntax: TransferSyntax::AsStored,
        });
    }
    let default = TransferSyntax::Uid(EXPLICIT_VR_LITTLE_ENDIAN.to_owned());
    for m in &ranges {
        if m.type_() == mime::STAR && m.subtype() == mime::STAR {
            return Ok(InstanceRepresentation {
                multipart: !single,
                transfer_syntax: TransferSyntax::AsStored,
            });
        }
        if single && is(m, APPLICATION_DICOM) {
            return Ok(InstanceRepresentation {
                multipart: false,
                transfer_syntax: TransferSyntax::parse(
                    param(m, "transfer-syntax"),
                    default.clone(),
                )?,
            });
        }
        if is(m, MULTIPART_RELATED)
            && param(m, "type").is_none_or(|t| t.eq_ignore_ascii_case(APPLICATION_DICOM))
        {
            return Ok(InstanceRepresentation {
                multipart: true,
                transfer_syntax: TransferSyntax::parse(
                    param(m, "transfer-syntax"),
                    default.clone(),
                )?,
            });
        }
    }
    Err(DicomError::NotAcceptable)
}

/// For responses in DICOM JSON (metadata, the STOW-RS response): 406 unless the request
/// accepts `application/dicom+json`.
pub fn require_dicom_json(req: &HttpRequest) -> Result<(), DicomError> {
    let ranges = accept_ranges(req);
    let ok = ranges.is_empty()
        || ranges.iter().any(|m| {
            is(m, DICOM_JSON)
                || is(m, "application/json")
                || (m.type_() == mime::STAR && m.subtype() == mime::STAR)
                || (m.type_() == mime::APPLICATION && m.subtype() == mime::STAR)
        });
    if ok {
        Ok(())
    } else {
        Err(DicomError::NotAcceptable)
    }
}

/// The request's `Content-Type`, parsed; a missing or malformed one is unsupported (415).
pub fn content_type(req: &HttpRequest) -> Result<mime::Mime, DicomError> {
    let raw = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    raw.parse::<mime::Mime>()
        .map_err(|_| DicomError::UnsupportedMediaType(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn rep(accept: &str, single: bool) -> Result<InstanceRepresentation, DicomError> {
        let req = TestRequest::default()
            .insert_header(("accept", accept))
            .to_http_request();
        instance_representation(&req, single)
    }

    #[test]
    fn accept_picks_azure_defaults() {
        let r = rep("application/dicom; transfer-syntax=*", true).unwrap();
        assert_eq!(
            (r.multipart, r.transfer_syntax),
            (false, TransferSyntax::AsStored)
        );
        let r = rep("application/dicom", true).unwrap();
        assert_eq!(
            r.transfer_syntax,
            TransferSyntax::Uid(EXPLICIT_VR_LITTLE_ENDIAN.into())
        );
        let r = rep(
            r#"multipart/related; type="application/dicom"; transfer-syntax=*"#,
            false,
        )
        .unwrap();
        assert!(r.multipart);
        assert_eq!(
            rep("*/*", false).unwrap().transfer_syntax,
            TransferSyntax::AsStored
        );
        assert!(matches!(
            rep("application/dicom", false),
            Err(DicomError::NotAcceptable)
        ));
        assert!(matches!(
            rep("image/png", true),
            Err(DicomError::NotAcceptable)
        ));
        assert!(matches!(
            rep("application/dicom; transfer-syntax=abc", true),
            Err(DicomError::BadRequest(_))
        ));
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        assert_eq!(
            split_media_list(r#"a; b="x,y", c"#),
            vec![r#"a; b="x,y""#, " c"]
        );
    }
}
