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


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS (MB) of one command; fails loudly."""
    while Path("/work/QUIET").exists():
        time.sleep(20)
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = status = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}... failed:\n{output[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def scratch(prefix: str, admin: psycopg.Connection) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


OGR2OGR = "-gt 65536 -lco GEOMETRY_NAME=geom -lco SPATIAL_INDEX=GIST --config PG_USE_COPY YES"
WARMUP = HERE.parent.parent / "shared" / "data" / "real" / "vectors" / "curve.gpkg"


def run_all(
    files: dict[str, Path], databases: list[str], prefix: str
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
                row["ogr2ogr_s"], row["ogr2ogr_mb"] = timed([*ogr, *OGR2OGR.split()], base)
            command = [*ingest, str(path), "--collection", f"b{fmt}"]
            row["ours_s"], row["ours_mb"] = timed(command, production)
            row["duckdb_s"], row["duckdb_mb"] = timed(command, embedded)
            row["load_after"] = os.getloadavg()[0]
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--formats", default="geojson,gpkg,parquet")
    args = parser.parse_args()
    files = {f: p for f, p in generate(args.features).items() if f in args.formats.split(",")}
    admin = psycopg.connect(dbname="geo_platform", autocommit=True, **PG)
    databases = [scratch("bench_vector", admin), scratch("bench_dagster", admin)]
    dsn = "postgresql://{user}:{password}@{host}:{port}/".format(**PG) + databases[0]
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    try:
        subprocess.run([BIN / "pypgstac", "migrate", "--dsn", dsn], check=True, capture_output=True)
        results = run_all(files, databases, prefix)
    finally:
        # The copies in Azurite's bronze and silver are gigabytes: never leave them behind.
        service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
        for container in service.list_containers(name_starts_with=prefix):
            service.delete_container(container.name)
        for name in databases:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))
    print(f"{args.features:,} polygons: seconds (peak MB), load average before/after")
    print("format  | ogr2ogr     | ingest PostGIS | ours/ogr2ogr features/s | ingest DuckDB")
    for fmt, r in results.items():
        ogr = f"{r['ogr2ogr_s']:.1f} ({r['ogr2ogr_mb']:.0f})" if "ogr2ogr_s" in r else "n/a"
        ratio = f"{r['ogr2ogr_s'] / r['ours_s']:.2f}x" if "ogr2ogr_s" in r else "n/a"
        print(
            f"{fmt:7} | {ogr:11} | {r['ours_s']:.1f} ({r['ours_mb']:.0f})    | {ratio:24} | "
            f"{r['duckdb_s']:.1f} ({r['duckdb_mb']:.0f})  [load {r['load_before']:.1f}"
            f"/{r['load_after']:.1f}]"
        )
    if args.formats == parser.get_default("formats"):
        out = HERE / "results" / "vector_load.json"
        out.write_text(json.dumps({"features": args.features, "results": results}, indent=2))


if __name__ == "__main__":
    main()
