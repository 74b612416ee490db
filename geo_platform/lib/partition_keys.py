"""The one rule for blob keys (they are Dagster partition keys too) and collection names,
on both profiles: ``blob_key_problem`` and ``collection_name_problem``; the blob stores,
ingest, the sensor and reconciliation all ask them."""

from __future__ import annotations

from collections.abc import Collection, Iterable

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".png", ".jpg", ".jpeg")
# Dagster uses these to write partition ranges and lists.
_FORBIDDEN = ("...", "|", ",")


# Azure's limit on blob names, in bytes of UTF-8.
MAX_KEY_BYTES = 1024


def blob_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a blob (and a partition), or None if it can: a relative
    path of ``/``-separated segments, none of them empty, ``.`` or ``..`` (that would
    escape its container or fold into another key), no backslash (Azure and Windows tools
    read it as a separator), within Azure's length, and a valid Dagster partition key."""
    return storage_key_problem(key) or partition_key_problem(key)


def storage_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a stored blob, or None: the part of ``blob_key_problem``
    that keeps a blob inside its container and apart from others. Derived outputs may use
    what only partition keys forbid (``,``): a raster's tiles live under
    ``<stem>,tiles/``, a folder no bronze key can reach."""
    if not key:
        return "is empty"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    if "\\" in key:
        return "contains a backslash; use '/' between folders"
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        return "has an empty, '.' or '..' path segment"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "contains a control character"
    return None


def collection_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a collection (the first segment of its keys), or None."""
    if "/" in name:
        return "has a '/': a collection is one path segment"
    return blob_key_problem(name)


def partition_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a Dagster partition key, or None if it can."""
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
