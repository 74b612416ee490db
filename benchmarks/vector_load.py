"""Benchmark: ``geo-platform ingest`` of 1,000,000 polygons into PostGIS (production
profile, end to end: Dagster run, table, indexes, STAC item, GeoParquet export) against
``ogr2ogr -f PostgreSQL`` (COPY, -gt 65536, GiST index built after the load), from
GeoJSON, GeoPackage and GeoParquet; the embedded profile (DuckDB) beside them.

Usage: ``.venv/bin/python benchmarks/vector_load.py [--features N]``. Each side is a whole
command in a fresh process into a scratch database; peak memory is that child's
ru_maxrss (the database server's is not counted on either side). Debian's ogr2ogr has
no Parquet driver, so its GeoParquet row is left empty. Results: stdout and
``benchmarks/results/vector_load.json``. Waits while /work/QUIET exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely
from azure.storage.blob import BlobServiceClient
from psycopg import sql

from geo_platform.settings import AZURITE_CONNECTION_STRING

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data" / "vector"
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": "5432", "user": "geo_platform", "password": "geo_platform"}


def generate(n: int) -> dict[str, Path]:
    """n small 7-vertex polygons over Europe with three attributes, in each format."""
    DATA.mkdir(parents=True, exist_ok=True)
    files = {f: DATA / f"polygons_{n}.{f}" for f in ("geojson", "gpkg", "parquet")}
    if all(p.exists() for p in files.values()):
        return files
    rng = np.random.default_rng(42)
    x, y = rng.uniform(-10, 30, n), rng.uniform(35, 60, n)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    r = rng.uniform(0.001, 0.01, n)[:, None]
    ring = np.stack([x[:, None] + r * np.cos(angles), y[:, None] + r * np.sin(angles)], axis=-1)
    ring = np.concatenate([ring, ring[:, :1]], axis=1)
    polygons = shapely.polygons(ring)
    table = pa.table(
        {
            "id": pa.array(np.arange(n), pa.int64()),
            "name": pa.array([f"parcel {i}" for i in range(n)]),
            "value": pa.array(rng.random(n)),
            "geometry": pa.array(shapely.to_wkb(polygons), pa.binary()),
        }
    )
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}},
    }
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), files["parquet"])
    for fmt, driver in (("gpkg", "GPKG"), ("geojson", "GeoJSON")):
        pyogrio.write_arrow(
            table,
            files[fmt],
            driver=driver,
            geometry_name="geometry",
            geometry_type="Polygon",
            crs="EPSG:4326",
        )
    return files


def _cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a process (and of the children it has reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], check=False, capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def services_cpu() -> dict[str, float]:
    """CPU seconds so far of Azurite and of the PostgreSQL server (its postmaster's reaped
    backends plus the live ones: other sessions' queries count too, on a shared server)."""
    postgres = _pids("^/usr/lib/postgresql/.*/bin/postgres") + _pids("^postgres: ")
    return {
        "azurite": sum(_cpu_seconds(p) for p in _pids("azurite-blob")),
        "postgres": sum(_cpu_seconds(p) for p in postgres),
    }


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds, the child's CPU seconds and peak RSS (MB), and the CPU seconds
    Azurite and PostgreSQL spent meanwhile, of one command; fails loudly."""
    while Path("/work/QUIET").exists():
        time.sleep(20)
    with tempfile.TemporaryFile() as log:
        before = services_cpu()
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        time.sleep(0.5)  # the command's database backend exits and is reaped
        after = services_cpu()
        child.returncode = status = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}... failed:\n{output[-2000:]}")
    return {
        "s": seconds,
        "mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        **{f"{k}_cpu_s": after[k] - before[k] for k in after},
    }


def scratch(prefix: str, admin: psycopg.Connection) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


OGR2OGR = "-gt 65536 -lco GEOMETRY_NAME=geom -lco SPATIAL_INDEX=GIST --config PG_USE_COPY YES"
WARMUP = HERE.parent.parent / "shared" / "data" / "real" / "vectors" / "curve.gpkg"


def run_all(
    files: dict[str, Path], databases: list[str], prefix: str, duckdb: bool = True
) -> dict[str, dict[str, float]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GEO_PLATFORM_")}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-vector-") as tmp:
        production = dict(
            base,
            GEO_PLATFORM_PROFILE="production",
            GEO_PLATFORM_PG_DATABASE=databases[0],
            GEO_PLATFORM_PG_DAGSTER_DATABASE=databases[1],
            GEO_PLATFORM_AZURE_CONTAINER_PREFIX=prefix,
            GEO_PLATFORM_DATA_DIR=f"{tmp}/prod",
            DAGSTER_HOME=f"{tmp}/prod/dh",
        )
        embedded = dict(base, GEO_PLATFORM_DATA_DIR=f"{tmp}/emb", DAGSTER_HOME=f"{tmp}/emb/dh")
        ingest = [str(BIN / "geo-platform"), "ingest"]
        # A first, untimed ingest creates the instance and schemas on both profiles.
        for env in (production, embedded):
            timed([*ingest, str(WARMUP), "--collection", "warmup"], env)
        pg = "PG:" + " ".join(f"{k}={v}" for k, v in PG.items()) + f" dbname={databases[0]}"
        for fmt, path in files.items():
            row = results.setdefault(fmt, {"load_before": os.getloadavg()[0]})
            if fmt != "parquet":
                ogr = ["ogr2ogr", "-f", "PostgreSQL", pg, str(path), "-nln", f"ogr_{fmt}"]
                measured = timed([*ogr, *OGR2OGR.split()], base)
                row.update({f"ogr2ogr_{k}": v for k, v in measured.items()})
            command = [*ingest, str(path), "--collection", f"b{fmt}"]
            row.update({f"ours_{k}": v for k, v in timed(command, production).items()})
            if duckdb:
                row.update({f"duckdb_{k}": v for k, v in timed(command, embedded).items()})
            row["load_after"] = os.getloadavg()[0]
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--formats", default="geojson,gpkg,parquet")
    parser.add_argument("--no-duckdb", action="store_true", help="PostGIS and ogr2ogr only")
    args = parser.parse_args()
    files = {f: p for f, p in generate(args.features).items() if f in args.formats.split(",")}
    admin = psycopg.connect(dbname="geo_platform", autocommit=True, **PG)
    databases = [scratch("bench_vector", admin), scratch("bench_dagster", admin)]
    dsn = "postgresql://{user}:{password}@{host}:{port}/".format(**PG) + databases[0]
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    try:
        subprocess.run([BIN / "pypgstac", "migrate", "--dsn", dsn], check=True, capture_output=True)
        results = run_all(files, databases, prefix, duckdb=not args.no_duckdb)
    finally:
        # The copies in Azurite's bronze and silver are gigabytes: never leave them behind.
        service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
        for container in service.list_containers(name_starts_with=prefix):
            service.delete_container(container.name)
        for name in databases:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))
    print(f"{args.features:,} polygons: seconds (peak MB); CPU s: command + Azurite + PostgreSQL")
    for fmt, r in results.items():
        print(f"{fmt} [load {r['load_before']:.1f}/{r['load_after']:.1f}]")
        for side in ("ogr2ogr", "ours", "duckdb"):
            if f"{side}_s" in r:
                print(
                    f"  {side:8} {r[f'{side}_s']:6.1f} s ({r[f'{side}_mb']:4.0f} MB)   CPU "
                    f"{r[f'{side}_cpu_s']:5.1f} + {r[f'{side}_azurite_cpu_s']:5.1f} + "
                    f"{r[f'{side}_postgres_cpu_s']:5.1f}"
                )
        if "ogr2ogr_s" in r:
            print(f"  ours/ogr2ogr features per second: {r['ogr2ogr_s'] / r['ours_s']:.2f}x")
    if args.formats == parser.get_default("formats") and not args.no_duckdb:
        out = HERE / "results" / "vector_load.json"
        out.write_text(json.dumps({"features": args.features, "results": results}, indent=2))


if __name__ == "__main__":
    main()
