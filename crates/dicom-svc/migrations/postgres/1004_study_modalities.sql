-- ModalitiesInStudy is matched on the study row: `modalities` holds the study's distinct
-- series modalities, lowercased, between bars (`|ct|mr|`), kept by the writes that change its
-- series (see `store::study_modalities`). A newest-first page of `ModalitiesInStudy=CT` then
-- walks the newest-studies index and reads each study row once, instead of first collecting
-- every study that has such a series and sorting them all.
ALTER TABLE dicom_studies ADD COLUMN IF NOT EXISTS modalities TEXT;
UPDATE dicom_studies SET modalities = (
    SELECT '|' || string_agg(d.m, '|') || '|' FROM (
        SELECT DISTINCT lower(s.modality) AS m FROM dicom_series s
        WHERE s.instance = dicom_studies.instance AND s.study_uid = dicom_studies.study_uid
          AND s.modality IS NOT NULL) d);
