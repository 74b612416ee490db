"""Where the tiers of a test raster were stored: found by listing, not by the naming code
under test (``<stem>.<tier>.<12 hex digits of the tier's SHA-256>.tif``)."""

import re
from pathlib import Path

from geo_platform.resources.blob_store import BlobStore

CONTAINERS = {"visualization": "silver", "analysis": "silver", "archive": "archive"}
_VERSION = re.compile(r"[0-9a-f]{12}\.tif")


def _prefix(key: str, tier: str) -> str:
    # Outputs of a.tif are named after a, those of a.jpg after a.jpg (the README's rule;
    # test keys avoid its corner cases, such as a.png.tif).
    assert key.count(".") == 1, key
    return f"{key.removesuffix('.tif')}.{tier}."


def tier_blobs(store: BlobStore, key: str, tier: str) -> list[tuple[str, str]]:
    """(container, blob key) of every stored version of a tier of ``bronze/<key>``."""
    container, prefix = CONTAINERS[tier], _prefix(key, tier)
    return [
        (container, blob.key)
        for blob in store.list_blobs(container, prefix)
        if _VERSION.fullmatch(blob.key[len(prefix) :])
    ]


def thumbnail_blobs(store: BlobStore, key: str) -> list[tuple[str, str]]:
    """(container, blob key) of every stored version of the thumbnail of ``bronze/<key>``
    (``<stem>.thumbnail.<12 hex digits>.png`` in silver)."""
    prefix = _prefix(key, "thumbnail")
    return [
        ("silver", blob.key)
        for blob in store.list_blobs("silver", prefix)
        if re.fullmatch(r"[0-9a-f]{12}\.png", blob.key[len(prefix) :])
    ]


def tier_blob(store: BlobStore, key: str, tier: str) -> tuple[str, str]:
    """The one stored version of a tier of ``bronze/<key>``."""
    found = tier_blobs(store, key, tier)
    assert len(found) == 1, f"{key} {tier}: {found}"
    return found[0]


def tier_files(blob_root: Path, key: str, tier: str) -> list[Path]:
    """The files of a tier's versions on the embedded profile's blob folders."""
    prefix = _prefix(key, tier)
    folder = blob_root / CONTAINERS[tier]
    return sorted(
        path
        for path in folder.glob(f"{prefix}*.tif")
        if _VERSION.fullmatch(path.relative_to(folder).as_posix()[len(prefix) :])
    )


def tier_file(blob_root: Path, key: str, tier: str) -> Path:
    found = tier_files(blob_root, key, tier)
    assert len(found) == 1, f"{key} {tier}: {found}"
    return found[0]
