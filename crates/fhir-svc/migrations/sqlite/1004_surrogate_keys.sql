-- The search index keyed by numbers instead of text (see src/search/keys.rs): each resource has
-- a 64-bit key (`rkey`) derived from (instance, type, id), each search parameter of an instance
-- and type one (`pkey`). An index row is (pkey, rkey, value): narrow rows, and btree entries
-- that compare one integer where they compared three strings. Insertion into these indexes was
-- three quarters of PostgreSQL's work while loading.
--
-- The old index tables are dropped; fhir-svc rebuilds the index of every resource that has no
-- key yet when it starts (store::backfill_index), so nothing needs re-sending.
ALTER TABLE fhir_current ADD COLUMN rkey INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS fhir_current_rkey ON fhir_current (rkey);

DROP TABLE IF EXISTS fhir_index_tokens;
DROP TABLE IF EXISTS fhir_index_strings;
DROP TABLE IF EXISTS fhir_index_references;
DROP TABLE IF EXISTS fhir_index_dates;
DROP TABLE IF EXISTS fhir_index_numbers;
DROP TABLE IF EXISTS fhir_index_quantities;
DROP TABLE IF EXISTS fhir_index_uris;
DROP TABLE IF EXISTS fhir_index_composites;

-- Every lookup index ends with rkey, so a match is answered from the index alone.
CREATE TABLE fhir_index_tokens (
    pkey   INTEGER NOT NULL,
    rkey   INTEGER NOT NULL,
    system TEXT NOT NULL,   -- '' when the value has none
    code   TEXT NOT NULL
);
CREATE INDEX fhir_index_tokens_lookup ON fhir_index_tokens (pkey, code, rkey);
CREATE INDEX fhir_index_tokens_owner ON fhir_index_tokens (rkey);

CREATE TABLE fhir_index_strings (
    pkey  INTEGER NOT NULL,
    rkey  INTEGER NOT NULL,
    value TEXT NOT NULL     -- lowercased, accents removed
);
CREATE INDEX fhir_index_strings_lookup ON fhir_index_strings (pkey, value, rkey);
CREATE INDEX fhir_index_strings_owner ON fhir_index_strings (rkey);

-- `target` is the key of the resource referred to (whether or not it exists), so chains and
-- _has join on integers; type and id are kept for _include and untyped id searches.
CREATE TABLE fhir_index_references (
    pkey        INTEGER NOT NULL,
    rkey        INTEGER NOT NULL,
    target      INTEGER NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL
);
CREATE INDEX fhir_index_references_lookup ON fhir_index_references (pkey, target, rkey);
CREATE INDEX fhir_index_references_owner ON fhir_index_references (rkey);

CREATE TABLE fhir_index_dates (
    pkey     INTEGER NOT NULL,
    rkey     INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,   -- the value's range: [start_ms, end_ms]
    end_ms   INTEGER NOT NULL
);
CREATE INDEX fhir_index_dates_lookup ON fhir_index_dates (pkey, start_ms, rkey);
CREATE INDEX fhir_index_dates_owner ON fhir_index_dates (rkey);

CREATE TABLE fhir_index_numbers (
    pkey  INTEGER NOT NULL,
    rkey  INTEGER NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX fhir_index_numbers_lookup ON fhir_index_numbers (pkey, value, rkey);
CREATE INDEX fhir_index_numbers_owner ON fhir_index_numbers (rkey);

CREATE TABLE fhir_index_quantities (
    pkey   INTEGER NOT NULL,
    rkey   INTEGER NOT NULL,
    system TEXT NOT NULL,   -- '' when the quantity has none
    code   TEXT NOT NULL,   -- the code, or the unit when there is no code
    value  REAL NOT NULL
);
CREATE INDEX fhir_index_quantities_lookup ON fhir_index_quantities (pkey, code, value, rkey);
CREATE INDEX fhir_index_quantities_owner ON fhir_index_quantities (rkey);

CREATE TABLE fhir_index_uris (
    pkey  INTEGER NOT NULL,
    rkey  INTEGER NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX fhir_index_uris_lookup ON fhir_index_uris (pkey, value, rkey);
CREATE INDEX fhir_index_uris_owner ON fhir_index_uris (rkey);

-- Composite parameters: one row per combination of component values taken from one context
-- item (see 1003 for the columns' meaning).
CREATE TABLE fhir_index_composites (
    pkey INTEGER NOT NULL,
    rkey INTEGER NOT NULL,
    s1   TEXT NOT NULL,
    c1   TEXT NOT NULL,
    s2   TEXT NOT NULL,
    c2   TEXT NOT NULL,
    n2   REAL,
    n3   REAL
);
CREATE INDEX fhir_index_composites_lookup ON fhir_index_composites (pkey, c1, c2, rkey);
CREATE INDEX fhir_index_composites_owner ON fhir_index_composites (rkey);
