"""Complete global H3 grids as Arrow batches: one row per cell with its boundary polygon.

Boundaries come from ``h3`` vertex by vertex and are assembled by shapely in bulk. A cell
whose vertices span more than 180° of longitude crosses the antimeridian (or holds a
pole): the ``antimeridian`` package splits it into a MultiPolygon on either side of 180°
(a polar cell becomes one polygon reaching the pole), so that it is valid and its area is
its own, never the rest of the globe.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

import antimeridian
import h3
import numpy as np
import pyarrow as pa
import shapely

from geo_platform.lib.tables import GeometryColumn, TableSpec

H3_SCHEMA = "h3"
GRID_TABLE = "grid"
# H3's authalic Earth radius (EARTH_RADIUS_KM in h3's constants.h): its cell areas sum
# to the area of this sphere.
EARTH_RADIUS_KM = 6371.007180918475
EARTH_AREA_KM2 = 4 * math.pi * EARTH_RADIUS_KM**2
MAX_RESOLUTION = 15
# Cells per batch: a resolution-6 base cell (~117,000 cells) is a few batches.
BATCH_CELLS = 50_000

GRID_SPEC = TableSpec(
    schema=H3_SCHEMA,
    name=GRID_TABLE,
    columns=(
        ("h3_index", pa.string()),
        ("resolution", pa.int32()),
        ("parent", pa.string()),
        ("base_cell", pa.int32()),
        ("is_pentagon", pa.bool_()),
        ("area_km2", pa.float64()),
    ),
    primary_key=("h3_index",),
    geometry=GeometryColumn("geom", 4326),
    indexes=("resolution",),
)


def check_resolution(resolution: int) -> int:
    if not 0 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"H3 resolution {resolution} is not in 0-{MAX_RESOLUTION}")
    return resolution


def base_cells() -> list[str]:
    """The 122 resolution-0 cells, in index order."""
    return sorted(h3.get_res0_cells())


def grid_cells(resolution: int, parents: Iterable[str] | None = None) -> list[str]:
    """Every cell of ``resolution`` under ``parents`` (resolution-0 cells; all by default)."""
    check_resolution(resolution)
    roots = base_cells() if parents is None else list(parents)
    return [cell for root in roots for cell in h3.cell_to_children(root, resolution)]


def cell_polygons(cells: Sequence[str]) -> np.ndarray:
    """The cells' boundaries in EPSG:4326 (lon, lat), valid; antimeridian cells split."""
    boundaries = [h3.cell_to_boundary(cell) for cell in cells]
    counts = np.fromiter(map(len, boundaries), np.int64, len(cells))
    latlng = np.fromiter(
        chain.from_iterable(chain.from_iterable(boundaries)), np.float64, int(counts.sum()) * 2
    ).reshape(-1, 2)
    lon, lat = latlng[:, 1], latlng[:, 0]
    rings = shapely.linearrings(
        np.column_stack([lon, lat]), indices=np.repeat(np.arange(len(cells)), counts)
    )
    polygons = shapely.polygons(rings)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    span = np.maximum.reduceat(lon, starts) - np.minimum.reduceat(lon, starts)
    crossing = np.nonzero(span > 180)[0]
    if len(crossing):
        with warnings.catch_warnings():
            # h3 rings are counter-clockwise already; the package would only say so.
            warnings.simplefilter("ignore", antimeridian.FixWindingWarning)
            polygons[crossing] = [antimeridian.fix_polygon(polygons[i]) for i in crossing]
    return polygons


def crosses_antimeridian(cell: str) -> bool:
    """Whether a cell's vertices span more than half the globe in longitude."""
    lons = [lng for _, lng in h3.cell_to_boundary(cell)]
    return max(lons) - min(lons) > 180


def cell_batch(cells: Sequence[str], resolution: int) -> pa.RecordBatch:
    """Rows of ``GRID_SPEC`` for ``cells`` (all of ``resolution``)."""
    parents = [h3.cell_to_parent(c, resolution - 1) for c in cells] if resolution else None
    pentagons = set(h3.get_pentagons(resolution))
    arrays = [
        pa.array(cells, pa.string()),
        pa.array(np.full(len(cells), resolution, np.int32)),
        pa.array(parents, pa.string()) if parents else pa.nulls(len(cells), pa.string()),
        pa.array([h3.get_base_cell_number(c) for c in cells], pa.int32()),
        pa.array([c in pentagons for c in cells], pa.bool_()),
        pa.array([h3.cell_area(c, "km^2") for c in cells], pa.float64()),
        pa.array(shapely.to_wkb(cell_polygons(cells)), pa.binary()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=GRID_SPEC.arrow_schema())


def grid_batches(
    resolution: int,
    parents: Iterable[str] | None = None,
    *,
    batch_cells: int = BATCH_CELLS,
) -> Iterator[pa.RecordBatch]:
    """The grid of ``resolution`` (under ``parents``, all by default) in batches of at
    most ``batch_cells`` rows: one resolution-0 parent's cells at a time, so memory is
    bounded by a batch, not by the grid."""
    check_resolution(resolution)
    pending: list[str] = []
    for root in base_cells() if parents is None else parents:
        pending.extend(h3.cell_to_children(root, resolution))
        while len(pending) >= batch_cells:
            yield cell_batch(pending[:batch_cells], resolution)
            del pending[:batch_cells]
    if pending:
        yield cell_batch(pending, resolution)


def expected_cells(resolution: int) -> int:
    """How many cells the global grid of ``resolution`` has (2 + 120 * 7^r)."""
    return int(h3.get_num_cells(check_resolution(resolution)))


# From this resolution on, a grid is made and stored one resolution-0 cell at a time.
FAN_OUT_RESOLUTION = 5


def grid_partition_keys(max_resolution: int) -> list[str]:
    """``"0"`` ... ``"4"``; from 5 on, ``"<resolution>/<resolution-0 cell>"`` (122 each)."""
    check_resolution(max_resolution)
    keys = [str(r) for r in range(min(max_resolution, FAN_OUT_RESOLUTION - 1) + 1)]
    for resolution in range(FAN_OUT_RESOLUTION, max_resolution + 1):
        keys += [f"{resolution}/{cell}" for cell in base_cells()]
    return keys


def parse_grid_partition(key: str) -> tuple[int, str | None]:
    """``(resolution, resolution-0 cell or None)`` of a partition key."""
    resolution, _, base = key.partition("/")
    if base and not (h3.is_valid_cell(base) and h3.get_resolution(base) == 0):
        raise ValueError(f"{key!r}: {base!r} is not a resolution-0 H3 cell")
    return check_resolution(int(resolution)), base or None


def partition_cells(resolution: int, base: str | None) -> int:
    """Cells in one partition: the global grid, or one resolution-0 cell's descendants."""
    if base is None:
        return expected_cells(resolution)
    return int(h3.cell_to_children_size(base, resolution))
