"""Per-collection settings, from a small YAML file::

landsat:
  output_tier: analysis
drone:
  output_tier: both
mercator:
  raster:
    target_crs: EPSG:3857
landcover:
  resampling: mode      # overviews: nearest | mode | average | ... (default: chosen per raster)

(``raster:`` is described in ``geo_platform.lib.raster.options``.)
"""

from __future__ import annotations

from pathlib import Path

import yaml

from geo_platform.errors import ConfigurationError
from geo_platform.lib.partition_keys import collection_name_problem
from geo_platform.lib.raster.tiers import Tier, parse_output_tier

DEFAULT_OUTPUT_TIER = "all"


def load_collections_config(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    # rasterio (~0.5 s to import) only where a collection file is read: a vector load
    # without one need not import it.
    from geo_platform.lib.raster.cog import parse_resampling
    from geo_platform.lib.raster.options import parse_raster_options

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigurationError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigurationError(f"{path}: expected a mapping of collection -> settings")
    for collection, settings in data.items():
        if problem := collection_name_problem(str(collection)):
            raise ConfigurationError(f"{path}: collection {collection!r} {problem}")
        if "output_tier" in settings:
            try:
                parse_output_tier(str(settings["output_tier"]))
            except ValueError as e:
                raise ConfigurationError(f"{path}: collection {collection!r}: {e}") from None
        try:
            parse_raster_options(settings.get("raster"))
        except ValueError as e:
            raise ConfigurationError(f"{path}: collection {collection!r}: {e}") from None
        if "resampling" in settings:
            try:
                parse_resampling(str(settings["resampling"]))
            except ValueError as e:
                raise ConfigurationError(f"{path}: collection {collection!r}: {e}") from None
    return data


def requested_tiers(
    collection: str, run_output_tier: str | None, config: dict[str, dict]
) -> tuple[Tier, ...]:
    """The run's choice wins, then the collection's, then ``all``."""
    value = run_output_tier or config.get(collection, {}).get("output_tier") or DEFAULT_OUTPUT_TIER
    return parse_output_tier(str(value))


def configured_resampling(collection: str, config: dict[str, dict]) -> str | None:
    """The overview resampling a collection names, or None (chosen per raster)."""
    value = config.get(collection, {}).get("resampling")
    return None if value is None else str(value).strip().lower()
