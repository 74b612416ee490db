"""H3 grids as plain functions: counts, pentagons, areas, validity, the antimeridian."""

import math

import h3
import numpy as np
import pytest
import shapely
from pyproj import Geod

from geo_platform.lib.h3.grid import (
    EARTH_AREA_KM2,
    EARTH_RADIUS_KM,
    GRID_SPEC,
    base_cells,
    cell_polygons,
    crosses_antimeridian,
    expected_cells,
    grid_batches,
    grid_cells,
    grid_groups,
    group_batch,
)
from geo_platform.lib.h3.load import GridProducer

pytestmark = pytest.mark.unit

# Geodesics on H3's own sphere are its cells' great-circle edges.
H3_SPHERE = Geod(a=EARTH_RADIUS_KM * 1000, b=EARTH_RADIUS_KM * 1000)


@pytest.mark.parametrize(
    ("resolution", "cells"), [(0, 122), (1, 842), (2, 5_882), (3, 41_162), (4, 288_122)]
)
def test_global_grid_counts_pentagons_and_area(resolution, cells):
    rows = pentagons = 0
    area = 0.0
    seen: set[str] = set()
    for batch in grid_batches(resolution, batch_cells=100_000):
        assert batch.schema == GRID_SPEC.arrow_schema()
        rows += batch.num_rows
        pentagons += sum(batch.column("is_pentagon").to_pylist())
        area += float(np.sum(batch.column("area_km2").to_numpy()))
        seen.update(batch.column("h3_index").to_pylist())
    assert rows == cells == expected_cells(resolution) == len(seen)
    assert pentagons == 12
    assert area == pytest.approx(EARTH_AREA_KM2, rel=1e-4)
    assert EARTH_AREA_KM2 == pytest.approx(510_065_621.724, rel=1e-9)


def test_rows_carry_parent_base_cell_and_the_h3_area():
    (batch,) = list(grid_batches(2, ["8001fffffffffff"]))
    rows = batch.to_pylist()
    assert len(rows) == 49 and {r["resolution"] for r in rows} == {2}
    for row in rows:
        assert row["parent"] == h3.cell_to_parent(row["h3_index"], 1)
        assert row["base_cell"] == 0
        assert row["area_km2"] == pytest.approx(h3.cell_area(row["h3_index"], "km^2"))
    (top,) = list(grid_batches(0, ["8001fffffffffff"]))
    assert top.column("parent").null_count == 1


def test_every_polygon_is_valid_and_holds_its_own_area():
    """Antimeridian cells become MultiPolygons (polar cells one polygon reaching the pole):
    valid, and each geometry's geodesic area is the cell's, not the rest of the globe."""
    cells = grid_cells(2)
    polygons = cell_polygons(cells)
    assert shapely.is_valid(polygons).all()
    crossing = [i for i, c in enumerate(cells) if crosses_antimeridian(c)]
    assert 50 < len(crossing) < 200
    kinds = {polygons[i].geom_type for i in crossing}
    assert kinds == {"Polygon", "MultiPolygon"}
    for i in crossing:
        west, _, east, _ = polygons[i].bounds
        assert (west, east) == (-180, 180)
        geodesic = abs(H3_SPHERE.geometry_area_perimeter(polygons[i])[0]) / 1e6
        assert geodesic == pytest.approx(h3.cell_area(cells[i], "km^2"), rel=1e-6)
    # Every cell, crossing or not: the geometries tile the sphere.
    total = sum(abs(H3_SPHERE.geometry_area_perimeter(p)[0]) for p in polygons) / 1e6
    assert total == pytest.approx(4 * math.pi * EARTH_RADIUS_KM**2, rel=1e-6)
    ordinary = polygons[0 if 0 not in crossing else 1]
    assert ordinary.geom_type == "Polygon" and ordinary.bounds[2] - ordinary.bounds[0] < 180


def test_pole_cells_reach_the_pole():
    north = h3.latlng_to_cell(90, 0, 1)
    (polygon,) = cell_polygons([north])
    assert polygon.is_valid and polygon.bounds[3] == 90
    assert polygon.covers(shapely.Point(10, 89.99))


def test_areas_from_the_boundaries_equal_h3s():
    (batch,) = list(grid_batches(2, batch_cells=10_000))
    got = batch.column("area_km2").to_numpy()
    expected = np.array([h3.cell_area(c, "km^2") for c in batch.column("h3_index").to_pylist()])
    assert np.max(np.abs(got / expected - 1)) < 1e-9


def test_groups_split_a_base_cell_into_bounded_batches_in_cell_order():
    pentagon = "8009fffffffffff"  # base cell 4: 6 children, not 7
    groups = list(grid_groups(3, ["8001fffffffffff", pentagon], batch_cells=100))
    sizes = [sum(h3.cell_to_children_size(a, 3) for a in g) for g in groups]
    assert max(sizes) <= 100 and sum(sizes) == 343 + 286
    cells = [c for g in groups for c in group_batch(g, 3).column("h3_index").to_pylist()]
    assert cells == grid_cells(3, ["8001fffffffffff", pentagon])


def test_worker_processes_make_the_same_batches_and_a_dropped_job_is_skipped():
    jobs = [(2, list(grid_groups(2, [base], batch_cells=20))) for base in base_cells()[:3]]
    with GridProducer(jobs, workers=1) as inline:
        expected = [[b for b, _ in inline.batches(i)] for i in range(3)]
    with GridProducer(jobs, workers=2) as pool:
        first = next(pool.batches(0))  # job 0 left half-way, as a failed partition is
        rest = [[b for b, _ in pool.batches(i)] for i in (1, 2)]
    assert first[0].equals(expected[0][0]) and first[1].rows == first[0].num_rows
    assert all(
        got.equals(want)
        for got_job, want_job in zip(rest, expected[1:], strict=True)
        for got, want in zip(got_job, want_job, strict=True)
    )
    assert [len(j) for j in rest] == [len(j) for j in expected[1:]] and len(expected[0]) > 1
