"""Content hashes of files, streamed so large files never sit in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 8 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def multihash_sha256(hex_digest: str) -> str:
    """The STAC file extension's ``file:checksum`` form: multihash code 0x12, length 0x20."""
    return "1220" + hex_digest
