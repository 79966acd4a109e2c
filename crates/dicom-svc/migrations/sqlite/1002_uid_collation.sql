-- PostgreSQL 1002 sets byte-wise collation on key columns; SQLite compares TEXT as bytes
-- (BINARY) already. Kept so that both backends have the same migration versions.
SELECT 1;
