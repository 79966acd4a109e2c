-- Azure's data partitions (`src/partitions.rs`). A partition other than Microsoft.Default is
-- a storage namespace of the index tables (their `instance` column holds
-- `{instance}/{partition}`), so they are unchanged; this table records which partitions
-- exist, with Azure's system-assigned key (Microsoft.Default, key 1, is implicit).
CREATE TABLE IF NOT EXISTS dicom_partitions (
    instance        TEXT    NOT NULL,
    partition_name  TEXT    NOT NULL,
    partition_key   INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    PRIMARY KEY (instance, partition_name),
    UNIQUE (instance, partition_key)
);

-- The change feed is numbered per instance across its partitions; each entry names its own.
ALTER TABLE dicom_changefeed ADD COLUMN partition_name TEXT NOT NULL DEFAULT 'Microsoft.Default';
