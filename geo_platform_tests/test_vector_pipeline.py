"""Vector files through the whole pipeline, on both profiles: bronze -> tables, STAC items,
GeoParquet exports, checks, tiles; hostile files fail alone with a clear reason."""

import gzip
from pathlib import Path

import dagster as dg
import mapbox_vector_tile
import pyarrow.parquet as pq
import pytest
from pmtiles.reader import MmapSource, Reader

import geo_platform.ingest
from geo_platform.backends import blob_store, stac_catalog, warehouse
from geo_platform.ingest import ingest
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.vector.tiles import tile_bounds_lonlat
from geo_platform.resources.blob_store import SHA256_METADATA

from . import vector_inputs as inputs

pytestmark = pytest.mark.asset

# file -> (table, rows) for the real files; every one valid as it comes (0 repaired).
REAL_TABLES = {
    "countries.zip": ("realvec__countries_zip__naturalearth_lowres", 177),
    "curve.gpkg": ("realvec__curve_gpkg__curve", 1),
    "curvepolygon.gpkg": ("realvec__curvepolygon_gpkg__curvepolygon", 1),
    "line_zm.gpkg": ("realvec__line_zm_gpkg__line_zm", 1),
    "multisurface.gpkg": ("realvec__multisurface_gpkg__multisurface", 1),
    "test_gpkg_nulls.gpkg": ("realvec__test_gpkg_nulls_gpkg__test_gpkg_nulls", 4),
}


@pytest.fixture
def real_vector_folder(tmp_path: Path) -> Path:
    if not inputs.REAL_VECTORS.is_dir():
        pytest.skip(f"real test data not found at {inputs.REAL_VECTORS}")
    folder = tmp_path / "vectors"
    folder.mkdir()
    inputs.shapefile_zip(folder / "countries.zip")
    for name in REAL_TABLES:
        if name.endswith(".gpkg"):
            inputs.copy_real(name, folder / name)
    return folder


def test_real_vector_files_load_the_same_on_both_profiles(profile_settings, real_vector_folder):
    settings = profile_settings
    outcomes = ingest(
        [real_vector_folder], collection="realvec", output_tier=None, settings=settings
    )
    assert [o.message for o in outcomes if not o.ok] == []
    assert len(outcomes) == len(REAL_TABLES)

    # The load read the local files while they were copied into bronze: the copies are
    # whole, byte for byte, and say which content they hold.
    store = blob_store(settings)
    for source in real_vector_folder.iterdir():
        key = f"realvec/{source.name}"
        assert store.info("bronze", key).metadata[SHA256_METADATA] == sha256_file(source), key
        with store.local_file("bronze", key) as copy:
            assert copy.read_bytes() == source.read_bytes(), key

    tables = warehouse(settings)
    layers = {layer["table"]: layer["record"] for layer in tables.layers()}
    for name, (table, rows) in REAL_TABLES.items():
        assert tables.row_count("vector", table) == rows, name
        check = tables.check_geometries("vector", table, "geom")
        assert (check.rows, check.invalid, check.srids) == (rows, 0, (4326,)), name
        assert (layers[table]["repaired"], layers[table]["dropped"]) == (0, 0), name
    assert layers["realvec__curve_gpkg__curve"]["linearized"] == 1
    assert layers["realvec__multisurface_gpkg__multisurface"]["geometry_types"] == ["MultiPolygon"]
    countries = layers["realvec__countries_zip__naturalearth_lowres"]
    assert [c["name"] for c in countries["columns"]] == [
        "pop_est",
        "continent",
        "name",
        "iso_a3",
        "gdp_md_est",
    ]
    assert countries["bbox"][0] == -180 and countries["bbox"][2] == 180

    items = {i["id"]: i for i in stac_catalog(settings).search(collections=["vectors"], limit=None)}
    # One item per table of these files, none more; other tests' tables share the
    # session's catalog on production (the H3 tests' inputs, say).
    ours = {i for i in items if i.startswith("realvec__")}
    assert ours == {table for table, _ in REAL_TABLES.values()}
    item = items["realvec__countries_zip__naturalearth_lowres"]
    assert item["properties"]["table:row_count"] == 177
    assert [c["name"] for c in item["properties"]["table:columns"]][:2] == ["fid", "pop_est"]
    assert item["geometry"]["type"] == "Polygon"
    export = "realvec/countries.zip/realvec__countries_zip__naturalearth_lowres.parquet"
    assert item["assets"]["data"]["href"] == store.href("silver", export)
    with store.local_file("silver", export) as path:
        exported = pq.read_table(path)
        assert exported.num_rows == 177 and b"geo" in exported.schema.metadata

    # Ingesting again replaces the tables: the same counts, one item each.
    again = ingest(
        [real_vector_folder / "countries.zip"],
        collection="realvec",
        output_tier=None,
        settings=settings,
    )
    assert again[0].ok
    assert tables.row_count("vector", "realvec__countries_zip__naturalearth_lowres") == 177
    assert len(stac_catalog(settings).search(collections=["vectors"], ids=[item["id"]])) == 1


def test_a_failed_copy_into_bronze_fails_the_load_and_leaves_the_old_table(
    profile_settings, tmp_path: Path, monkeypatch
):
    """The load reads the local file while it is copied into bronze; a table is swapped in
    only once bronze holds what was loaded, so a failed copy leaves the old table, and
    bronze, as they were."""
    settings = profile_settings
    source = tmp_path / "parcels.geojson"
    inputs.write_geojson(source, [inputs.feature(inputs.square(i, 0), n=i) for i in range(2)])
    first = ingest([source], collection="bronzefail", output_tier=None, settings=settings)
    assert first[0].ok, first[0].message
    old_sha256 = sha256_file(source)

    inputs.write_geojson(source, [inputs.feature(inputs.square(i, 0), n=i) for i in range(3)])

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(geo_platform.ingest, "_put", full_disk)
    failed = ingest([source], collection="bronzefail", output_tier=None, settings=settings)

    assert not failed[0].ok
    assert "cannot copy" in failed[0].message and "No space left" in failed[0].message
    assert warehouse(settings).row_count("vector", "bronzefail__parcels_geojson") == 2
    store = blob_store(settings)
    assert store.info("bronze", "bronzefail/parcels.geojson").metadata[SHA256_METADATA] == (
        old_sha256
    )


def test_hostile_vector_files_fail_alone_or_are_repaired(profile_settings, tmp_path: Path):
    settings = profile_settings
    folder = tmp_path / "hostile"
    folder.mkdir()
    inputs.self_intersecting(folder / "bowties.geojson")
    inputs.mixed_types(folder / "mixed.geojson")
    inputs.awkward_columns(folder / "columns.geojson")
    inputs.newline_delimited(folder / "lines.geojsonl")
    inputs.empty_file(folder / "empty.geojson")
    inputs.malformed_json(folder / "broken.geojson")
    inputs.shapefile_zip(folder / "noprj.zip", with_prj=False)
    inputs.zip_without_shp(folder / "noshp.zip")
    inputs.zip_slip(folder / "slip.zip")
    inputs.zip_bomb(folder / "bomb.zip")
    tables = warehouse(settings)
    before = set(tables.tables("vector"))

    outcomes = {
        o.blob_key.removeprefix("hostile/"): o
        for o in ingest([folder], collection="hostile", output_tier=None, settings=settings)
    }
    failures = {name: o.message for name, o in outcomes.items() if not o.ok}
    assert set(failures) == {
        "empty.geojson",
        "broken.geojson",
        "noprj.zip",
        "noshp.zip",
        "slip.zip",
        "bomb.zip",
    }
    assert "empty (0 bytes)" in failures["empty.geojson"]
    assert "not a readable" in failures["broken.geojson"]
    assert "no coordinate reference system" in failures["noprj.zip"]
    assert "no .shp" in failures["noshp.zip"]
    assert "zip slip" in failures["slip.zip"]
    assert "zip bomb" in failures["bomb.zip"]

    layers = {layer["table"]: layer["record"] for layer in tables.layers()}
    bowties = layers["hostile__bowties_geojson"]
    assert (bowties["source_rows"], bowties["rows"], bowties["repaired"], bowties["dropped"]) == (
        6,
        5,
        3,
        1,
    )
    assert tables.row_count("vector", "hostile__bowties_geojson") == 5
    assert tables.check_geometries("vector", "hostile__bowties_geojson", "geom").invalid == 0
    mixed = layers["hostile__mixed_geojson"]
    assert mixed["geometry_types"] == ["MultiLineString", "MultiPolygon", "Point"]
    assert (mixed["rows"], mixed["nulls"], mixed["promoted_to_multi"]) == (5, 1, 2)
    columns = [c["name"] for c in layers["hostile__columns_geojson"]["columns"]]
    assert columns[:2] == ["select_", "quoted"] and "name_2" in columns and "geom_" in columns
    assert all(len(c.encode()) <= 63 for c in columns)
    assert tables.row_count("vector", "hostile__lines_geojsonl") == 5
    # Failed files left no table behind, and touched no other table.
    after = set(tables.tables("vector"))
    assert after - before == {
        "hostile__bowties_geojson",
        "hostile__mixed_geojson",
        "hostile__columns_geojson",
        "hostile__lines_geojsonl",
    }


def test_vector_tiles_decode_with_features_and_properties(profile_settings, tmp_path: Path):
    settings = profile_settings
    settings.collections_path.parent.mkdir(parents=True, exist_ok=True)
    settings.collections_path.write_text("tiled:\n  vector:\n    max_zoom: 2\n")
    source = inputs.shapefile_zip(tmp_path / "countries.zip")
    (outcome,) = ingest(
        [source], collection="tiled", output_tier=None, settings=settings, vector_tiles=True
    )
    assert outcome.ok, outcome.message
    assert outcome.metadata["vector_tiles"]["zooms"] == "0-2"

    store = blob_store(settings)
    key = "tiled/countries.zip/tiled__countries_zip__naturalearth_lowres.pmtiles"
    with store.local_file("silver", key) as path, open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        header = reader.header()
        assert (header["min_zoom"], header["max_zoom"]) == (0, 2)
        assert header["tile_compression"].name == "GZIP"
        world = _decode(reader.get(0, 0, 0))
        names = {feature["properties"]["name"] for feature in world["features"]}
        assert {"France", "Brazil", "Australia"} <= names
        assert len(world["features"]) > 150
        # z2 tile (2, 1): Europe and Africa's north; its features stay within the buffer.
        tile = _decode(reader.get(2, 2, 1))
        names = {feature["properties"]["name"] for feature in tile["features"]}
        assert "France" in names and "Brazil" not in names
        west, south, east, north = tile_bounds_lonlat(2, 2, 1)
        assert west <= 2.5 <= east and south <= 46.5 <= north  # France is in there
        for feature in tile["features"]:
            coords = _coordinates(feature["geometry"]["coordinates"])
            assert all(-64 <= x <= 4096 + 64 and -64 <= y <= 4096 + 64 for x, y in coords)
        france = next(f for f in tile["features"] if f["properties"]["name"] == "France")
        assert (
            france["properties"]["continent"] == "Europe"
            and france["properties"]["pop_est"] > 60_000_000
        )
        # Simplified per zoom: the world tile draws Germany (whole in both tiles) with
        # fewer points than the z2 tile does.
        points = [
            len(_coordinates(f["geometry"]["coordinates"]))
            for layer in (world, tile)
            for f in layer["features"]
            if f["properties"]["name"] == "Germany"
        ]
        assert points[0] < points[1], points


def _decode(compressed: bytes) -> dict:
    data = gzip.decompress(compressed)
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})["layer"]


def _coordinates(nested) -> list[tuple[float, float]]:
    if nested and isinstance(nested[0], (int, float)):
        return [tuple(nested)]
    return [c for part in nested for c in _coordinates(part)]


def test_asset_checks_pass_and_report(settings, instance, tmp_path: Path):
    from geo_platform.definitions import defs

    source = inputs.self_intersecting(tmp_path / "b.geojson")
    store = blob_store(settings)
    store.upload_file(source, "bronze", "checks/b.geojson")
    instance.add_dynamic_partitions("vector_sources", ["checks/b.geojson"])
    job = defs().resolve_job_def("vector_ingest")
    result = job.execute_in_process(instance=instance, partition_key="checks/b.geojson")
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"row_count", "geometries_valid", "srid", "item_valid"}
    assert all(e.passed for e in evaluations.values())
    assert "5 stored, 5 expected" in str(evaluations["row_count"].metadata)
    materialization = result.asset_materializations_for_node("vector_table")[0]
    assert materialization.metadata["repaired"] == dg.IntMetadataValue(3)
    assert materialization.metadata["dropped"] == dg.IntMetadataValue(1)
