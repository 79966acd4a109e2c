-- Control-plane resources (workspaces and their services) and long-running operations.
CREATE TABLE IF NOT EXISTS resources (
    id_key             TEXT   PRIMARY KEY,  -- the ARM id, lowercased: ARM ids are case-insensitive
    id                 TEXT   NOT NULL,
    kind               TEXT   NOT NULL,     -- workspaces, fhirservices, dicomservices, iotconnectors
    instance           TEXT,                -- {workspace}-{service} for data-plane services
    location           TEXT   NOT NULL,
    properties_json    TEXT   NOT NULL,
    provisioning_state TEXT   NOT NULL,
    etag               TEXT   NOT NULL,
    created_ms         BIGINT NOT NULL,
    updated_ms         BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id              TEXT    PRIMARY KEY,
    subscription_id TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    resource_id     TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    percent         INTEGER NOT NULL,
    started_ms      BIGINT  NOT NULL,
    ended_ms        BIGINT,
    error_code      TEXT,
    error_message   TEXT
);
CREATE INDEX IF NOT EXISTS operations_by_resource ON operations (resource_id);
