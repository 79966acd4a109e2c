-- Resource bodies are compressed with lz4 instead of pglz: several times faster to compress,
-- and pglz was a twentieth of PostgreSQL's work while loading. Applies to rows written from
-- now on; older rows stay as they are and read the same.
ALTER TABLE fhir_versions ALTER COLUMN body SET COMPRESSION lz4;
