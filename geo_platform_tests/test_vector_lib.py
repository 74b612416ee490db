"""Plain vector functions: names, zip safety, geometry rules, batches, tiles arithmetic."""

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyogrio.raw
import pytest
import shapely

from geo_platform.errors import ConfigurationError, InvalidInputError
from geo_platform.lib.vector.archive import ZipLimits, extract_shapefiles
from geo_platform.lib.vector.formats import VectorFormat, is_vector_key, vector_format
from geo_platform.lib.vector.geometry import GeometryPolicy, GeometryProcessor
from geo_platform.lib.vector.load import VectorOptions, load_layer, source_layers
from geo_platform.lib.vector.names import MAX_IDENTIFIER_BYTES, column_names, table_name
from geo_platform.lib.vector.tiles import tile_bounds_lonlat
from geo_platform.resources.postgis_warehouse import hex_strings

from . import vector_inputs as inputs

pytestmark = pytest.mark.unit
LIMITS = ZipLimits(max_total_bytes=1024**3, max_ratio=500.0)


def test_vector_keys_by_suffix():
    assert vector_format("a/b.GeoJSON") is VectorFormat.GEOJSON
    assert vector_format("a/roads.shp.zip") is VectorFormat.SHAPEFILE_ZIP
    assert vector_format("a/b.geojsonl") is VectorFormat.GEOJSON
    assert is_vector_key("x/y.gpkg") and is_vector_key("x/y.fgb") and is_vector_key("x/y.parquet")
    assert not is_vector_key("x/y.tif") and not is_vector_key("x/.hidden.gpkg")


def test_plain_keys_give_readable_table_names():
    assert table_name("roads/2024/main_roads.gpkg", "lanes", ".gpkg") == (
        "roads__2024__main_roads_gpkg__lanes"
    )
    assert table_name("parcels/city.geojson", None, ".geojson") == "parcels__city_geojson"


def test_other_keys_are_sanitised_with_a_hash_and_stay_one_to_one():
    names = {
        table_name("Roads/Main Roads.gpkg", "Lanes", ".gpkg"),
        table_name("roads/main-roads.gpkg", "lanes", ".gpkg"),
        table_name("roads/main_roads.gpkg", "lanes", ".gpkg"),
        table_name("roads/main.roads.gpkg", "lanes", ".gpkg"),
        # A layer named like a file must not meet the key of a file in a folder.
        table_name("a/b.gpkg", "c_geojson", ".gpkg"),
        table_name("a/b_gpkg/c.geojson", None, ".geojson"),
        table_name("crème/brûlée.geojson", None, ".geojson"),
    }
    assert len(names) == 7
    assert all(n == n.lower() and len(n.encode()) <= MAX_IDENTIFIER_BYTES for n in names)
    assert table_name("Roads/Main Roads.gpkg", "Lanes", ".gpkg").startswith("roads_main_roads_")
    long_a = table_name("c/" + "a" * 100 + "1.geojson", None, ".geojson")
    long_b = table_name("c/" + "a" * 100 + "2.geojson", None, ".geojson")
    assert long_a != long_b and len(long_a) == MAX_IDENTIFIER_BYTES and "___" in long_a


def test_column_names_are_safe_unique_and_explained():
    mapped = column_names(
        ["select", '"quoted"', "x" * 200, "Name", "name", "geom", "fid", "2nd", "", "ÄÖ"]
    )
    names = [c.name for c in mapped]
    assert names[:2] == ["select_", "quoted"]
    assert len(names[2].encode()) <= 63 and names[2].startswith("xxxx")
    assert names[3:7] == ["name", "name_2", "geom_", "fid_"]
    assert names[7:] == ["c_2nd", "field", "ao"]
    assert len(set(names)) == len(names)
    assert {c.source: c.why for c in mapped}["select"] == "reserved word"
    assert {c.source: c.why for c in mapped}["name"] == "duplicate"


def test_zip_slip_is_refused_before_anything_is_written(tmp_path: Path):
    target = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="zip slip"):
        extract_shapefiles(inputs.zip_slip(tmp_path / "a.zip"), target, LIMITS, name="a.zip")
    assert not target.exists() or not any(target.rglob("*"))
    assert not (tmp_path / "evil.shp").exists()


def test_zip_without_shapefile_and_zip_bomb_are_refused(tmp_path: Path):
    with pytest.raises(InvalidInputError, match=r"no \.shp"):
        extract_shapefiles(
            inputs.zip_without_shp(tmp_path / "a.zip"), tmp_path / "o", LIMITS, name="a"
        )
    bomb = inputs.zip_bomb(tmp_path / "bomb.zip")
    with pytest.raises(InvalidInputError, match="zip bomb"):
        extract_shapefiles(bomb, tmp_path / "b", LIMITS, name="bomb")
    tight = ZipLimits(max_total_bytes=10_000_000, max_ratio=1e9)
    with pytest.raises(InvalidInputError, match="zip bomb"):
        extract_shapefiles(bomb, tmp_path / "c", tight, name="bomb")


def test_a_zip_with_two_shapefiles_gives_two_layers(tmp_path: Path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in sorted((inputs.REAL_VECTORS / "naturalearth_lowres").iterdir()):
            zf.write(part, f"a/{part.name}")
            zf.write(part, f"b/countries{part.suffix}")
    layers = source_layers(archive, "c/two.zip", tmp_path / "work", LIMITS)
    assert [layer.label for layer in layers] == ["a/naturalearth_lowres", "b/countries"]


def _process(geometries, policy=None, declared="Unknown", crs="EPSG:4326"):
    import pyproj

    policy = policy or GeometryPolicy()

    processor = GeometryProcessor(
        source_crs=pyproj.CRS.from_user_input(crs), policy=policy, declared_type=declared
    )
    wkb = pa.array(
        [None if g is None else shapely.to_wkb(g, flavor="iso") for g in geometries], pa.binary()
    )
    out, keep = processor.process(wkb, pa.array(range(len(geometries)), pa.int64()))
    return (
        [None if v is None else shapely.from_wkb(v) for v in out.to_pylist()],
        keep,
        processor.stats,
    )


def test_invalid_polygons_are_repaired_or_dropped_and_nulls_kept():
    bowtie = shapely.from_wkt("POLYGON ((0 0, 2 2, 2 0, 0 2, 0 0))")
    flat = shapely.from_wkt("POLYGON ((5 5, 6 6, 5 5, 5 5))")
    out, keep, stats = _process([bowtie, flat, None, shapely.box(0, 0, 1, 1)])
    assert keep.tolist() == [True, False, True, True]
    assert (stats.repaired, stats.dropped, stats.nulls) == (1, 1, 1)
    assert (
        out[0].geom_type == "MultiPolygon" and out[0].is_valid and out[0].area == pytest.approx(2)
    )
    assert out[2] is None and out[3].geom_type == "MultiPolygon"


def test_mixed_types_promote_polygons_and_lines_to_multi_and_keep_points():
    geoms = [
        shapely.box(0, 0, 1, 1),
        shapely.from_wkt("LINESTRING (0 0, 1 1)"),
        shapely.from_wkt("POINT (1 1)"),
    ]
    out, _, stats = _process(geoms)
    assert [g.geom_type for g in out] == ["MultiPolygon", "MultiLineString", "Point"]
    assert stats.promoted == 2


def test_reprojection_and_z_m_policy():
    point = shapely.from_wkt("POINT ZM (1113194.9 1118889.97 10 5)")
    out, _, _ = _process([point], crs="EPSG:3857")
    assert out[0].x == pytest.approx(10, abs=1e-6) and out[0].y == pytest.approx(10, abs=1e-6)
    assert out[0].has_z and out[0].z == 10
    line = shapely.from_wkt("LINESTRING ZM (0 0 1 2, 1 1 3 4)")
    assert _process([line])[0][0].has_m
    assert not _process([line], GeometryPolicy(keep_m=False))[0][0].has_m
    flat = _process([line], GeometryPolicy(keep_z=False, keep_m=False))[0][0]
    assert not flat.has_z and not flat.has_m
    with pytest.raises(ConfigurationError):
        GeometryPolicy(keep_z=False, keep_m=True)


def test_curves_are_linearized_and_written_as_geoparquet(tmp_path: Path):
    path = inputs.copy_real("curvepolygon.gpkg", tmp_path / "c.gpkg")
    (layer,) = source_layers(path, "t/c.gpkg", tmp_path, LIMITS)
    written: list[pa.RecordBatch] = []

    def write(spec, batches):
        written.extend(batches)
        return sum(b.num_rows for b in written)

    result = load_layer(layer, "t/c.gpkg", VectorOptions(), tmp_path / "c.parquet", write)
    assert (result.rows, result.stats.linearized) == (1, 1)
    geom = shapely.from_wkb(written[0].column("geom")[0].as_py())
    gdal_linear = shapely.from_wkb(pyogrio.raw.read(path)[2][0])
    assert geom.geom_type == "MultiPolygon" and geom.is_valid
    assert geom.equals(shapely.multipolygons([gdal_linear]))
    import pyarrow.parquet as pq

    exported = pq.read_table(tmp_path / "c.parquet")
    assert exported.num_rows == 1 and b"geo" in exported.schema.metadata


def test_hex_strings_match_python_hex_with_nulls_and_offsets():
    values = [b"\x01\x02", None, b"", b"\xff" * 5, b"\x00"]
    array = pa.array(values, pa.binary()).slice(0)
    expected = [None if v is None else "SRID=1;" + v.hex() for v in values]
    assert hex_strings(array, b"SRID=1;").to_pylist() == expected
    sliced = pa.array(values, pa.binary()).slice(2, 3)
    assert hex_strings(sliced, b"").to_pylist() == ["", "ff" * 5, "00"]


def test_tile_bounds():
    west, south, east, north = tile_bounds_lonlat(1, 1, 0)
    assert (west, east) == (0, 180) and south == pytest.approx(0) and north > 85
    assert np.isclose(tile_bounds_lonlat(0, 0, 0)[3], 85.0511287798)


def test_valid_batches_keep_their_bytes_and_gain_a_multi_header():
    """The byte-level promotion writes what GEOS would: one-part multis, Z and M kept."""
    kept_bytes = GeometryProcessor._as_is
    calls = []

    def spy(self, wkb, geoms, present):
        result = kept_bytes(self, wkb, geoms, present)
        calls.append(result is not None)
        return result

    GeometryProcessor._as_is = spy  # type: ignore[method-assign]
    try:
        _check_byte_level_promotion()
    finally:
        GeometryProcessor._as_is = kept_bytes  # type: ignore[method-assign]
    assert calls == [True]


def _check_byte_level_promotion():
    geoms = [
        shapely.from_wkt("POLYGON ZM ((0 0 1 5, 1 0 1 5, 1 1 1 5, 0 0 1 5))"),
        shapely.from_wkt("LINESTRING Z (0 0 1, 1 1 2)"),
        shapely.from_wkt("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))"),
        None,
        shapely.from_wkt("POINT (3 4)"),
    ]
    out, keep, stats = _process(geoms)
    assert keep.all() and stats.promoted == 2 and stats.nulls == 1
    assert out[0].wkt == "MULTIPOLYGON ZM (((0 0 1 5, 1 0 1 5, 1 1 1 5, 0 0 1 5)))"
    assert out[1].wkt == "MULTILINESTRING Z ((0 0 1, 1 1 2))"
    assert out[2].equals(geoms[2]) and out[3] is None and out[4].wkt == "POINT (3 4)"
    assert dict(stats.types) == {6: 2, 5: 1, 0: 1}


def test_a_crs_that_cannot_be_transformed_is_refused(tmp_path: Path):
    folder = tmp_path / "shp"
    folder.mkdir()
    for part in (inputs.REAL_VECTORS / "naturalearth_lowres").iterdir():
        if part.suffix in (".shp", ".shx", ".dbf"):
            (folder / part.name).write_bytes(part.read_bytes())
    (folder / "naturalearth_lowres.prj").write_text(
        'PROJCS["garbage",GEOGCS["nonsense",DATUM["x",SPHEROID["y",1,0]]],PROJECTION["Made_Up"]]'
    )
    archive = tmp_path / "garbage.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in sorted(folder.iterdir()):
            zf.write(part, part.name)
    (layer,) = source_layers(archive, "x/garbage.zip", tmp_path / "work", LIMITS)
    with pytest.raises(InvalidInputError, match="cannot be transformed"):
        load_layer(layer, "x/garbage.zip", VectorOptions(), tmp_path / "e.parquet", lambda s, b: 0)


def test_points_the_target_crs_cannot_hold_are_dropped_and_counted():
    # The antipode of Europe's equal-area projection's centre has no place in it.
    antipode = shapely.from_wkt("POINT (-170 -52)")
    policy = GeometryPolicy(target_crs="EPSG:3035")
    _, keep, stats = _process([antipode, shapely.from_wkt("POINT (10 50)")], policy)
    assert keep.tolist() == [False, True] and stats.dropped == 1
    assert dict(stats.drop_reasons) == {"outside the target CRS": 1}
