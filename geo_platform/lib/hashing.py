"""Content hashes of files, streamed so large files never sit in memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Large chunks: reading and hashing release the GIL, and a hash running in a thread
# beside busy Python code waits up to 5 ms for the GIL between chunks.
_CHUNK = 16 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        # No bigger than the file: zeroing 16 MB took longer than hashing a small file.
        buffer = bytearray(min(_CHUNK, os.fstat(f.fileno()).st_size + 1))
        view = memoryview(buffer)
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def multihash_sha256(hex_digest: str) -> str:
    """The STAC file extension's ``file:checksum`` form: multihash code 0x12, length 0x20."""
    return "1220" + hex_digest
