"""The three COG tiers: what they are, where they live and which rasters they apply to."""

from __future__ import annotations

import re
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


# Hex digits of a tier's own SHA-256 in its blob name.
VERSION_CHARS = 12
_VERSION = re.compile(rf"[0-9a-f]{{{VERSION_CHARS}}}\.tif")


def tier_blob_key(tier: Tier, blob_key: str, sha256: str) -> str:
    """Where a version of a tier of a source lives in its container: named after the blob
    key (one-to-one) and the tier's own content.

    ``landsat/2024/scene.tif`` -> ``landsat/2024/scene.analysis.<sha256[:12]>.tif``;
    ``scene.png`` -> ``scene.png.analysis.<...>.tif`` (see ``output_stem``: two keys never
    share a tier). The tier is in the name so that visualization and analysis can share
    ``silver``. A new version gets a new name, so replacing a raster's tiers is atomic for
    readers: the item points at the old files until it points at the new ones, and the
    old ones are removed after that.
    """
    return f"{tier_versions_prefix(tier, blob_key)}{sha256[:VERSION_CHARS]}.tif"


def tier_versions_prefix(tier: Tier, blob_key: str) -> str:
    return f"{output_stem(blob_key)}.{tier.value}."


def is_tier_version(tier: Tier, blob_key: str, candidate: str) -> bool:
    """Whether ``candidate`` names a version of this tier of ``blob_key`` (and of no other
    key: what follows the prefix is exactly a version)."""
    prefix = tier_versions_prefix(tier, blob_key)
    return candidate.startswith(prefix) and bool(_VERSION.fullmatch(candidate[len(prefix) :]))


# The item's thumbnail lives beside the silver tiers, versioned like them.
THUMBNAIL_CONTAINER = "silver"
_THUMBNAIL_VERSION = re.compile(rf"[0-9a-f]{{{VERSION_CHARS}}}\.png")


def thumbnail_blob_key(blob_key: str, sha256: str) -> str:
    """Where a version of the thumbnail of a source lives: ``<stem>.thumbnail.<sha12>.png``
    (named like the tiers, after the PNG's own checksum)."""
    return f"{thumbnail_versions_prefix(blob_key)}{sha256[:VERSION_CHARS]}.png"


def thumbnail_versions_prefix(blob_key: str) -> str:
    return f"{output_stem(blob_key)}.thumbnail."


def is_thumbnail_version(blob_key: str, candidate: str) -> bool:
    """Whether ``candidate`` names a version of the thumbnail of ``blob_key``."""
    prefix = thumbnail_versions_prefix(blob_key)
    return candidate.startswith(prefix) and bool(
        _THUMBNAIL_VERSION.fullmatch(candidate[len(prefix) :])
    )


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
    # How its overviews were resampled (None: stored before it was recorded).
    overview_resampling: str | None = None
