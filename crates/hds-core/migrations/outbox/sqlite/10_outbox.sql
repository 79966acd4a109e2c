-- Transactional outbox: events written in the transaction of the change they report.
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT   NOT NULL,
    topic      TEXT   NOT NULL,
    msg_key    BLOB,
    payload    BLOB   NOT NULL,
    headers    BLOB   NOT NULL,
    created_ms BIGINT NOT NULL
);
