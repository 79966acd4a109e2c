-- Composite search parameters (e.g. Observation code-value-quantity): one row per combination
-- of component values taken from one context item, so the pairs stay paired. The first
-- component is a token (s1|c1; a reference is kept in c1 as Type/id); the second is a token
-- (s2|c2), a quantity (s2, c2 = code or unit, n2 = value), a string (c2, normalized), a
-- number (n2) or a date (n2..n3 in ms); a third (number) is n3.
CREATE TABLE IF NOT EXISTS fhir_index_composites (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    s1            TEXT NOT NULL,
    c1            TEXT NOT NULL,
    s2            TEXT NOT NULL,
    c2            TEXT NOT NULL,
    n2            REAL,
    n3            REAL
);
CREATE INDEX IF NOT EXISTS fhir_index_composites_lookup ON fhir_index_composites (instance, resource_type, param, c1, c2);
CREATE INDEX IF NOT EXISTS fhir_index_composites_owner ON fhir_index_composites (instance, resource_type, id);
