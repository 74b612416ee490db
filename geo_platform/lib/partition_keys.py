"""Which blob keys can be Dagster partition keys."""

from __future__ import annotations

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
