-- Reads, vreads and writes find a version by (instance, resource_type, id, version), which
-- the unique index answers in one step. Without statistics (a new table, a burst of writes
-- before the next ANALYZE, or autovacuum off) the planner costs the type-history index
-- (instance, resource_type, seq) the same, and picked it: every version of the type was
-- scanned for each lookup, milliseconds that grew with the table. The type-history index is
-- now keyed by an expression that those lookups never write, so only type history (which
-- writes it, see Store::history) can use it.
DROP INDEX IF EXISTS fhir_versions_by_type;
CREATE INDEX fhir_versions_by_type ON fhir_versions ((instance || '/' || resource_type), seq);
