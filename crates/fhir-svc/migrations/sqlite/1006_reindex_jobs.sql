-- `$reindex` jobs: each runs through an instance's current resources in key order, a batch
-- per transaction; `after_rkey` is the last key done, so a job resumes where it stopped.
CREATE TABLE IF NOT EXISTS fhir_reindex_jobs (
    id         TEXT    PRIMARY KEY,
    instance   TEXT    NOT NULL,
    status     TEXT    NOT NULL,     -- Queued, Running, Completed, Failed
    queued_ms  BIGINT  NOT NULL,
    started_ms BIGINT,
    ended_ms   BIGINT,
    total      BIGINT  NOT NULL DEFAULT 0,
    done       BIGINT  NOT NULL DEFAULT 0,
    after_rkey BIGINT,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS fhir_reindex_jobs_open ON fhir_reindex_jobs (status);
