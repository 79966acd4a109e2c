-- Keys compare as bytes: UIDs, blob keys and instance names are ASCII identifiers matched for
-- equality and ordered only to be deterministic, yet under the database's default collation
-- every btree comparison on them goes through the locale's strcoll. STOW-RS inserts each
-- instance into several indexes keyed by these columns; COLLATE "C" makes those comparisons
-- memcmp. (Order is unchanged for UIDs, digits and dots, under any usual collation; the
-- searchable strings that match case-insensitively with lower() keep the default collation.)
ALTER TABLE dicom_instances
    ALTER COLUMN instance TYPE TEXT COLLATE "C",
    ALTER COLUMN study_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN series_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN sop_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN blob_key TYPE TEXT COLLATE "C";
ALTER TABLE dicom_series
    ALTER COLUMN instance TYPE TEXT COLLATE "C",
    ALTER COLUMN study_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN series_uid TYPE TEXT COLLATE "C";
ALTER TABLE dicom_studies
    ALTER COLUMN instance TYPE TEXT COLLATE "C",
    ALTER COLUMN study_uid TYPE TEXT COLLATE "C";
ALTER TABLE dicom_changefeed
    ALTER COLUMN instance TYPE TEXT COLLATE "C",
    ALTER COLUMN study_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN series_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN sop_uid TYPE TEXT COLLATE "C";
ALTER TABLE dicom_changefeed_counters
    ALTER COLUMN instance TYPE TEXT COLLATE "C";
