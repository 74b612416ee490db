"""The three COG tiers: what they are, where they live and which rasters they apply to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from geo_platform.lib.partition_keys import output_stem


class Tier(StrEnum):
    VISUALIZATION = "visualization"
    ANALYSIS = "analysis"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class TierSpec:
    tier: Tier
    container: str
    storage_class: str
    stac_role: str
    lossless: bool


TIER_SPECS: dict[Tier, TierSpec] = {
    Tier.VISUALIZATION: TierSpec(Tier.VISUALIZATION, "silver", "hot", "visual", lossless=False),
    Tier.ANALYSIS: TierSpec(Tier.ANALYSIS, "silver", "hot", "data", lossless=True),
    Tier.ARCHIVE: TierSpec(Tier.ARCHIVE, "archive", "cool", "archive", lossless=True),
}

OUTPUT_TIER_CHOICES: dict[str, tuple[Tier, ...]] = {
    "visualization": (Tier.VISUALIZATION,),
    "analysis": (Tier.ANALYSIS,),
    "archive": (Tier.ARCHIVE,),
    "both": (Tier.VISUALIZATION, Tier.ANALYSIS),
    "all": (Tier.VISUALIZATION, Tier.ANALYSIS, Tier.ARCHIVE),
}


def parse_output_tier(value: str) -> tuple[Tier, ...]:
    """Tiers named by an ``output_tier`` value; a clear error for anything else."""
    try:
        return OUTPUT_TIER_CHOICES[value.strip().lower()]
    except KeyError:
        choices = " | ".join(OUTPUT_TIER_CHOICES)
        raise ValueError(f"output_tier {value!r} is not one of {choices}") from None


def tier_blob_key(tier: Tier, blob_key: str) -> str:
    """Where a tier of a source lives in its container: a pure, one-to-one function of the
    blob key.

    ``landsat/2024/scene.tif`` -> ``landsat/2024/scene.analysis.tif``; ``scene.png`` ->
    ``scene.png.analysis.tif`` (see ``output_stem``: two keys never share a tier). The
    tier is in the name so that visualization and analysis can share ``silver``.
    """
    return f"{output_stem(blob_key)}.{tier.value}.tif"


COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass(frozen=True)
class TierRef:
    """What downstream assets get for a stored tier: where it is and what it holds, no pixels."""

    tier: Tier
    href: str
    gdal_path: str
    size_bytes: int
    sha256: str
    # Checksum of the source the tier was made from (None: stored before it was recorded).
    source_sha256: str | None = None
