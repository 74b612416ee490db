"""Item ids and collection ids: pure functions of the blob key."""

from __future__ import annotations

DEFAULT_COLLECTION = "default"
_DROPPED_SUFFIXES = (".tif", ".tiff", ".TIF", ".TIFF")


def collection_id(blob_key: str) -> str:
    """The first path segment of the blob key; keys at the top level go to ``default``."""
    head, sep, _ = blob_key.partition("/")
    return head if sep else DEFAULT_COLLECTION


def item_id(blob_key: str) -> str:
    """The rest of the key with folders joined by ``__`` and a GeoTIFF suffix dropped.

    ``landsat/2024/scene_001.tif`` -> ``2024__scene_001`` in collection ``landsat``.
    """
    _, sep, rest = blob_key.partition("/")
    rest = rest if sep else blob_key
    for suffix in _DROPPED_SUFFIXES:
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
            break
    return rest.replace("/", "__")
