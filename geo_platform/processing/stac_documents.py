"""Collections published as JSON blobs, where their items' collection links point."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from geo_platform.lib.stac.collection import (
    COLLECTION_DOCUMENTS_CONTAINER,
    collection_document,
    collection_document_key,
)
from geo_platform.resources.blob_store import BlobStore


def collection_href(store: BlobStore, collection_id: str) -> str:
    """Where the document of a collection is (and its items' collection link points)."""
    return store.href(COLLECTION_DOCUMENTS_CONTAINER, collection_document_key(collection_id))


def publish_collection(
    store: BlobStore, collection: dict[str, Any], scratch: Path | None = None
) -> str:
    """Store the catalog's ``collection`` as its document (replacing the previous one);
    returns its href."""
    key = collection_document_key(collection["id"])
    document = collection_document(collection, collection_href(store, collection["id"]))
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="collection-") as tmp:
        path = Path(tmp) / "collection.json"
        path.write_text(json.dumps(document, indent=2))
        store.upload_file(path, COLLECTION_DOCUMENTS_CONTAINER, key, consume=True)
    return collection_href(store, collection["id"])
