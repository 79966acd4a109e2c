-- `:exact` on string parameters (R4 search.html#string) compares the whole value as written,
-- case and accents included, while `value` holds it lowercased and unaccented. `exact` holds
-- the written value only when it differs from `value`, '' when it does not (most rows: no
-- second copy of them). No index: a search finds rows by (pkey, value) and filters on it.
--
-- Rows written before this migration have NULL: `:exact` matches them up to case and accents,
-- as before, until `$reindex` rewrites them (new writes fill it at once). Adding a nullable
-- column without a default rewrites nothing.
ALTER TABLE fhir_index_strings ADD COLUMN exact TEXT COLLATE "C";
