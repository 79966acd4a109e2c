-- The search index keyed by numbers instead of text (see src/search/keys.rs): each resource has
-- a 64-bit key (`rkey`) derived from (instance, type, id), each search parameter of an instance
-- and type one (`pkey`). An index row is (pkey, rkey, value): narrow rows, and btree entries
-- that compare one integer where they compared three strings. Insertion into these indexes was
-- three quarters of PostgreSQL's work while loading.
--
-- The old index tables are dropped; fhir-svc rebuilds the index of every resource that has no
-- key yet when it starts (store::backfill_index), so nothing needs re-sending.
ALTER TABLE fhir_current ADD COLUMN IF NOT EXISTS rkey BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS fhir_current_rkey ON fhir_current (rkey);

-- Names compare as bytes ("C"): the same order on every host, and no locale call per comparison.
ALTER TABLE fhir_current ALTER COLUMN instance TYPE TEXT COLLATE "C",
    ALTER COLUMN resource_type TYPE TEXT COLLATE "C", ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE fhir_versions ALTER COLUMN instance TYPE TEXT COLLATE "C",
    ALTER COLUMN resource_type TYPE TEXT COLLATE "C", ALTER COLUMN id TYPE TEXT COLLATE "C";

DROP TABLE IF EXISTS fhir_index_tokens, fhir_index_strings, fhir_index_references,
    fhir_index_dates, fhir_index_numbers, fhir_index_quantities, fhir_index_uris,
    fhir_index_composites;

-- Every lookup index ends with rkey, so a match is answered from the index alone.
CREATE TABLE fhir_index_tokens (
    pkey   BIGINT NOT NULL,
    rkey   BIGINT NOT NULL,
    system TEXT COLLATE "C" NOT NULL,   -- '' when the value has none
    code   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX fhir_index_tokens_lookup ON fhir_index_tokens (pkey, code, rkey);
CREATE INDEX fhir_index_tokens_owner ON fhir_index_tokens (rkey);

CREATE TABLE fhir_index_strings (
    pkey  BIGINT NOT NULL,
    rkey  BIGINT NOT NULL,
    value TEXT COLLATE "C" NOT NULL     -- lowercased, accents removed
);
CREATE INDEX fhir_index_strings_lookup ON fhir_index_strings (pkey, value, rkey);
CREATE INDEX fhir_index_strings_owner ON fhir_index_strings (rkey);

-- `target` is the key of the resource referred to (whether or not it exists), so chains and
-- _has join on integers; type and id are kept for _include and untyped id searches.
CREATE TABLE fhir_index_references (
    pkey        BIGINT NOT NULL,
    rkey        BIGINT NOT NULL,
    target      BIGINT NOT NULL,
    target_type TEXT COLLATE "C" NOT NULL,
    target_id   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX fhir_index_references_lookup ON fhir_index_references (pkey, target, rkey);
CREATE INDEX fhir_index_references_owner ON fhir_index_references (rkey);

CREATE TABLE fhir_index_dates (
    pkey     BIGINT NOT NULL,
    rkey     BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,   -- the value's range: [start_ms, end_ms]
    end_ms   BIGINT NOT NULL
);
CREATE INDEX fhir_index_dates_lookup ON fhir_index_dates (pkey, start_ms, rkey);
CREATE INDEX fhir_index_dates_owner ON fhir_index_dates (rkey);

CREATE TABLE fhir_index_numbers (
    pkey  BIGINT NOT NULL,
    rkey  BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX fhir_index_numbers_lookup ON fhir_index_numbers (pkey, value, rkey);
CREATE INDEX fhir_index_numbers_owner ON fhir_index_numbers (rkey);

CREATE TABLE fhir_index_quantities (
    pkey   BIGINT NOT NULL,
    rkey   BIGINT NOT NULL,
    system TEXT COLLATE "C" NOT NULL,   -- '' when the quantity has none
    code   TEXT COLLATE "C" NOT NULL,   -- the code, or the unit when there is no code
    value  DOUBLE PRECISION NOT NULL
);
CREATE INDEX fhir_index_quantities_lookup ON fhir_index_quantities (pkey, code, value, rkey);
CREATE INDEX fhir_index_quantities_owner ON fhir_index_quantities (rkey);

CREATE TABLE fhir_index_uris (
    pkey  BIGINT NOT NULL,
    rkey  BIGINT NOT NULL,
    value TEXT COLLATE "C" NOT NULL
);
CREATE INDEX fhir_index_uris_lookup ON fhir_index_uris (pkey, value, rkey);
CREATE INDEX fhir_index_uris_owner ON fhir_index_uris (rkey);

-- Composite parameters: one row per combination of component values taken from one context
-- item (see 1003 for the columns' meaning).
CREATE TABLE fhir_index_composites (
    pkey BIGINT NOT NULL,
    rkey BIGINT NOT NULL,
    s1   TEXT COLLATE "C" NOT NULL,
    c1   TEXT COLLATE "C" NOT NULL,
    s2   TEXT COLLATE "C" NOT NULL,
    c2   TEXT COLLATE "C" NOT NULL,
    n2   DOUBLE PRECISION,
    n3   DOUBLE PRECISION
);
CREATE INDEX fhir_index_composites_lookup ON fhir_index_composites (pkey, c1, c2, rkey);
CREATE INDEX fhir_index_composites_owner ON fhir_index_composites (rkey);
