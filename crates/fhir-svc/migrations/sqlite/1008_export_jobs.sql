-- `$export` jobs (src/export.rs): each writes the resources of its types, one type after the
-- other in key order, as NDJSON parts; `type_index`, `after_rkey` and `part` are where the
-- next part starts, moved in the transaction that records the part written before.
CREATE TABLE IF NOT EXISTS fhir_export_jobs (
    id             TEXT    PRIMARY KEY,
    instance       TEXT    NOT NULL,
    status         TEXT    NOT NULL,     -- Queued, Running, Completed, Failed, Cancelled
    level          TEXT    NOT NULL,     -- system, patient, group
    types          TEXT    NOT NULL,     -- space-separated, in export order
    patients       TEXT    NOT NULL,     -- group level: the members' keys, space-separated
    since_ms       BIGINT,
    transaction_ms BIGINT  NOT NULL,
    destination    TEXT    NOT NULL,     -- blob prefix: {storage account}/{container}/{folder}
    request        TEXT    NOT NULL,
    queued_ms      BIGINT  NOT NULL,
    started_ms     BIGINT,
    ended_ms       BIGINT,
    type_index     BIGINT  NOT NULL DEFAULT 0,
    after_rkey     BIGINT,
    part           BIGINT  NOT NULL DEFAULT 1,
    output         TEXT    NOT NULL DEFAULT '[]',
    error          TEXT
);
CREATE INDEX IF NOT EXISTS fhir_export_jobs_open ON fhir_export_jobs (status);
