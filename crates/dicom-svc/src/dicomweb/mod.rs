//! DICOMweb wire formats (PS3.18): media types and their negotiation, multipart/related bodies
//! in both directions, and the DICOM JSON model (PS3.18 Annex F).

pub mod json;
pub mod media;
pub mod multipart;
