"""The grid kept where there is land: cells that intersect any polygon of a land table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import shapely

from geo_platform.lib.h3.grid import GRID_SPEC

# Replaced whole and a few hundred thousand rows at most: indexed on both warehouses.
LAND_GRID_SPEC = replace(GRID_SPEC, name="land_grid", indexes=(), duckdb_indexes=True)
_POLYGONAL = (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)


class LandError(ValueError):
    """The land table holds nothing to intersect with."""


@dataclass
class LandCount:
    kept: int = 0
    dropped: int = 0


def land_polygons(wkb: Iterable[bytes | None], table: str) -> shapely.STRtree:
    """A spatial index of the table's polygons (lon/lat); other geometries are ignored."""
    geoms = shapely.from_wkb(np.array([g for g in wkb if g is not None], dtype=object))
    polygons = geoms[np.isin(shapely.get_type_id(geoms), _POLYGONAL)]
    if not len(polygons):
        raise LandError(f"land table {table} holds no polygons")
    return shapely.STRtree(shapely.make_valid(polygons))


def land_cells(
    batches: Iterable[pa.RecordBatch], land: shapely.STRtree, count: LandCount
) -> Iterator[pa.RecordBatch]:
    """The rows of ``batches`` (``GRID_SPEC`` rows) whose cell intersects land, as rows of
    ``LAND_GRID_SPEC``; ``count`` tallies what was kept and dropped.

    Planar in lon/lat: cells and land are both split at the antimeridian, and a cell's
    straight edges stray from its great-circle ones by far less than a resolution-4 cell.
    """
    schema = LAND_GRID_SPEC.arrow_schema()
    for batch in batches:
        cells = shapely.from_wkb(batch.column("geom").to_numpy(zero_copy_only=False))
        hits = np.unique(land.query(cells, predicate="intersects")[0])
        keep = np.zeros(batch.num_rows, dtype=bool)
        keep[hits] = True
        count.kept += int(keep.sum())
        count.dropped += int((~keep).sum())
        yield pa.RecordBatch.from_arrays(batch.filter(pa.array(keep)).columns, schema=schema)


def parse_table_name(name: str) -> tuple[str, str]:
    """``schema.table`` (schema ``vector`` when omitted)."""
    schema, _, table = name.rpartition(".")
    if not table:
        raise ValueError(f"{name!r} is not a table name (schema.table)")
    return schema or "vector", table
