-- Search index of the current version of each resource, extracted by the R4 SearchParameter
-- expressions (see src/search). Rows are replaced whenever the resource is written.
CREATE TABLE IF NOT EXISTS fhir_index_tokens (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    system        TEXT NOT NULL,   -- '' when the value has none
    code          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_index_tokens_lookup ON fhir_index_tokens (instance, resource_type, param, code);
CREATE INDEX IF NOT EXISTS fhir_index_tokens_owner ON fhir_index_tokens (instance, resource_type, id);

CREATE TABLE IF NOT EXISTS fhir_index_strings (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         TEXT NOT NULL    -- lowercased, accents removed
);
CREATE INDEX IF NOT EXISTS fhir_index_strings_lookup ON fhir_index_strings (instance, resource_type, param, value);
CREATE INDEX IF NOT EXISTS fhir_index_strings_owner ON fhir_index_strings (instance, resource_type, id);

CREATE TABLE IF NOT EXISTS fhir_index_references (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_index_references_lookup ON fhir_index_references (instance, resource_type, param, target_id);
CREATE INDEX IF NOT EXISTS fhir_index_references_owner ON fhir_index_references (instance, resource_type, id);

CREATE TABLE IF NOT EXISTS fhir_index_dates (
    instance      TEXT   NOT NULL,
    resource_type TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    param         TEXT   NOT NULL,
    start_ms      BIGINT NOT NULL,  -- the value's range: [start_ms, end_ms]
    end_ms        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_index_dates_lookup ON fhir_index_dates (instance, resource_type, param, start_ms);
CREATE INDEX IF NOT EXISTS fhir_index_dates_owner ON fhir_index_dates (instance, resource_type, id);
