"""Claims on blob keys: held by one process, visible to the others with their holder,
and gone when the holder dies, however it dies."""

import os
import signal
import subprocess
import sys
import time

import pytest

from geo_platform.claims import AdvisoryClaims, Claims, FileClaims
from geo_platform.defs.run_worker import this_worker, worker_of_pid

pytestmark = pytest.mark.unit

HOLDER = """
import sys, time
from pathlib import Path
from geo_platform.claims import AdvisoryClaims, FileClaims
from geo_platform.defs.run_worker import this_worker
kind, path = sys.argv[1:]
claims = FileClaims(Path(path), this_worker()) if kind == "file" else AdvisoryClaims(this_worker())
assert claims.try_claim("c/held.tif") is None
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture(params=["file", pytest.param("advisory", marks=pytest.mark.integration)])
def kind(request, tmp_path, monkeypatch):
    if request.param == "advisory":
        database = request.getfixturevalue("dagster_database")
        monkeypatch.setenv("GEO_PLATFORM_PG_DAGSTER_DATABASE", database)
    return request.param


def _claims(kind: str, path) -> Claims:
    return FileClaims(path, this_worker()) if kind == "file" else AdvisoryClaims(this_worker())


def test_a_claim_names_its_holder_and_dies_with_it(kind, tmp_path):
    path = tmp_path / "claims.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        claims = _claims(kind, path)
        assert claims.try_claim("c/held.tif") == worker_of_pid(holder.pid)
        assert claims.claim(["c/free.tif", "c/held.tif"]) == {
            "c/held.tif": worker_of_pid(holder.pid)
        }
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # PostgreSQL ends the dead client's session (and its locks) a moment later.
    deadline = time.monotonic() + 20
    while claims.try_claim("c/held.tif") is not None:
        assert time.monotonic() < deadline, "the claim outlived its process"
        time.sleep(0.1)
    claims.release("c/held.tif")
    claims.wait("c/held.tif")  # free: returns at once
    claims.release("c/free.tif")
    claims.close()
