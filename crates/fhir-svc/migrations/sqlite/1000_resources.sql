-- Every version of every resource, as received plus meta; deletions are versions without a body.
CREATE TABLE IF NOT EXISTS fhir_versions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order, for system/type history paging
    instance        TEXT    NOT NULL,
    resource_type   TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    last_updated_ms BIGINT  NOT NULL,
    method          TEXT    NOT NULL,        -- POST, PUT, PATCH, DELETE (history entry.request)
    body            TEXT,                    -- NULL for a deletion
    UNIQUE (instance, resource_type, id, version)
);
CREATE INDEX IF NOT EXISTS fhir_versions_by_time ON fhir_versions (instance, last_updated_ms);
CREATE INDEX IF NOT EXISTS fhir_versions_by_type ON fhir_versions (instance, resource_type, seq);

-- The current version of each resource: the pointer every read and write goes through.
CREATE TABLE IF NOT EXISTS fhir_current (
    instance        TEXT    NOT NULL,
    resource_type   TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    deleted         INTEGER NOT NULL,
    last_updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (instance, resource_type, id)
);
