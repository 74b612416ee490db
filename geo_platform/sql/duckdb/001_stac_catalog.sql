-- requires: spatial
-- The embedded STAC catalog as first created (002 moves geometry to WKB).
CREATE TABLE IF NOT EXISTS collections (
    id VARCHAR PRIMARY KEY,
    content JSON NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS items (
    collection VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    -- pgSTAC's search semantics: an item spans [start_datetime, end_datetime],
    -- both equal to datetime when the item has a single instant.
    datetime TIMESTAMPTZ,
    start_datetime TIMESTAMPTZ NOT NULL,
    end_datetime TIMESTAMPTZ NOT NULL,
    xmin DOUBLE NOT NULL,
    ymin DOUBLE NOT NULL,
    xmax DOUBLE NOT NULL,
    ymax DOUBLE NOT NULL,
    geometry GEOMETRY NOT NULL,
    content JSON NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, id)
);
