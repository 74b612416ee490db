"""The H3 assets through dg.materialize on both profiles: grids, land grid, summaries."""

from collections import Counter

import dagster as dg
import h3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import rasterio.transform
import shapely
from pyproj import Geod, Transformer

from geo_platform.backends import blob_store, dagster_resources, stac_catalog, warehouse
from geo_platform.defs.h3.assets import (
    build_h3_grid,
    grid_export_key,
    h3_land_grid,
    h3_raster_summary,
    h3_vector_summary,
)
from geo_platform.ingest import ingest
from geo_platform.lib.h3.grid import EARTH_AREA_KM2, EARTH_RADIUS_KM, cell_polygons, grid_cells
from geo_platform.lib.h3.item import H3_COLLECTION
from geo_platform.query import run_query

from . import vector_inputs as inputs

pytestmark = pytest.mark.asset

H3_SPHERE = Geod(a=EARTH_RADIUS_KM * 1000, b=EARTH_RADIUS_KM * 1000)
COUNTS = {0: 122, 1: 842, 2: 5_882}


def _materialize(assets, partition_key=None, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=partition_key,
        resources=dagster_resources(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kwargs,
    )


def _grid_rows(settings, resolution: int | None = None) -> pa.Table:
    batches = warehouse(settings).read_table(
        "h3", "grid", ["h3_index", "resolution", "is_pentagon", "area_km2"], "geom"
    )
    rows = pa.Table.from_batches(list(batches))
    if resolution is not None:
        rows = rows.filter(pa.compute.equal(rows["resolution"], resolution))
    return rows


def test_h3_grid_partitions_on_both_profiles(profile_settings):
    settings = profile_settings
    grid = build_h3_grid(2)
    for resolution in COUNTS:
        result = _materialize([grid], str(resolution))
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == dict.fromkeys(
            ["cell_count", "pentagons", "area_sum", "geometries_valid"], True
        )

    rows = _grid_rows(settings)
    by_resolution = Counter(rows["resolution"].to_pylist())
    assert dict(by_resolution) == COUNTS
    assert len(set(rows["h3_index"].to_pylist())) == sum(COUNTS.values())
    check = warehouse(settings).check_geometries("h3", "grid", "geom")
    assert (check.invalid, check.srids) == (0, (4326,))
    stored = shapely.from_wkb(rows["geom"].to_numpy(zero_copy_only=False))
    resolutions = rows["resolution"].to_numpy()
    for resolution in COUNTS:
        picked = stored[resolutions == resolution]
        pentagons = rows.filter(pa.compute.equal(rows["resolution"], resolution))["is_pentagon"]
        assert sum(pentagons.to_pylist()) == 12
        # The stored shapes, not only the area column, cover the Earth once: antimeridian
        # cells hold their own area, never the rest of the globe.
        geodesic = sum(abs(H3_SPHERE.geometry_area_perimeter(g)[0]) for g in picked) / 1e6
        assert geodesic == pytest.approx(EARTH_AREA_KM2, rel=1e-4)
    kinds = Counter(g.geom_type for g in stored)
    assert kinds["MultiPolygon"] > 50

    # Replacing one resolution leaves the others as they were.
    assert _materialize([grid], "1").success
    assert dict(Counter(_grid_rows(settings)["resolution"].to_pylist())) == COUNTS

    store = blob_store(settings)
    with store.local_file("gold", grid_export_key(2, None)) as path:
        exported = pq.read_table(path)
        assert exported.num_rows == 5_882 and b"geo" in exported.schema.metadata
    items = stac_catalog(settings).search(collections=[H3_COLLECTION], limit=None)
    assert sorted(i["id"] for i in items) == ["h3-grid-res0", "h3-grid-res1", "h3-grid-res2"]
    item = next(i for i in items if i["id"] == "h3-grid-res2")
    assert item["properties"]["table:row_count"] == 5_882
    assert item["assets"]["data"]["href"] == store.href("gold", grid_export_key(2, None))


@pytest.fixture
def countries(tmp_path, profile_settings):
    """The real Natural Earth countries, ingested by the vector pipeline as the default
    land table expects them (naturalearth/countries.zip)."""
    if not inputs.REAL_VECTORS.is_dir():
        pytest.skip(f"real test data not found at {inputs.REAL_VECTORS}")
    folder = tmp_path / "ne"
    folder.mkdir()
    inputs.shapefile_zip(folder / "countries.zip")
    (outcome,) = ingest(
        [folder / "countries.zip"],
        collection="naturalearth",
        output_tier=None,
        settings=profile_settings,
    )
    assert outcome.ok, outcome.message
    return inputs.REAL_VECTORS / "naturalearth_lowres" / "naturalearth_lowres.shp"


def test_land_grid_from_the_real_natural_earth_countries(profile_settings, countries, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_H3_LAND_RESOLUTION", "2")
    result = _materialize([h3_land_grid])
    assert result.success
    metadata = result.asset_materializations_for_node("h3_land_grid")[0].metadata
    kept, dropped = metadata["cells_kept"].value, metadata["cells_dropped"].value
    assert kept + dropped == 5_882

    # Directly: the cells of resolution 2 that meet any country of the shapefile.
    land = shapely.union_all(_shapes(countries))
    cells = grid_cells(2)
    expected = {c for c, p in zip(cells, cell_polygons(cells), strict=True) if p.intersects(land)}
    assert kept == len(expected)

    rows = pa.Table.from_batches(
        list(warehouse(profile_settings).read_table("h3", "land_grid", ["h3_index"]))
    )
    stored = set(rows["h3_index"].to_pylist())
    assert stored == expected
    paris, point_nemo = h3.latlng_to_cell(48.86, 2.35, 2), h3.latlng_to_cell(-48.88, -123.39, 2)
    assert paris in stored and point_nemo not in stored
    with blob_store(profile_settings).local_file("gold", "h3/land_grid/resolution-2.parquet") as p:
        assert pq.read_table(p).num_rows == kept


def _shapes(path):
    _, _, geometry, _ = pyogrio.raw.read(path)
    return shapely.from_wkb(geometry)


def test_land_grid_without_its_land_table_fails_clearly(settings, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_H3_LAND_TABLE", "vector.no_such_land")
    result = _materialize([h3_land_grid])
    assert not result.success
    failure = result.failure_data_for_node("h3_land_grid")
    assert "land table vector.no_such_land does not exist" in str(failure.error)


def test_raster_summary_matches_numpy_and_is_queryable(profile_settings, copy_real, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_H3_SUMMARY_RESOLUTION", "6")
    monkeypatch.setenv("GEO_PLATFORM_H3_WINDOW_SIZE", "128")  # several windows per raster
    folder = copy_real("image_nodata.tif")
    (outcome,) = ingest(
        [folder / "image_nodata.tif"],
        collection="dem",
        output_tier="analysis",
        settings=profile_settings,
    )
    assert outcome.ok, outcome.message
    assert _materialize([h3_raster_summary]).success

    # Directly: every pixel centre of the source (the analysis tier is lossless) to its
    # cell, the whole raster at once.
    expected: dict[str, list] = {}
    with rasterio.open(folder / "image_nodata.tif") as src:
        data = src.read(1)
        rows, cols = np.indices(data.shape)
        xs, ys = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        lons, lats = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
        nodata = src.nodata
    for lon, lat, value in zip(lons, lats, data.ravel().tolist(), strict=True):
        cell = h3.latlng_to_cell(lat, lon, 6)
        expected.setdefault(cell, []).append(value)
    table = pa.Table.from_pylist(
        run_query(
            "SELECT h3_index, band, pixels, count, nodata_share, min, max, mean "
            "FROM h3.raster_summary WHERE collection = 'dem'",
            profile_settings,
        ).to_pylist()
    )
    got = {r["h3_index"]: r for r in table.to_pylist()}
    assert set(got) == set(expected)
    for cell, values in expected.items():
        valid = [v for v in values if v != nodata]
        row = got[cell]
        assert (row["band"], row["pixels"], row["count"]) == (1, len(values), len(valid))
        assert row["nodata_share"] == pytest.approx(1 - len(valid) / len(values))
        if valid:
            assert (row["min"], row["max"]) == (min(valid), max(valid))
            assert row["mean"] == pytest.approx(sum(valid) / len(valid))
        else:
            assert row["min"] is None and row["mean"] is None
    assert any(r["nodata_share"] == 1 for r in got.values())
    assert any(0 < r["nodata_share"] < 1 for r in got.values())


def test_vector_summary_matches_shapely(profile_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_H3_SUMMARY_RESOLUTION", "3")
    field = {"type": "Polygon", "coordinates": [[[10, 10], [13, 10], [13, 12], [10, 12], [10, 10]]]}
    # Crosses the antimeridian as RFC 7946 splits it.
    road = {
        "type": "MultiLineString",
        "coordinates": [[[175, -17], [180, -16]], [[-180, -16], [-178, -15.6]]],
    }
    path = inputs.write_geojson(
        tmp_path / "shapes.geojson",
        [inputs.feature(field, name="field"), inputs.feature(road, name="road")],
    )
    (outcome,) = ingest([path], collection="sum", output_tier=None, settings=profile_settings)
    assert outcome.ok, outcome.message
    assert _materialize([h3_vector_summary]).success

    # Directly: every resolution-3 cell against each feature, by shapely.
    features = [shapely.geometry.shape(field), shapely.geometry.shape(road)]
    cells = grid_cells(3)
    polygons = cell_polygons(cells)
    wgs84 = Geod(ellps="WGS84")
    expected: dict[str, list[float]] = {}
    for feature in features:
        for i in np.nonzero(shapely.intersects(polygons, feature))[0]:
            piece = shapely.intersection(polygons[i], feature)
            measure = expected.setdefault(cells[i], [0, 0.0, 0.0])
            measure[0] += 1
            if piece.geom_type.endswith("Polygon"):
                measure[1] += abs(wgs84.geometry_area_perimeter(piece)[0]) / 1e6
            else:
                measure[2] += wgs84.geometry_length(piece) / 1e3
    result = run_query(
        "SELECT h3_index, features, area_km2, length_km FROM h3.vector_summary "
        "WHERE source_table = 'sum__shapes_geojson'",
        profile_settings,
    ).to_pylist()
    got = {r["h3_index"]: r for r in result}
    assert set(got) == set(expected)
    for cell, (count, area, length) in expected.items():
        assert got[cell]["features"] == count
        assert got[cell]["area_km2"] == pytest.approx(area, rel=1e-9, abs=1e-9)
        assert got[cell]["length_km"] == pytest.approx(length, rel=1e-9, abs=1e-9)
    assert sum(r["area_km2"] for r in got.values()) == pytest.approx(
        abs(wgs84.geometry_area_perimeter(features[0])[0]) / 1e6, rel=1e-3
    )
    # Cut by cells, a segment gains vertices on its straight lon/lat line: its pieces'
    # geodesics add up to within 0.01% of the whole one.
    assert sum(r["length_km"] for r in got.values()) == pytest.approx(
        wgs84.geometry_length(features[1]) / 1e3, rel=1e-4
    )


def test_a_ranged_run_of_fanned_out_partitions_records_each_and_reruns_only_the_failed(
    profile_settings, monkeypatch
):
    """Three resolution-5 partitions in one run; making one's cells fails half-way: the
    two others are materialized (table rows, items, checks), the failed one is not and
    none of its rows are in the table. A second run of that one partition completes it."""
    import geo_platform.lib.h3.load as load_module

    grid = build_h3_grid(5)
    keys = [f"5/{base}" for base in sorted(h3.get_res0_cells())[:3]]
    real_batch = load_module.counted_batch
    made: list[str] = []

    def counted_batch(group, resolution):
        made.append(h3.cell_to_parent(group[0], 0))
        if made[-1] == keys[1][2:] and made.count(made[-1]) == 2:  # after one written
            raise MemoryError("a worker ran out of memory")
        return real_batch(group, resolution)

    monkeypatch.setattr(load_module, "counted_batch", counted_batch)
    monkeypatch.setenv("GEO_PLATFORM_H3_BATCH_CELLS", "5000")  # 4 batches a partition
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [grid], resources=dagster_resources(), instance=instance, raise_on_error=False, tags=tags
    )
    assert not result.success
    assert made.count(keys[0][2:]) == 4
    error = str(result.failure_data_for_node("h3_grid").error)
    assert "1 of 3 h3_grid partitions failed" in error and "out of memory" in error
    done = sorted(e.partition for e in result.get_asset_materialization_events())
    assert done == [keys[0], keys[2]]
    checks = result.get_asset_check_evaluations()
    assert {(c.partition, c.check_name) for c in checks if c.passed} == {
        (k, n) for k in done for n in ("cell_count", "pentagons", "area_sum", "geometries_valid")
    }
    sizes = {k: int(h3.cell_to_children_size(k.split("/")[1], 5)) for k in keys}
    # The production warehouse and catalog are shared with the other tests of the session:
    # only resolution 5 is this test's.
    rows = _grid_rows(profile_settings, resolution=5)
    assert rows.num_rows == sizes[keys[0]] + sizes[keys[2]]

    monkeypatch.setattr(load_module, "counted_batch", real_batch)
    rerun = dg.materialize(
        [grid],
        partition_key=keys[1],
        resources=dagster_resources(),
        instance=instance,
        raise_on_error=False,
    )
    assert rerun.success
    rows = _grid_rows(profile_settings, resolution=5)
    assert rows.num_rows == sum(sizes.values()) == len(set(rows["h3_index"].to_pylist()))
    assert set(instance.get_materialized_partitions(dg.AssetKey("h3_grid"))) == set(keys)
    items = stac_catalog(profile_settings).search(collections=[H3_COLLECTION], limit=None)
    found = sorted(i["id"] for i in items if i["id"].startswith("h3-grid-res5-"))
    assert found == sorted(f"h3-grid-res5-{k[2:]}" for k in keys)
