//! Azure's QIDO-RS attribute set, per level (v2 conformance statement, "Search Response"):
//! the attributes returned by default and with `includefield=all`. Each study, series and
//! instance row keeps these as DICOM JSON, so a search answers without reading metadata.

use dicom_core::Tag;
use dicom_dictionary_std::tags;

/// Study level: the default attributes, then the additional ones.
pub const STUDY: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::INSTANCE_AVAILABILITY,
    tags::ANATOMIC_REGIONS_IN_STUDY_CODE_SEQUENCE,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_DESCRIPTION,
    tags::PROCEDURE_CODE_SEQUENCE,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::REFERENCED_STUDY_SEQUENCE,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::PATIENT_AGE,
    tags::PATIENT_SIZE,
    tags::PATIENT_WEIGHT,
    tags::OCCUPATION,
    tags::ADDITIONAL_PATIENT_HISTORY,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
];

/// Series level.
pub const SERIES: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::MODALITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::SERIES_DESCRIPTION,
    tags::MANUFACTURER_MODEL_NAME,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::LATERALITY,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
];

/// Instance level.
pub const INSTANCE: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_AVAILABILITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::INSTANCE_NUMBER,
    tags::NUMBER_OF_FRAMES,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
];

/// The attributes Azure indexes for search (its "core query tags"); v1 rejects an instance
/// when one of them is invalid.
pub const SEARCHABLE: &[Tag] = &[
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_DESCRIPTION,
    tags::ACCESSION_NUMBER,
    tags::PATIENT_ID,
    tags::PATIENT_NAME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::PATIENT_BIRTH_DATE,
    tags::SERIES_INSTANCE_UID,
    tags::MODALITY,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::MANUFACTURER_MODEL_NAME,
    tags::SOP_INSTANCE_UID,
];
