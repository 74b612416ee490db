"""Which process is running a raster: two commands given the same file run it once.

Before a command runs a batch of rasters it claims their blob keys; a key another
process holds is left to that process, and the command waits for it and reports what
that process's run made of it. Claims are locks the operating system (embedded) or
PostgreSQL (production) releases when their process dies, so a killed command never
leaves a claim behind.

- embedded: one byte per key (at an offset hashed from the key) of a lock file in the
  instance folder, locked with ``fcntl`` record locks; ``F_GETLK`` names the holder.
- production: a PostgreSQL advisory lock per key in the Dagster database, on a session
  whose ``application_name`` is the holder's worker tag, so every machine sees it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from geo_platform.settings import PlatformSettings, Profile

# Record locks take off_t offsets: 62 bits of the key's hash keep them positive.
_OFFSET_BITS = 62
# Advisory locks of claims live beside the instance's own lock (one fixed id), in the
# space of 64-bit keys; a collision only makes one command wait for an unrelated key.
_ADVISORY_BITS = 63


def _key_hash(key: str, bits: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> (64 - bits)


class Claims(ABC):
    """Claims of one process on blob keys, held until released or the process ends."""

    def __init__(self, worker: str) -> None:
        self.worker = worker

    @abstractmethod
    def try_claim(self, key: str) -> str | None:
        """Claim ``key``: None if it is now this process's, else the holder's worker tag
        (``host:pid:start``; empty when it cannot be told)."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Give up a claim of this process."""

    @abstractmethod
    def wait(self, key: str) -> None:
        """Block until nobody holds ``key`` (claiming nothing)."""

    def claim(self, keys: Iterable[str]) -> dict[str, str]:
        """Claim every key that is free; the others with their holders."""
        taken = {}
        for key in keys:
            holder = self.try_claim(key)
            if holder is not None:
                taken[key] = holder
        return taken

    def release_all(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.release(key)

    @abstractmethod
    def close(self) -> None:
        """Release every claim."""


class FileClaims(Claims):
    """Record locks on one file: they belong to this process and end with it."""

    def __init__(self, path: Path, worker: str) -> None:
        super().__init__(worker)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One descriptor for the process's life: closing any descriptor of the file would
        # drop every record lock the process holds on it.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_claim(self, key: str) -> str | None:
        offset = _key_hash(key, _OFFSET_BITS)
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            return None
        except OSError:
            return self._holder(offset)

    def release(self, key: str) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _key_hash(key, _OFFSET_BITS))

    def wait(self, key: str) -> None:
        offset = _key_hash(key, _OFFSET_BITS)
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, offset)
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)

    def _holder(self, offset: int) -> str:
        from geo_platform.defs.run_worker import worker_of_pid

        # struct flock: l_type, l_whence, l_start, l_len, l_pid (native alignment).
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        answer = fcntl.fcntl(self._fd, fcntl.F_GETLK, query)
        lock_type, _, _, _, pid = struct.unpack("hhqqi", answer)
        return worker_of_pid(pid) if lock_type != fcntl.F_UNLCK else ""

    def close(self) -> None:
        os.close(self._fd)


class AdvisoryClaims(Claims):
    """PostgreSQL advisory locks of one session, named by the worker tag."""

    def __init__(self, worker: str) -> None:
        from geo_platform.instance import connect_dagster_database

        super().__init__(worker)
        # The holder is named by its connection, so every machine can see who holds a key.
        self._conn: Any = connect_dagster_database(application_name=worker[:63])

    def try_claim(self, key: str) -> str | None:
        lock = _key_hash(key, _ADVISORY_BITS)
        if self._conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()[0]:
            return None
        return self._holder(lock)

    def claim(self, keys: Iterable[str]) -> dict[str, str]:
        # One round trip for a batch: a run covers up to 100 keys.
        locks = {_key_hash(key, _ADVISORY_BITS): key for key in keys}
        rows = self._conn.execute(
            "SELECT lock, pg_try_advisory_lock(lock) FROM unnest(%s::bigint[]) AS lock",
            (list(locks),),
        ).fetchall()
        return {locks[lock]: self._holder(lock) for lock, claimed in rows if not claimed}

    def release_all(self, keys: Iterable[str]) -> None:
        locks = [_key_hash(key, _ADVISORY_BITS) for key in keys]
        self._conn.execute(
            "SELECT pg_advisory_unlock(lock) FROM unnest(%s::bigint[]) AS lock", (locks,)
        )

    def _holder(self, lock: int) -> str:
        row = self._conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
            (lock >> 32, lock & 0xFFFF_FFFF),
        ).fetchone()
        return row[0] if row else ""

    def release(self, key: str) -> None:
        self._conn.execute("SELECT pg_advisory_unlock(%s)", (_key_hash(key, _ADVISORY_BITS),))

    def wait(self, key: str) -> None:
        lock = _key_hash(key, _ADVISORY_BITS)
        self._conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
        self._conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))

    def close(self) -> None:
        self._conn.close()


def open_claims(settings: PlatformSettings, worker: str) -> Claims:
    if settings.profile is Profile.PRODUCTION:
        return AdvisoryClaims(worker)
    return FileClaims(settings.dagster_home / ".raster-claims.lock", worker)
