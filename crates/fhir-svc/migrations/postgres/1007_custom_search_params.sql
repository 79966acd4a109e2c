-- Custom search parameters: what each stored SearchParameter resource of an instance defines
-- (see search/custom.rs). `bases` and `targets` are space-separated resource types.
CREATE TABLE IF NOT EXISTS fhir_search_params (
    instance      TEXT    NOT NULL,
    id            TEXT    NOT NULL,     -- the SearchParameter resource's id
    url           TEXT    NOT NULL,
    code          TEXT    NOT NULL,
    bases         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,     -- token, string, reference, date, uri, number, quantity
    expression    TEXT    NOT NULL,
    targets       TEXT    NOT NULL,
    status        TEXT    NOT NULL,     -- Supported (indexed on write), Enabled (searchable)
    registered_ms BIGINT  NOT NULL,
    PRIMARY KEY (instance, id)
);
