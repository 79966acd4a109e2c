-- The data-plane instances this service serves, and the provisioning commands it handled.
CREATE TABLE IF NOT EXISTS instances (
    name            TEXT   PRIMARY KEY,
    resource_id     TEXT   NOT NULL,
    properties_json TEXT   NOT NULL,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS handled_commands (
    event_id   TEXT   PRIMARY KEY,
    handled_ms BIGINT NOT NULL
);
