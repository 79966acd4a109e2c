//! Azure's store validation of a data set (v2 conformance statement, "Store Required
//! Attributes" and "Store Changes From V1").
//!
//! Every version requires StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID and SOPClassUID
//! with valid UIDs, and PatientID (v1: with a value; v2: present, possibly empty). Then:
//! - v1 validates the searchable attributes and rejects the instance if one is invalid;
//! - v2 validates every attribute, stores the instance anyway, reports each invalid attribute
//!   in FailedAttributesSequence with WarningReason 1, and leaves it out of the metadata.
//!
//! Data sets in implicit VR little endian get WarningReason 45063 ("does not match SOP class")
//! in both versions, as on Azure.

use std::collections::HashSet;

use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::dicomweb::json::strings;
use crate::dicomweb::media::IMPLICIT_VR_LITTLE_ENDIAN;
use crate::domain::{ApiVersion, InstanceRef, SeriesUid, SopInstanceUid, StudyUid, Uid};
use crate::stow::response::{FailureReason, WarningReason};

/// Azure's error number of validation messages (`DICOM100: ...`).
const VALIDATION_ERROR: u16 = 100;

/// An instance that may be stored.
#[derive(Debug)]
pub struct Accepted {
    pub id: InstanceRef,
    pub sop_class_uid: Uid,
    pub warning: Option<WarningReason>,
    /// Messages about invalid attributes (v2), for FailedAttributesSequence.
    pub failed_attributes: Vec<String>,
    /// Top-level attributes left out of the metadata (v2: the invalid ones).
    pub dropped: HashSet<Tag>,
}

/// An instance that may not be stored.
#[derive(Debug)]
pub struct Rejected {
    pub reason: FailureReason,
    pub failed_attributes: Vec<String>,
}

/// The UIDs a response reports for an instance, as written in it (even if invalid).
pub fn reported_uids(ds: &InMemDicomObject) -> (Option<String>, Option<String>) {
    let get = |tag| {
        first_value(ds, tag)
            .map(|v| v.trim_end_matches(['\0', ' ']).to_owned())
            .filter(|v| !v.is_empty())
    };
    (get(tags::SOP_CLASS_UID), get(tags::SOP_INSTANCE_UID))
}

pub fn validate(
    ds: &InMemDicomObject,
    transfer_syntax_uid: &str,
    version: ApiVersion,
    required_study: Option<&StudyUid>,
) -> Result<Accepted, Rejected> {
    let mut errors = Errors::default();
    let sop_class = required_uid(ds, tags::SOP_CLASS_UID, &mut errors);
    let study = required_uid(ds, tags::STUDY_INSTANCE_UID, &mut errors);
    let series = required_uid(ds, tags::SERIES_INSTANCE_UID, &mut errors);
    let sop = required_uid(ds, tags::SOP_INSTANCE_UID, &mut errors);
    match ds.element_opt(tags::PATIENT_ID).ok().flatten() {
        None => errors.add(tags::PATIENT_ID, missing(tags::PATIENT_ID)),
        Some(e) => {
            let value = first_value(ds, tags::PATIENT_ID).unwrap_or_default();
            if value.trim().is_empty() && !version.is_lenient() {
                errors.add(tags::PATIENT_ID, missing(tags::PATIENT_ID));
            } else if let Err(why) = check(e.vr(), &value, Rules::Minimum) {
                errors.add(
                    tags::PATIENT_ID,
                    invalid(tags::PATIENT_ID, e.vr(), &value, &why),
                );
            }
        }
    }
    let (Some(sop_class), Some(study), Some(series), Some(sop)) = (sop_class, study, series, sop)
    else {
        return Err(errors.reject(FailureReason::ValidationFailure));
    };
    if !errors.is_empty() {
        return Err(errors.reject(FailureReason::ValidationFailure));
    }
    if required_study.is_some_and(|r| r.0 != study) {
        errors.add(
            tags::STUDY_INSTANCE_UID,
            format(
                tags::STUDY_INSTANCE_UID,
                "The StudyInstanceUid in the payload does not match the specified StudyInstanceUid.",
            ),
        );
        return Err(errors.reject(FailureReason::StudyInstanceUidMismatch));
    }

    let mut warnings = Errors::default();
    if version.is_lenient() {
        walk(ds, None, &mut warnings);
    } else {
        for tag in crate::attributes::SEARCHABLE {
            if let Some(e) = ds.element_opt(*tag).ok().flatten() {
                if let DicomValue::Primitive(p) = e.value() {
                    for v in strings(p) {
                        let v = v.trim_end_matches('\0');
                        if let Err(why) = check(e.vr(), v, Rules::Minimum) {
                            errors.add(*tag, invalid(*tag, e.vr(), v, &why));
                            break;
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors.reject(FailureReason::ValidationFailure));
        }
    }
    let implicit = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN;
    let warning = if implicit {
        Some(WarningReason::DatasetDoesNotMatchSopClass)
    } else if !warnings.is_empty() {
        Some(WarningReason::DatasetHasValidationWarnings)
    } else {
        None
    };
    Ok(Accepted {
        id: InstanceRef {
            study: StudyUid(study),
            series: SeriesUid(series),
            sop: SopInstanceUid(sop),
        },
        sop_class_uid: sop_class,
        warning,
        dropped: warnings.top_level.clone(),
        failed_attributes: warnings.messages,
    })
}

/// Problems found, one per attribute (the first one counts, as on Azure).
#[derive(Default)]
struct Errors {
    seen: HashSet<Tag>,
    top_level: HashSet<Tag>,
    messages: Vec<String>,
}

impl Errors {
    fn add(&mut self, tag: Tag, message: String) {
        if self.seen.insert(tag) {
            self.messages.push(message);
        }
    }
    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    fn reject(self, reason: FailureReason) -> Rejected {
        Rejected {
            reason,
            failed_attributes: self.messages,
        }
    }
}

/// v2: every attribute, into sequences; an invalid top-level attribute is dropped from the
/// metadata, one inside a sequence is only reported.
fn walk(ds: &InMemDicomObject, top: Option<Tag>, warnings: &mut Errors) {
    for e in ds.iter() {
        let tag = e.header().tag;
        match e.value() {
            DicomValue::Sequence(seq) => {
                for item in seq.items() {
                    walk(item, Some(top.unwrap_or(tag)), warnings);
                }
            }
            DicomValue::PixelSequence(_) => {}
            DicomValue::Primitive(p) => {
                // PatientID must be there in v2, but may be empty: then it is a warning.
                if tag == tags::PATIENT_ID && strings(p).iter().all(|v| v.trim().is_empty()) {
                    warnings.add(tag, missing(tag));
                    if top.is_none() {
                        warnings.top_level.insert(tag);
                    }
                    continue;
                }
                if !matches!(p, PrimitiveValue::Str(_) | PrimitiveValue::Strs(_)) {
                    continue;
                }
                for v in strings(p) {
                    // A value padded with NULs is valid if it is without them (Azure).
                    let v = v.trim_end_matches('\0');
                    if let Err(why) = check(e.vr(), v, Rules::Full) {
                        warnings.add(tag, invalid(tag, e.vr(), v, &why));
                        if top.is_none() {
                            warnings.top_level.insert(tag);
                        }
                        break;
                    }
                }
            }
        }
    }
}

fn first_value(ds: &InMemDicomObject, tag: Tag) -> Option<String> {
    match ds.element_opt(tag).ok().flatten()?.value() {
        DicomValue::Primitive(p) => strings(p).into_iter().next(),
        _ => None,
    }
}

fn required_uid(ds: &InMemDicomObject, tag: Tag, errors: &mut Errors) -> Option<Uid> {
    match first_value(ds, tag).filter(|v| !v.trim_end_matches(['\0', ' ']).is_empty()) {
        None => {
            errors.add(tag, missing(tag));
            None
        }
        Some(v) => {
            let uid = Uid::parse(&v);
            if uid.is_none() {
                errors.add(tag, invalid(tag, VR::UI, &v, UID_RULE));
            }
            uid
        }
    }
}

const UID_RULE: &str = "DICOM Identifier is invalid. Value length should not exceed the maximum \
    length of 64 characters. Value should contain characters in '0'-'9' and '.'.";

fn tag_text(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.group(), tag.element())
}

fn format(tag: Tag, message: &str) -> String {
    format!("DICOM{VALIDATION_ERROR}: {} - {message}", tag_text(tag))
}

fn missing(tag: Tag) -> String {
    format(
        tag,
        &format!("The required tag '{}' is missing.", tag_text(tag)),
    )
}

fn invalid(tag: Tag, vr: VR, value: &str, why: &str) -> String {
    format(
        tag,
        &format!("Content \"{value}\" does not validate VR {vr}: {why}"),
    )
}

/// Azure's minimum validation (v1, required attributes) or the full one (v2 warnings).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    Minimum,
    Full,
}

fn has_control(v: &str, allowed: &[char]) -> bool {
    v.chars()
        .any(|c| c.is_control() && c != '\u{1b}' && !allowed.contains(&c))
}

fn max_len(v: &str, n: usize) -> Result<(), String> {
    if v.chars().count() > n {
        Err(format!("value length exceeds maximum length of {n}"))
    } else {
        Ok(())
    }
}

/// One value of a text VR.
fn check(vr: VR, v: &str, rules: Rules) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    let full = rules == Rules::Full;
    let invalid_character = || Err("value contains invalid character".to_owned());
    match vr {
        VR::AE | VR::SH => {
            max_len(v, 16)?;
            if full && has_control(v, &[]) {
                return invalid_character();
            }
            Ok(())
        }
        VR::CS => {
            max_len(v, 16)?;
            let allowed =
                |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || " _".contains(c);
            if full && !v.chars().all(allowed) {
                return invalid_character();
            }
            Ok(())
        }
        VR::LO => {
            max_len(v, 64)?;
            if has_control(v, &[]) {
                return invalid_character();
            }
            Ok(())
        }
        VR::PN => person_name(v),
        VR::DA if !is_date(v.trim_end()) => {
            Err("one of the date values does not match the pattern YYYYMMDD".into())
        }
        VR::UI if Uid::parse(v).is_none() => Err(UID_RULE.into()),
        _ if !full => Ok(()),
        VR::AS => {
            let b = v.as_bytes();
            if b.len() != 4 || !b[..3].iter().all(u8::is_ascii_digit) || !b"DWMY".contains(&b[3]) {
                return Err("value does not match the pattern nnnD, nnnW, nnnM or nnnY".into());
            }
            Ok(())
        }
        VR::DS => {
            max_len(v, 16)?;
            let t = v.trim();
            let chars = t
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
            if !chars || t.parse::<f64>().is_err() {
                return Err("value is not a decimal string".into());
            }
            Ok(())
        }
        VR::IS => {
            max_len(v, 12)?;
            if !v
                .trim()
                .parse::<i64>()
                .is_ok_and(|n| i32::try_from(n).is_ok())
            {
                return Err("value is not an integer string".into());
            }
            Ok(())
        }
        VR::TM if !is_time(v.trim_end()) => {
            Err("value does not match the pattern HH[MM[SS[.F{1-6}]]]".into())
        }
        VR::DT if !is_date_time(v.trim_end()) => {
            Err("value does not match the pattern YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]]".into())
        }
        VR::ST => max_len(v, 1024),
        VR::LT => max_len(v, 10240),
        _ => Ok(()),
    }
}

fn person_name(v: &str) -> Result<(), String> {
    let groups: Vec<&str> = v.split('=').collect();
    if groups.len() > 3 {
        return Err("value contains more than 3 groups".into());
    }
    for g in &groups {
        if g.chars().count() > 64 {
            return Err("one or more group of person name exceeds maximum length of 64".into());
        }
        if g.split('^').count() > 5 {
            return Err("value contains more than 5 components".into());
        }
        if has_control(g, &[]) {
            return Err("value contains invalid character".into());
        }
    }
    Ok(())
}

/// A calendar date, YYYYMMDD (Azure parses it as one: 20230229 is not a date).
fn is_date(v: &str) -> bool {
    v.len() == 8 && chrono::NaiveDate::parse_from_str(v, "%Y%m%d").is_ok()
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_time(v: &str) -> bool {
    let (hms, frac) = match v.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (v, None),
    };
    digits(hms)
        && matches!(hms.len(), 2 | 4 | 6)
        && hms[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && (hms.len() < 4 || hms[2..4].parse::<u8>().is_ok_and(|m| m < 60))
        && (hms.len() < 6 || hms[4..6].parse::<u8>().is_ok_and(|s| s < 61))
        && frac.is_none_or(|f| hms.len() == 6 && digits(f) && f.len() <= 6)
}

fn is_date_time(v: &str) -> bool {
    let (dt, _offset) = match v.find(['+', '-']) {
        Some(i) if i >= 4 => (&v[..i], Some(&v[i..])),
        _ => (v, None),
    };
    let date_len = dt.len().min(8);
    let date = &dt[..date_len];
    if !digits(date) || !matches!(date.len(), 4 | 6 | 8) {
        return false;
    }
    dt.len() <= 8 || is_time(&dt[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules_follow_the_vrs() {
        assert!(check(VR::DA, "20240229", Rules::Full).is_ok());
        assert!(check(VR::DA, "NotAValidDate", Rules::Minimum).is_err());
        assert!(check(VR::DA, "20230229", Rules::Minimum).is_err());
        assert!(check(VR::TM, "101010.123", Rules::Full).is_ok());
        assert!(check(VR::TM, "25", Rules::Full).is_err());
        assert!(check(VR::DT, "20200101101010+0100", Rules::Full).is_ok());
        assert!(check(VR::CS, "lower", Rules::Full).is_err());
        assert!(check(VR::CS, "lower", Rules::Minimum).is_ok());
        assert!(check(VR::PN, "a^b^c^d^e^f", Rules::Minimum).is_err());
        assert!(check(VR::LO, &"x".repeat(65), Rules::Minimum).is_err());
        assert!(check(VR::IS, "12a", Rules::Full).is_err());
        assert!(check(VR::DS, " 1.5e3", Rules::Full).is_ok());
    }
}
