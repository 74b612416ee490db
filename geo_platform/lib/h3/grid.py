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
from typing import Any

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
    # A partition (one resolution, or one resolution-0 cell of it) is found and replaced
    # through this index.
    indexes=(("resolution", "base_cell"),),
    # Up to 16 million rows appended in h3_index order: DuckDB's zonemaps find a cell or a
    # partition (a point lookup scans one row group), where an R-tree rebuilt over them
    # would take gigabytes, and upkept while loading would double the load.
    duckdb_indexes=False,
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
    return _polygons_and_areas(cells, areas=False)[0]


def _polygons_and_areas(cells: Sequence[str], *, areas: bool = True) -> tuple[np.ndarray, Any]:
    boundaries = [h3.cell_to_boundary(cell) for cell in cells]
    counts = np.fromiter(map(len, boundaries), np.int64, len(cells))
    latlng = np.fromiter(
        chain.from_iterable(chain.from_iterable(boundaries)), np.float64, int(counts.sum()) * 2
    ).reshape(-1, 2)
    del boundaries
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
    return polygons, cell_areas_km2(lon, lat, counts) if areas else None


def crosses_antimeridian(cell: str) -> bool:
    """Whether a cell's vertices span more than half the globe in longitude."""
    lons = [lng for _, lng in h3.cell_to_boundary(cell)]
    return max(lons) - min(lons) > 180


def cell_areas_km2(lon: np.ndarray, lat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each cell's area on H3's sphere from its boundary vertices (degrees, ``counts`` per
    cell, in order), all cells at once: the spherical triangles between the normalised
    mean of a cell's vertices and each of its edges (Van Oosterom & Strackee), as
    ``h3.cell_area`` sums them around the cell's centre. Equal to it within 1e-9."""
    phi, lam = np.radians(lat), np.radians(lon)
    points = np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    owner = np.repeat(np.arange(len(counts)), counts)
    apex = np.add.reduceat(points, starts, axis=0)
    apex /= np.linalg.norm(apex, axis=1)[:, None]
    # Each vertex and the next one around its cell (the last closes on the first).
    following = np.arange(len(points)) + 1
    following[starts + counts - 1] = starts
    a, b, c = apex[owner], points, points[following]
    triple = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    denominator = 1 + np.einsum("ij,ij->i", a, b) + np.einsum("ij,ij->i", b, c)
    denominator += np.einsum("ij,ij->i", c, a)
    excess = 2 * np.arctan2(triple, denominator)
    return np.add.reduceat(excess, starts) * EARTH_RADIUS_KM**2


def _rows(
    cells: Sequence[str],
    resolution: int,
    parents: Sequence[str] | pa.Array | None,
    bases: pa.Array,
) -> tuple[pa.RecordBatch, np.ndarray]:
    pentagons = set(h3.get_pentagons(resolution))
    polygons, areas = _polygons_and_areas(cells)
    arrays = [
        pa.array(cells, pa.string()),
        pa.array(np.full(len(cells), resolution, np.int32)),
        pa.nulls(len(cells), pa.string()) if parents is None else pa.array(parents, pa.string()),
        bases,
        pa.array([c in pentagons for c in cells], pa.bool_()),
        pa.array(areas, pa.float64()),
        pa.array(shapely.to_wkb(polygons), pa.binary()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=GRID_SPEC.arrow_schema()), polygons


def grid_groups(
    resolution: int, parents: Iterable[str] | None = None, batch_cells: int = BATCH_CELLS
) -> Iterator[list[str]]:
    """``parents`` (resolution-0 cells; all by default) cut into groups of ancestors, in
    cell order, whose cells of ``resolution`` number at most ``batch_cells`` together (a
    coarser cell with more is split into its children first): each group is one batch."""
    check_resolution(resolution)
    group: list[str] = []
    size = 0
    pending = list(reversed(base_cells() if parents is None else list(parents)))
    while pending:
        cell = pending.pop()
        count = int(h3.cell_to_children_size(cell, resolution))
        if count > batch_cells and h3.get_resolution(cell) < resolution:
            pending.extend(reversed(h3.cell_to_children(cell, h3.get_resolution(cell) + 1)))
            continue
        if group and size + count > batch_cells:
            yield group
            group, size = [], 0
        group.append(cell)
        size += count
    if group:
        yield group


def group_batch(group: Sequence[str], resolution: int) -> pa.RecordBatch:
    """The rows of every cell of ``resolution`` under the cells of ``group``."""
    return group_rows(group, resolution)[0]


def group_rows(group: Sequence[str], resolution: int) -> tuple[pa.RecordBatch, np.ndarray]:
    """``group_batch`` and the cells' polygons: each cell's parent comes from the walk
    down (the children of each parent, in order), not from a call per cell."""
    cells: list[str] = []
    parents: list[str] = []
    counts: list[int] = []
    sizes: list[int] = []
    for ancestor in group:
        before = len(cells)
        if h3.get_resolution(ancestor) == resolution:
            cells.append(ancestor)
        else:
            for parent in h3.cell_to_children(ancestor, resolution - 1):
                children = h3.cell_to_children(parent, resolution)
                cells.extend(children)
                parents.append(parent)
                counts.append(len(children))
        sizes.append(len(cells) - before)
    numbers = np.array([h3.get_base_cell_number(a) for a in group], np.int32)
    parent_column = (
        pa.array(np.repeat(np.array(parents, dtype=object), counts), pa.string())
        if resolution
        else None
    )
    return _rows(cells, resolution, parent_column, pa.array(np.repeat(numbers, sizes)))


def grid_batches(
    resolution: int,
    parents: Iterable[str] | None = None,
    *,
    batch_cells: int = BATCH_CELLS,
) -> Iterator[pa.RecordBatch]:
    """The grid of ``resolution`` (under ``parents``, all by default) in batches of at
    most ``batch_cells`` rows, so memory is bounded by a batch, not by the grid."""
    for group in grid_groups(resolution, parents, batch_cells):
        yield group_batch(group, resolution)


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
