import shutil
from pathlib import Path

import pytest

from geo_platform.errors import InvalidInputError
from geo_platform.lib.raster.validate import human_bytes, validate_raster
from geo_platform.settings import LimitSettings

from . import bad_inputs
from .conftest import REAL_RASTER_TIERS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(REAL_RASTER_TIERS))
def test_real_rasters_get_the_right_tiers(real_rasters: Path, name: str):
    info = validate_raster(real_rasters / name, LimitSettings())
    assert {tier for tier, ok in info.applicable.items() if ok} == REAL_RASTER_TIERS[name]
    assert len(info.sha256) == 64
    if "visualization" not in REAL_RASTER_TIERS[name]:
        assert "3-band uint8" in info.reasons["visualization"]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d, r: bad_inputs.zero_bytes(d / "empty.tif"), "empty file"),
        (lambda d, r: bad_inputs.not_an_image(d / "readings.tif"), "not a readable raster"),
        (lambda d, r: bad_inputs.no_crs(d / "nocrs.tif"), "no CRS"),
        (lambda d, r: bad_inputs.huge_header(d / "huge.tif"), "over the limit"),
        (lambda d, r: shutil.copy(r / "nontiff.jpg", d / "nontiff.jpg"), "not georeferenced"),
        (
            lambda d, r: bad_inputs.truncated_geotiff(r / "image_rgb.tif", d / "cut.tif"),
            "truncated or corrupt",
        ),
        (lambda d, r: shutil.copy(r / "slc.tif", d / "slc.tif"), "ground control points"),
    ],
)
def test_bad_input_is_rejected_naming_file_and_problem(tmp_path, real_rasters, make, problem):
    path = Path(make(tmp_path, real_rasters))
    before = path.read_bytes()
    with pytest.raises(InvalidInputError) as raised:
        validate_raster(path, LimitSettings(), name=f"bronze/x/{path.name}")
    assert str(raised.value).startswith(f"bronze/x/{path.name}: ")
    assert problem in str(raised.value)
    assert path.read_bytes() == before, "validation must never modify the source"


def test_pixel_limit_is_checked_before_reading(tmp_path):
    path = bad_inputs.huge_header(tmp_path / "huge.tif")
    assert path.stat().st_size < 100_000
    with pytest.raises(InvalidInputError, match="1,000,000,000,000 pixels"):
        validate_raster(path, LimitSettings())


def test_limits_come_from_settings(real_rasters, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_LIMIT_MAX_PIXELS", "1000")
    with pytest.raises(InvalidInputError, match="over the limit of 1,000"):
        validate_raster(real_rasters / "image_rgb.tif", LimitSettings())


def test_decoded_bytes_are_limited_as_well_as_pixels(tmp_path, monkeypatch):
    """A sparse 30,000² float32 file is 40 kB on disk and 3.4 GiB decoded: under the pixel
    limit, it is the bytes that its tiers decode into memory and scratch disk."""
    path = bad_inputs.sparse_float32(tmp_path / "sparse.tif", 30_000)
    assert path.stat().st_size < 100_000
    info = validate_raster(path, LimitSettings())
    assert (info.width, info.height, info.dtype) == (30_000, 30_000, "float32")

    monkeypatch.setenv("GEO_PLATFORM_LIMIT_MAX_DECODED_BYTES", str(2 * 1024**3))
    with pytest.raises(InvalidInputError) as raised:
        validate_raster(path, LimitSettings(), name="bronze/big/sparse.tif")
    assert str(raised.value) == (
        "bronze/big/sparse.tif: decodes to 3.4 GiB (30,000 x 30,000 pixels x 1 band of "
        "float32), over the limit of 2.0 GiB (GEO_PLATFORM_LIMIT_MAX_DECODED_BYTES)"
    )


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1,023 B"),
        (1536, "1.5 KiB"),
        (8 * 1024**3, "8.0 GiB"),
        (5 * 1024**5, "5,120.0 TiB"),
    ],
)
def test_sizes_in_messages_are_human(size, shown):
    assert human_bytes(size) == shown
