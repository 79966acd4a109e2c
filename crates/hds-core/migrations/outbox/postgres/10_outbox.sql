-- Transactional outbox: events written in the transaction of the change they report.
CREATE TABLE IF NOT EXISTS outbox (
    seq        BIGSERIAL PRIMARY KEY,
    event_id   TEXT   NOT NULL,
    topic      TEXT   NOT NULL,
    msg_key    BYTEA,
    payload    BYTEA  NOT NULL,
    headers    BYTEA  NOT NULL,
    created_ms BIGINT NOT NULL
);
