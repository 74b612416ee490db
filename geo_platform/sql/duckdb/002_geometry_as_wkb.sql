-- requires: spatial
-- Geometry as WKB and its envelope as plain columns: writes and searches then need no
-- spatial extension (~0.15 s to load per connection); the exact intersection test runs
-- in GEOS through shapely, as PostGIS runs it in GEOS. The item JSON is plain text:
-- it is written by orjson, and DuckDB's JSON type re-validated it on every insert.
-- No primary key: DuckDB rewrites a whole ART index at every checkpoint once a key is
-- added (2.4 s for one item into 100,000). (collection, id) stays unique because every
-- write deletes the batch's keys and inserts them in one transaction, and writes are
-- serialized: DuckDB's file lock between processes, a lock per file within one.
CREATE TABLE items_wkb AS
    SELECT collection, id, datetime, start_datetime, end_datetime, xmin, ymin, xmax, ymax,
           ST_AsWKB(geometry) AS geometry, content, updated_at
    FROM items;
DROP TABLE items;
CREATE TABLE items (
    collection VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    datetime TIMESTAMPTZ,
    start_datetime TIMESTAMPTZ NOT NULL,
    end_datetime TIMESTAMPTZ NOT NULL,
    xmin DOUBLE NOT NULL,
    ymin DOUBLE NOT NULL,
    xmax DOUBLE NOT NULL,
    ymax DOUBLE NOT NULL,
    -- WKB, EPSG:4326.
    geometry BLOB NOT NULL,
    content VARCHAR NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO items SELECT * FROM items_wkb;
DROP TABLE items_wkb;
