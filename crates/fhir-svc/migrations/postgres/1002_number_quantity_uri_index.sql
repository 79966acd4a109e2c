-- Number, quantity and uri search parameters (see src/search). A resource's value is a point;
-- the precision of the searched value makes the range it matches.
CREATE TABLE IF NOT EXISTS fhir_index_numbers (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_index_numbers_lookup ON fhir_index_numbers (instance, resource_type, param, value);
CREATE INDEX IF NOT EXISTS fhir_index_numbers_owner ON fhir_index_numbers (instance, resource_type, id);

CREATE TABLE IF NOT EXISTS fhir_index_quantities (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    system        TEXT NOT NULL,   -- '' when the quantity has none
    code          TEXT NOT NULL,   -- the code, or the unit when there is no code
    value         DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_index_quantities_lookup ON fhir_index_quantities (instance, resource_type, param, code, value);
CREATE INDEX IF NOT EXISTS fhir_index_quantities_owner ON fhir_index_quantities (instance, resource_type, id);

CREATE TABLE IF NOT EXISTS fhir_index_uris (
    instance      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_index_uris_lookup ON fhir_index_uris (instance, resource_type, param, value);
CREATE INDEX IF NOT EXISTS fhir_index_uris_owner ON fhir_index_uris (instance, resource_type, id);
