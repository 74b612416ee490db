import copy
import datetime as dt
import shutil

import pytest
import rasterio

from geo_platform.lib.h3.item import build_grid_item
from geo_platform.lib.raster.cog import write_cog_tiers
from geo_platform.lib.raster.tiers import (
    Tier,
    TierRef,
    is_thumbnail_version,
    is_tier_version,
    thumbnail_blob_key,
    tier_blob_key,
)
from geo_platform.lib.stac.collection import (
    CollectionAggregate,
    TierAggregate,
    extend_collection,
    new_collection,
    summary_from_aggregate,
)
from geo_platform.lib.stac.ids import collection_id, item_id
from geo_platform.lib.stac.item import build_item
from geo_platform.lib.stac.validation import validate_item
from geo_platform.lib.vector.item import build_vector_item
from geo_platform.settings import PriceSettings

from .conftest import REAL_RASTER_TIERS

pytestmark = pytest.mark.unit
FALLBACK = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def _item(real_rasters, tmp_path, name):
    tiers = [Tier(t) for t in REAL_RASTER_TIERS[name]]
    cogs = write_cog_tiers(real_rasters / name, tiers, tmp_path)
    refs = [TierRef(t, str(c.path), str(c.path), c.size_bytes, c.sha256) for t, c in cogs.items()]
    item = build_item(
        str(cogs[Tier.ANALYSIS].path),
        f"real/{name}",
        refs,
        source_sha256="0" * 64,
        fallback_datetime=FALLBACK,
    )
    return item, cogs


def test_ids_are_pure_functions_of_the_blob_key():
    assert collection_id("landsat/2024/scene_001.tif") == "landsat"
    assert item_id("landsat/2024/scene_001.tif") == "2024~scene_001"
    assert collection_id("loose.tif") == "default" and item_id("loose.tif") == "loose"


TRICKY_KEYS = [
    "c/a.tif", "c/a.tiff", "c/a.TIF", "c/a.TIFF", "c/a.png", "c/a.jp2", "c/a.tiff.tif",
    "c/a.png.tif", "x/b__c.tif", "x/b/c.tif", "x/b~c.tif", "x/b!c.tif", "x/b/~c.tif",
    "x/b~/c.tif", "x/b!7Ec.tif", "x/b!217Ec.tif", "x/.tif", "x/a.tif.tif",
]  # fmt: skip


def test_no_two_blob_keys_share_an_item_id_or_a_tier_blob():
    import random

    rng = random.Random(7)
    alphabet = ["a", "b", "_", "__", "/", "~", "!", "!7E", "!21", ".tif", ".tiff", ".TIF"]
    keys = set(TRICKY_KEYS)
    while len(keys) < 5000:
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        key = f"c/{name}{rng.choice(['.tif', '.tiff', '.TIF', '.png'])}"
        if "//" not in key and not key.startswith("c//"):
            keys.add(key)
    ids = {(collection_id(key), item_id(key)) for key in keys}
    assert len(ids) == len(keys)
    sha = "0123456789ab" + "0" * 52
    for tier in Tier:
        assert len({tier_blob_key(tier, key, sha) for key in keys}) == len(keys)
    # Tiers sharing a container never take each other's names either.
    silver = [tier_blob_key(t, k, sha) for k in keys for t in (Tier.VISUALIZATION, Tier.ANALYSIS)]
    assert len(set(silver)) == len(silver)
    # Nor does one key's version read as a version of another key's tier (what
    # removes old versions would delete it).
    sample = sorted(keys)[:300]
    for name in silver[:600]:
        owners = [(t, k) for k in sample for t in Tier if is_tier_version(t, k, name)]
        assert len(owners) <= 1, (name, owners)
    # Thumbnails (silver too) are one per key, and never read as another key's.
    thumbnails = [thumbnail_blob_key(k, sha) for k in keys]
    assert len(set(thumbnails) | set(silver)) == len(thumbnails) + len(silver)
    for name in thumbnails[:600]:
        assert sum(is_thumbnail_version(k, name) for k in sample) <= 1, name
    bronze_named_like_a_tier = "c/a.analysis.0123456789ab.tif"
    own = tier_blob_key(Tier.ANALYSIS, bronze_named_like_a_tier, sha)
    assert not is_tier_version(Tier.ANALYSIS, "c/a.tif", own)
    assert is_tier_version(Tier.ANALYSIS, "c/a.tif", tier_blob_key(Tier.ANALYSIS, "c/a.tif", sha))


@pytest.mark.parametrize("name", sorted(REAL_RASTER_TIERS))
def test_items_of_real_rasters_validate(real_rasters, tmp_path, name):
    item, cogs = _item(real_rasters, tmp_path, name)
    assert validate_item(item) == []
    assert set(item["assets"]) == REAL_RASTER_TIERS[name]
    for tier, cog in cogs.items():
        asset = item["assets"][tier.value]
        assert asset["file:size"] == cog.size_bytes
        assert asset["file:checksum"] == "1220" + cog.sha256
    west, south, east, north = item["bbox"]
    assert -180 <= west <= 180 and -180 <= east <= 180 and -90 <= south < north <= 90
    # Only the geostationary disk (seen from 140.7 E) reaches across 180 degrees.
    assert (west > east) == (name == "image_geos.tif")


def test_datetime_comes_from_the_source_else_the_fallback_and_says_which(real_rasters, tmp_path):
    geos, _ = _item(real_rasters, tmp_path / "g", "image_geos.tif")
    assert geos["properties"]["datetime"] == "2022-02-05T00:00:20Z"
    assert geos["properties"]["geo_platform:datetime_source"] == "TIFFTAG_DATETIME"
    rgb, _ = _item(real_rasters, tmp_path / "r", "image_rgb.tif")
    assert rgb["properties"]["datetime"] == "2024-05-01T00:00:00Z"
    assert rgb["properties"]["geo_platform:datetime_source"] == "blob last modified"
    # Read from the source, not the tier: a tier without the tag does not lose the date.
    dated = tmp_path / "dated.tif"
    shutil.copy2(real_rasters / "image_rgb.tif", dated)
    with rasterio.open(dated, "r+") as src:
        src.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="2021-06-30T10:11:12Z")
    cogs = write_cog_tiers(real_rasters / "image_rgb.tif", [Tier.ANALYSIS], tmp_path / "d")
    ref = TierRef(Tier.ANALYSIS, "a", "a", 1, "0" * 64)
    item = build_item(
        str(cogs[Tier.ANALYSIS].path), "d/a.tif", [ref], source_sha256="0" * 64,
        fallback_datetime=FALLBACK, source_path=str(dated),
    )  # fmt: skip
    assert item["properties"]["datetime"] == "2021-06-30T10:11:12Z"
    assert item["properties"]["geo_platform:datetime_source"] == "IMAGERY:ACQUISITIONDATETIME"


def test_band_statistics_count_valid_pixels_and_gsd_is_given_where_projected(
    real_rasters, tmp_path
):
    rgb, _ = _item(real_rasters, tmp_path / "r", "image_rgb.tif")
    for band in rgb["assets"]["analysis"]["raster:bands"]:
        assert band["statistics"]["valid_percent"] == 100.0  # fully valid, not 0.0004
    nodata, _ = _item(real_rasters, tmp_path / "n", "image_nodata.tif")
    with rasterio.open(real_rasters / "image_nodata.tif") as src:
        data = src.read(1, masked=True)
        valid = 100 * data.count() / data.size
    (band,) = nodata["assets"]["analysis"]["raster:bands"]
    assert band["nodata"] == -9999
    assert band["statistics"]["valid_percent"] == pytest.approx(valid, abs=0.01)
    assert band["statistics"]["minimum"] == data.min()
    assert nodata["properties"]["gsd"] == 300.0  # metres, Lambert conformal conic
    nan, _ = _item(real_rasters, tmp_path / "f", "image_nan.tif")
    assert "gsd" not in nan["properties"]  # degrees: no ground sample distance
    (band,) = nan["assets"]["analysis"]["raster:bands"]
    assert band["nodata"] == "nan" and 0 < band["statistics"]["valid_percent"] < 100


def test_validation_reports_what_is_wrong(real_rasters, tmp_path):
    item, _ = _item(real_rasters, tmp_path, "image_rgb.tif")
    assert {uri.split("/")[3] for uri in item["stac_extensions"]} == {
        "projection",
        "raster",
        "file",
    }
    broken = copy.deepcopy(item)
    del broken["properties"]["datetime"]
    broken["assets"]["analysis"]["file:size"] = "big"
    broken["assets"]["analysis"]["raster:bands"][0]["data_type"] = "uint9"
    broken["properties"]["proj:shape"] = [512]
    problems = validate_item(broken)
    assert any("datetime" in p for p in problems)
    assert any(p.startswith("file: assets/analysis/file:size") for p in problems)
    assert any(p.startswith("raster: assets/analysis/raster:bands/0/data_type") for p in problems)
    assert any(p.startswith("projection: properties/proj:shape") for p in problems)
    # The geometry is checked by the catalogs' rule, not only the schema's structure.
    for coordinates, problem in (
        ([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], "not closed"),
        ([[[0.0, 0.0], [1.0, 0.0], [1.0, 95.0], [0.0, 0.0]]], "latitude"),
        ([[0.0, 0.0], [1.0, 0.0]], "polygon ring with 2 positions"),
    ):
        bad_geometry = copy.deepcopy(item)
        bad_geometry["geometry"] = {"type": "Polygon", "coordinates": coordinates}
        [found] = validate_item(bad_geometry)
        assert found.startswith("schema: geometry: ") and problem in found, found
    unknown = copy.deepcopy(item)
    unknown["stac_extensions"].append("https://stac-extensions.github.io/eo/v1.1.0/schema.json")
    assert validate_item(unknown) == [
        "extension https://stac-extensions.github.io/eo/v1.1.0/schema.json: "
        "no bundled schema, it cannot be validated"
    ]


def test_vector_and_h3_items_validate_against_their_extensions():
    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    record = {
        "table": "roads", "footprint": {"type": "Point", "coordinates": [6.0, 46.0]},
        "bbox": [6.0, 46.0, 6.0, 46.0], "geometry_types": ["Point"], "srid": 4326,
        "columns": [{"name": "name", "type": "string", "source": "name", "why": None}],
        "rows": 3,
    }  # fmt: skip
    vector = build_vector_item(
        "v/roads.geojson", record, source_sha256="0" * 64, loaded_at=when, table_location="t"
    )
    export = {"href": "gold/h3.parquet", "size": 10, "sha256": "0" * 64}
    grid = build_grid_item(
        resolution=2, base_cell=None, rows=5, table_location="t", export=export, created=when
    )
    for item in (vector, grid):
        assert any("/table/" in uri for uri in item["stac_extensions"])
        assert validate_item(item) == []
        item["properties"]["table:row_count"] = "many"
        assert any(p.startswith("table: properties/table:row_count") for p in validate_item(item))


def test_collection_summary_has_extent_and_cost_per_tier():
    aggregate = CollectionAggregate(
        items=2,
        bbox=(170.0, -10.0, -170.0, 5.0),
        start="2024-01-01T00:00:00Z",
        end="2024-02-01T00:00:00Z",
        epsg=(32660,),
        tiers={
            "analysis": TierAggregate(2, 3_000_000, "hot"),
            "archive": TierAggregate(2, 4_000_000_000, "cool"),
        },
    )
    prices = PriceSettings(hot_per_gb_month=1.0, cool_per_gb_month=0.5)
    collection, report = summary_from_aggregate(new_collection("real"), aggregate, prices)
    assert collection["extent"]["spatial"]["bbox"] == [[170.0, -10.0, -170.0, 5.0]]
    assert collection["extent"]["temporal"]["interval"] == [
        ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"]
    ]
    assert collection["summaries"] == {
        "geo_platform:tiers": ["analysis", "archive"],
        "proj:epsg": [32660],
    }
    assert report["items"] == 2
    assert report["tiers"]["archive"] == {
        "items": 2,
        "bytes": 4_000_000_000,
        "cost_per_month_usd": 2.0,
    }
    assert report["tiers"]["analysis"]["cost_per_month_usd"] == pytest.approx(0.003)


def test_a_collection_extent_grows_across_the_antimeridian_only_when_shorter():
    def item(bbox):
        return {"bbox": bbox, "properties": {"datetime": "2024-01-01T00:00:00Z"}, "assets": {}}

    grown = extend_collection(
        new_collection("c"), [item([170, 0, 175, 1]), item([-178, 2, -175, 3])]
    )
    assert grown["extent"]["spatial"]["bbox"] == [[170.0, 0.0, -175.0, 3.0]]
    across = extend_collection(grown, [item([179, -1, -179, 0])])
    assert across["extent"]["spatial"]["bbox"] == [[170.0, -1.0, -175.0, 3.0]]
    wide = extend_collection(new_collection("c"), [item([-10, 0, 10, 1]), item([100, 0, 110, 1])])
    assert wide["extent"]["spatial"]["bbox"] == [[-10.0, 0.0, 110.0, 1.0]]
