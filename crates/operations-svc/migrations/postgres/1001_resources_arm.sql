-- The rest of an ARM resource (tags, kind, identity, who changed it) and the operation a
-- resource is undergoing, so that a second change can be refused with one conditional UPDATE.
ALTER TABLE resources ADD COLUMN tags_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE resources ADD COLUMN resource_kind TEXT;
ALTER TABLE resources ADD COLUMN identity_json TEXT;
ALTER TABLE resources ADD COLUMN created_by TEXT NOT NULL DEFAULT 'hds';
ALTER TABLE resources ADD COLUMN modified_by TEXT NOT NULL DEFAULT 'hds';
ALTER TABLE resources ADD COLUMN active_operation TEXT;
-- The operation record also serves data-plane work ($export, $import, reindex): what it
-- produced, and when it last moved.
ALTER TABLE operations ADD COLUMN result_json TEXT;
ALTER TABLE operations ADD COLUMN updated_ms BIGINT;
UPDATE resources SET active_operation = (
    SELECT o.id FROM operations o
    WHERE lower(o.resource_id) = resources.id_key AND o.status IN ('Requested', 'Running')
    ORDER BY o.started_ms DESC LIMIT 1
);
