//! What QIDO-RS can match on, per level (Azure's "Searchable Attributes"), where each one is
//! kept in the index, and how its values compare.

use dicom_core::Tag;
use dicom_dictionary_std::tags;

/// A level of the DICOM information model, as searched and as returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Study,
    Series,
    Instance,
}

/// How an attribute's query value is read and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UI: exact, or a list of UIDs.
    Uid,
    /// LO, SH, CS...: case-insensitive, exact or with `*`/`?`.
    Text,
    /// DA: exact or an inclusive range with open ends.
    Date,
    /// PN: case- and accent-insensitive on `folded`; fuzzy on `words`.
    PersonName {
        folded: &'static str,
        words: &'static str,
    },
    /// ModalitiesInStudy: a study with a series of any of the listed modalities.
    ModalitiesInStudy,
}

/// A searchable attribute: the column it is kept in (qualified by the level's table alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Searchable {
    pub tag: Tag,
    pub keyword: &'static str,
    pub level: Level,
    pub column: &'static str,
    pub kind: Kind,
}

const fn s(
    tag: Tag,
    keyword: &'static str,
    level: Level,
    column: &'static str,
    kind: Kind,
) -> Searchable {
    Searchable {
        tag,
        keyword,
        level,
        column,
        kind,
    }
}

/// Azure's searchable attributes.
pub const SEARCHABLE: &[Searchable] = &[
    s(
        tags::STUDY_INSTANCE_UID,
        "StudyInstanceUID",
        Level::Study,
        "st.study_uid",
        Kind::Uid,
    ),
    s(
        tags::PATIENT_NAME,
        "PatientName",
        Level::Study,
        "st.patient_name",
        Kind::PersonName {
            folded: "st.patient_name_folded",
            words: "st.patient_name_words",
        },
    ),
    s(
        tags::PATIENT_ID,
        "PatientID",
        Level::Study,
        "st.patient_id",
        Kind::Text,
    ),
    s(
        tags::PATIENT_BIRTH_DATE,
        "PatientBirthDate",
        Level::Study,
        "st.patient_birth_date",
        Kind::Date,
    ),
    s(
        tags::ACCESSION_NUMBER,
        "AccessionNumber",
        Level::Study,
        "st.accession_number",
        Kind::Text,
    ),
    s(
        tags::REFERRING_PHYSICIAN_NAME,
        "ReferringPhysicianName",
        Level::Study,
        "st.referring_physician_name",
        Kind::PersonName {
            folded: "st.referring_physician_name_folded",
            words: "st.referring_physician_name_words",
        },
    ),
    s(
        tags::STUDY_DATE,
        "StudyDate",
        Level::Study,
        "st.study_date",
        Kind::Date,
    ),
    s(
        tags::STUDY_DESCRIPTION,
        "StudyDescription",
        Level::Study,
        "st.study_description",
        Kind::Text,
    ),
    s(
        tags::MODALITIES_IN_STUDY,
        "ModalitiesInStudy",
        Level::Study,
        "st.modalities",
        Kind::ModalitiesInStudy,
    ),
    s(
        tags::SERIES_INSTANCE_UID,
        "SeriesInstanceUID",
        Level::Series,
        "se.series_uid",
        Kind::Uid,
    ),
    s(
        tags::MODALITY,
        "Modality",
        Level::Series,
        "se.modality",
        Kind::Text,
    ),
    s(
        tags::PERFORMED_PROCEDURE_STEP_START_DATE,
        "PerformedProcedureStepStartDate",
        Level::Series,
        "se.performed_procedure_step_start_date",
        Kind::Date,
    ),
    s(
        tags::MANUFACTURER_MODEL_NAME,
        "ManufacturerModelName",
        Level::Series,
        "se.manufacturer_model_name",
        Kind::Text,
    ),
    s(
        tags::SOP_INSTANCE_UID,
        "SOPInstanceUID",
        Level::Instance,
        "i.sop_uid",
        Kind::Uid,
    ),
];

pub fn searchable(tag: Tag) -> Option<&'static Searchable> {
    SEARCHABLE.iter().find(|a| a.tag == tag)
}

/// What a search returns by default at each level (Azure's "Default ... tags").
pub fn defaults(level: Level) -> &'static [Tag] {
    match level {
        Level::Study => &[
            tags::STUDY_DATE,
            tags::ACCESSION_NUMBER,
            tags::STUDY_DESCRIPTION,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::STUDY_INSTANCE_UID,
        ],
        Level::Series => &[
            tags::MODALITY,
            tags::MANUFACTURER_MODEL_NAME,
            tags::SERIES_INSTANCE_UID,
            tags::PERFORMED_PROCEDURE_STEP_START_DATE,
        ],
        Level::Instance => &[tags::SOP_INSTANCE_UID],
    }
}

/// Every attribute a level can return (what `includefield=all` adds), stored with its row.
pub fn stored(level: Level) -> &'static [Tag] {
    match level {
        Level::Study => crate::attributes::STUDY,
        Level::Series => crate::attributes::SERIES,
        Level::Instance => crate::attributes::INSTANCE,
    }
}

/// The attributes computed from the index rather than stored, per level.
pub fn computed(level: Level) -> &'static [Tag] {
    match level {
        Level::Study => &[
            tags::MODALITIES_IN_STUDY,
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        ],
        Level::Series => &[tags::NUMBER_OF_SERIES_RELATED_INSTANCES],
        Level::Instance => &[],
    }
}
