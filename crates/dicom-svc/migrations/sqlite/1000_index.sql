-- The DICOM index: one row per study, series and instance of every service instance, with the
-- attributes QIDO-RS matches on as columns (Azure's searchable attributes) and the rest of
-- each level's QIDO attributes as DICOM JSON (`attributes`, returned by includefield=all).
-- Study and series rows hold the values of the latest instance stored in them, as Azure's do.
-- Dates are DICOM DA text (YYYYMMDD), so ranges compare as text.

CREATE TABLE IF NOT EXISTS dicom_studies (
    instance                  TEXT   NOT NULL,
    study_uid                 TEXT   NOT NULL,
    patient_id                TEXT,
    patient_name              TEXT,
    patient_birth_date        TEXT,
    accession_number          TEXT,
    referring_physician_name  TEXT,
    study_date                TEXT,
    study_description         TEXT,
    attributes                TEXT   NOT NULL,
    updated_watermark         BIGINT NOT NULL,
    PRIMARY KEY (instance, study_uid)
);
CREATE INDEX IF NOT EXISTS dicom_studies_by_patient ON dicom_studies (instance, patient_id);
CREATE INDEX IF NOT EXISTS dicom_studies_by_date ON dicom_studies (instance, study_date);
CREATE INDEX IF NOT EXISTS dicom_studies_by_accession ON dicom_studies (instance, accession_number);

CREATE TABLE IF NOT EXISTS dicom_series (
    instance                             TEXT   NOT NULL,
    study_uid                            TEXT   NOT NULL,
    series_uid                           TEXT   NOT NULL,
    modality                             TEXT,
    performed_procedure_step_start_date  TEXT,
    manufacturer_model_name              TEXT,
    attributes                           TEXT   NOT NULL,
    updated_watermark                    BIGINT NOT NULL,
    PRIMARY KEY (instance, study_uid, series_uid)
);
-- ModalitiesInStudy is answered from here: the studies that have a series of the modality.
CREATE INDEX IF NOT EXISTS dicom_series_by_modality ON dicom_series (instance, modality, study_uid);
CREATE INDEX IF NOT EXISTS dicom_series_by_uid ON dicom_series (instance, series_uid);

-- `watermark` orders instances (newest first in QIDO pages) and versions metadata ETags.
CREATE TABLE IF NOT EXISTS dicom_instances (
    watermark            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance             TEXT   NOT NULL,
    study_uid            TEXT   NOT NULL,
    series_uid           TEXT   NOT NULL,
    sop_uid              TEXT   NOT NULL,
    sop_class_uid        TEXT   NOT NULL,
    transfer_syntax_uid  TEXT   NOT NULL,
    blob_key             TEXT   NOT NULL,
    size_bytes           BIGINT NOT NULL,
    attributes           TEXT   NOT NULL,
    metadata             TEXT   NOT NULL,  -- the instance's DICOM JSON (WADO-RS metadata)
    created_ms           BIGINT NOT NULL,
    UNIQUE (instance, study_uid, series_uid, sop_uid)
);
CREATE INDEX IF NOT EXISTS dicom_instances_by_sop ON dicom_instances (instance, sop_uid);

-- Azure's change feed: every create and delete, in sequence order.
CREATE TABLE IF NOT EXISTS dicom_changefeed (
    sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
    instance      TEXT   NOT NULL,
    study_uid     TEXT   NOT NULL,
    series_uid    TEXT   NOT NULL,
    sop_uid       TEXT   NOT NULL,
    action        TEXT   NOT NULL,  -- create, delete
    watermark     BIGINT NOT NULL,
    timestamp_ms  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dicom_changefeed_by_instance ON dicom_changefeed (instance, sequence);
CREATE INDEX IF NOT EXISTS dicom_changefeed_by_time ON dicom_changefeed (instance, timestamp_ms);
