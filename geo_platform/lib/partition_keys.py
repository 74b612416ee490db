"""Which blob keys can be Dagster partition keys."""

from __future__ import annotations

from collections.abc import Collection, Iterable

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".png", ".jpg", ".jpeg")
# Dagster uses these to write partition ranges and lists.
_FORBIDDEN = ("...", "|", ",")


def partition_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a partition key, or None if it can."""
    for token in _FORBIDDEN:
        if token in key:
            return f"contains {token!r}, which Dagster reserves in partition keys"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "contains a control character"
    if key != key.strip():
        return "starts or ends with white space"
    return None


def is_raster_key(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return not name.startswith(".") and name.lower().endswith(RASTER_SUFFIXES)


def output_stem(key: str) -> str:
    """What a raster's outputs are named after: the key without a final ``.tif``, unless
    what is left would itself read as a raster name (``a.tiff.tif`` keeps it whole).

    One-to-one over raster keys: ``a.tif`` -> ``a``, while ``a.tiff``, ``a.TIF`` and
    ``a.png`` keep their suffix and so stay apart from it and from each other.
    """
    stem = key.removesuffix(".tif")
    name = stem.rsplit("/", 1)[-1]
    if stem != key and name and not name.lower().endswith(RASTER_SUFFIXES):
        return stem
    return key


def contiguous_batches(
    ordered: Iterable[str], wanted: Collection[str], size: int
) -> list[list[str]]:
    """``wanted`` keys cut into runs of at most ``size`` keys that are contiguous in
    ``ordered`` (the order Dagster stores dynamic partitions in).

    A run over a partition range covers every key between its ends: a batch must not
    straddle a key that is not wanted.
    """
    batches: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in wanted:
            current.append(key)
            if len(current) == size:
                batches.append(current)
                current = []
        elif current:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches
