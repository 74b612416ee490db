"""Item ids and collection ids: pure functions of the blob key, one-to-one.

``landsat/2024/scene_001.tif`` -> collection ``landsat``, item ``2024~scene_001``: the key
after its collection, without a final ``.tif`` (see ``output_stem``), each ``/`` written
``~``. Two distinct keys never share an id: the few characters that would make the
spelling ambiguous are escaped (``~`` as ``!7E``, ``!`` as ``!21``).
"""

from __future__ import annotations

from geo_platform.lib.partition_keys import output_stem

DEFAULT_COLLECTION = "default"
# A prefix-free code: "~" is only ever a folder separator, "!" only ever starts an escape.
_SPELLING = {"/": "~", "~": "!7E", "!": "!21"}


def collection_id(blob_key: str) -> str:
    """The first path segment of the blob key; keys at the top level go to ``default``."""
    head, sep, _ = blob_key.partition("/")
    return head if sep else DEFAULT_COLLECTION


def item_id(blob_key: str) -> str:
    """The key after its collection, without a final ``.tif``, folders joined by ``~``."""
    _, sep, rest = blob_key.partition("/")
    stem = output_stem(rest if sep else blob_key)
    return "".join(_SPELLING.get(char, char) for char in stem)
