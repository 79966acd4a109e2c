-- The configuration of each MedTech service instance: its device mapping, its FHIR
-- destination mapping (both kept as the user wrote them, so they read back unchanged) and
-- where and how Observations are written. `revision` grows with every change, so running
-- pipelines notice a change made by another replica.
CREATE TABLE medtech_config (
    instance TEXT PRIMARY KEY,
    device_mapping TEXT,
    fhir_mapping TEXT,
    destination_json TEXT,
    revision BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
