import shutil
from pathlib import Path

import dagster as dg
import pytest

from geo_platform.settings import PlatformSettings

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

# Real rasters that must go all the way through, and the tiers each must get.
REAL_RASTER_TIERS = {
    "image_rgb.tif": {"visualization", "analysis", "archive"},
    "image_rgba.tif": {"visualization", "analysis", "archive"},
    "image_rgb_mask.tif": {"visualization", "analysis", "archive"},
    "image_nodata.tif": {"analysis", "archive"},
    "image_missing_nodata.tif": {"analysis", "archive"},
    "image_float.tif": {"analysis", "archive"},
    "image_nan.tif": {"analysis", "archive"},
    "image_colormap.tif": {"analysis", "archive"},
    "image_geos.tif": {"visualization", "analysis", "archive"},
    "image_with_offsets.tif": {"analysis", "archive"},
    "image_web.tif": {"visualization", "analysis", "archive"},
    "image_2000px.tif": {"visualization", "analysis", "archive"},
}


@pytest.fixture(scope="session")
def real_rasters() -> Path:
    folder = REAL_DATA / "rasters"
    if not folder.is_dir():
        pytest.skip(f"real test data not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def real_stac() -> Path:
    folder = REAL_DATA / "stac"
    if not folder.is_dir():
        pytest.skip(f"real test data not found at {folder}")
    return folder


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    """An embedded platform of its own: data folder and Dagster instance under tmp_path."""
    data_dir = tmp_path / "platform"
    monkeypatch.setenv("GEO_PLATFORM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))
    monkeypatch.delenv("GEO_PLATFORM_COLLECTIONS_FILE", raising=False)
    return PlatformSettings()


@pytest.fixture
def copy_real(real_rasters: Path, tmp_path: Path):
    """Copies of real rasters (never the shared originals) in a folder of their own."""

    def _copy(*names: str, folder: str = "inputs") -> Path:
        target = tmp_path / folder
        target.mkdir(exist_ok=True)
        for name in names:
            shutil.copy2(real_rasters / name, target / name)
        return target

    return _copy


@pytest.fixture
def instance(settings: PlatformSettings) -> dg.DagsterInstance:
    from geo_platform.instance import get_instance

    return get_instance(settings)
