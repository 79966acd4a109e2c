-- The embedded event bus: topics, their partitioned logs and consumer-group offsets.
CREATE TABLE IF NOT EXISTS bus_partitions (
    topic        TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    next_offset  BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition_no)
);
CREATE TABLE IF NOT EXISTS bus_messages (
    topic        TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    msg_offset   BIGINT  NOT NULL,
    msg_key      BYTEA,
    payload      BYTEA    NOT NULL,
    headers      BYTEA    NOT NULL,
    timestamp_ms BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition_no, msg_offset)
);
CREATE TABLE IF NOT EXISTS bus_offsets (
    group_id     TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    next_offset  BIGINT  NOT NULL,
    PRIMARY KEY (group_id, topic, partition_no)
);
