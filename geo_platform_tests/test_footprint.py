"""Footprints: the valid-data area in lon/lat, split at the antimeridian, and searches
that find it there, on both profiles."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Point, shape

from geo_platform.backends import stac_catalog
from geo_platform.ingest import ingest
from geo_platform.lib.stac.bbox import union_bbox
from geo_platform.lib.stac.footprint import raster_footprint

# A UTM 60N scene at ~50 N whose east edge passes 180 degrees (about 215 km east of
# the zone's central meridian, 177 E).
UTM60_ORIGIN = (600_000.0, 5_600_000.0)
UTM60_SIZE = 200  # pixels of 1 km


def _utm60(path: Path) -> Path:
    profile = {
        "driver": "GTiff", "width": UTM60_SIZE, "height": 100, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32660", "transform": from_origin(*UTM60_ORIGIN, 1000, 1000), "nodata": 0,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.arange(1, 20_001, dtype="uint16").reshape(100, UTM60_SIZE), 1)
    return path


@pytest.mark.unit
def test_the_geostationary_disk_is_found_where_it_is_and_not_in_the_atlantic(real_rasters):
    with rasterio.open(real_rasters / "image_geos.tif") as src:
        footprint = raster_footprint(src)
    geometry = shape(footprint["geometry"])
    assert geometry.geom_type == "MultiPolygon" and geometry.is_valid
    assert geometry.contains(Point(140.7, 0))  # the sub-satellite point
    assert geometry.contains(Point(175, 20)) and geometry.contains(Point(-178, -10))
    for outside in [(-30, 0), (20, 0), (140.7, 85), (0, 0)]:
        assert not geometry.intersects(Point(*outside)), outside
    west, south, east, north = footprint["bbox"]
    assert west > east, "the bbox crosses the antimeridian: west > east"
    assert 55 < west < 80 and -160 < east < -130 and -80 < south < -60 and 60 < north < 85


@pytest.mark.unit
def test_a_utm_scene_across_180_is_split_and_its_bbox_crosses(tmp_path):
    with rasterio.open(_utm60(tmp_path / "utm60.tif")) as src:
        footprint = raster_footprint(src)
    geometry = shape(footprint["geometry"])
    assert geometry.geom_type == "MultiPolygon" and len(geometry.geoms) == 2
    west, south, east, north = footprint["bbox"]
    assert 178 < west < 180 and -180 < east < -177 and 49 < south < north < 51
    assert geometry.contains(Point(179.5, 50.0)) and geometry.contains(Point(-179.5, 50.0))
    assert not geometry.intersects(Point(0, 50.0))
    # A small rectangle in its own CRS stays a handful of vertices after densifying.
    assert sum(len(p.exterior.coords) for p in geometry.geoms) < 60


@pytest.mark.unit
def test_the_union_of_bboxes_takes_the_short_way_round():
    assert union_bbox([[170, 0, 175, 1], [-178, 0, -175, 1]]) == [170, 0, -175, 1]
    assert union_bbox([[-10, 0, 10, 1], [20, 0, 30, 2]]) == [-10, 0, 30, 2]
    assert union_bbox([[179, -1, -179, 1], [-5, 0, 10, 0]]) == [-5.0, -1.0, -179.0, 1.0]
    assert union_bbox([]) is None


@pytest.mark.asset
def test_footprints_across_180_are_searchable_on_both_profiles(
    profile_settings, copy_real, tmp_path
):
    geos = copy_real("image_geos.tif", folder="geos")
    utm = tmp_path / "utm"
    utm.mkdir()
    _utm60(utm / "utm60.tif")
    for folder, collection in ((geos, "geos"), (utm, "utm")):
        outcomes = ingest(
            [folder], collection=collection, output_tier="analysis", settings=profile_settings
        )
        assert [o.message for o in outcomes if not o.ok] == []
    catalog = stac_catalog(profile_settings)

    def found(collection, bbox):
        return [i["id"] for i in catalog.search(collections=[collection], bbox=bbox)]

    assert found("geos", (140.6, -0.1, 140.8, 0.1)) == ["image_geos"]  # the sub-satellite point
    assert found("geos", (-178.5, -10.5, -177.5, -9.5)) == ["image_geos"]  # far side of 180
    assert found("geos", (-31, -1, -29, 1)) == []  # the Atlantic
    assert found("utm", (179.4, 49.9, 179.6, 50.1)) == ["utm60"]  # west of 180
    assert found("utm", (-179.6, 49.9, -179.4, 50.1)) == ["utm60"]  # east of 180
    assert found("utm", (-1, 49, 1, 51)) == []  # 0 degrees, at the scene's latitude
    # Search boxes across the antimeridian (west > east), as GeoJSON writes them.
    assert found("utm", (179.9, 49.9, -179.9, 50.1)) == ["utm60"]
    assert found("utm", (179.9, 10, -179.9, 11)) == []
    assert found("geos", (179.9, -30.1, -179.9, -29.9)) == ["image_geos"]
    for collection in ("geos", "utm"):
        extent = catalog.get_collection(collection)["extent"]["spatial"]["bbox"][0]
        assert extent[0] > extent[2], f"{collection}: the extent crosses 180, not the world"
