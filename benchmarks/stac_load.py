"""``geo-platform stac load`` vs ``pypgstac load items``: 100,000 items on pgSTAC and DuckDB.

.venv/bin/python benchmarks/stac_load.py [--items 100000] [--repeat 5]"""

import itertools
import shutil
import subprocess
from pathlib import Path

import harness as h
import orjson
import psycopg
from psycopg import sql

from geo_platform.settings import get_postgres_settings

# Beside the repository, as for the tests (geo_platform_tests/conftest.py).
REAL_STAC = h.ROOT.parent / "shared" / "data" / "real" / "stac"
PREFIX = "bench_stac_"  # scratch databases, dropped at the end and at the next start
_numbers = itertools.count()


def stac_items(count: int, source: Path = REAL_STAC) -> tuple[Path, Path]:
    """NDJSON of ``count`` items of collection ``naip-bench``, and the collection's JSON:
    the real NAIP items copied as often as needed, with new ids ``<id>-c<copy>``."""
    items, collection = h.DATA / "stac" / f"naip-{count}.ndjson", h.DATA / "stac" / "naip.json"
    items.parent.mkdir(parents=True, exist_ok=True)
    real = orjson.loads((source / "naip-collection.json").read_bytes())
    collection.write_bytes(orjson.dumps(real | {"id": "naip-bench"}))
    if not items.exists():
        real = [orjson.loads(line) for line in (source / "naip-items.ndjson").open("rb")]
        with items.with_suffix(".partial").open("wb") as out:
            for n in range(count):
                item = real[n % len(real)] | {"collection": "naip-bench"}
                out.write(orjson.dumps(item | {"id": f"{item['id']}-c{n // len(real)}"}) + b"\n")
        items.with_suffix(".partial").rename(items)
    return items, collection


def query(statement: str, *names: str) -> list[tuple]:
    """One statement, autocommitted; its ``{}`` take ``names`` as identifiers, ``%s`` PREFIX."""
    composed = sql.SQL(statement).format(*map(sql.Identifier, names))
    with psycopg.connect(get_postgres_settings().dsn("postgres"), autocommit=True) as conn:
        cursor = conn.execute(composed, [PREFIX] if "%s" in statement else None)
        return cursor.fetchall() if cursor.description else []


def database(template: str | None = None) -> str:
    """A new pgSTAC database: a copy of ``template``, else migrated by pypgstac."""
    name = f"{PREFIX}{next(_numbers)}"
    if template:
        query("CREATE DATABASE {} TEMPLATE {}", name, template)
    else:
        query("CREATE DATABASE {}", name)
        migrate = [h.BIN / "pypgstac", "migrate", "--dsn", get_postgres_settings().dsn(name)]
        subprocess.run(migrate, check=True, capture_output=True)
    query("CHECKPOINT")  # dirty buffers are flushed now, not during the next run
    return name


def drop_databases() -> None:
    for (name,) in query("SELECT datname FROM pg_database WHERE starts_with(datname, %s)"):
        query("DROP DATABASE {} WITH (FORCE)", name)


def main() -> None:
    args = h.options(__doc__, items=100_000, repeat=5)
    items, collection = stac_items(args.items)
    embedded = h.DATA / "stac_load_embedded"
    drop_databases()
    template = database()

    def load(side: str) -> h.Run:
        shutil.rmtree(embedded, ignore_errors=True)
        db = None if side == "ours, embedded" else database(template)
        env = h.platform_env(data_dir=str(embedded), pg_database=db or "")
        env["GEO_PLATFORM_PROFILE"] = "production" if db else "embedded"
        cmd = [h.BIN / "geo-platform", "stac", "load", items, "--collection", collection]
        if side == "pypgstac":
            dsn = ["--dsn", get_postgres_settings().dsn(db)]
            coll = [h.BIN / "pypgstac", "load", "collections", collection, *dsn, "--method"]
            subprocess.run([*coll, "insert_ignore"], check=True, capture_output=True)
            cmd = [h.BIN / "pypgstac", "load", "items", items, *dsn, "--method", "insert"]
        result = h.run(cmd, env, warm=items)  # either command fails on an item it does not load
        if db:
            query("DROP DATABASE {} WITH (FORCE)", db)
        return result

    sides = {s: lambda s=s: load(s) for s in ("pypgstac", "ours, pgSTAC", "ours, embedded")}
    runs = {side: h.summary(r) for side, r in h.rounds(sides, args.repeat).items()}
    drop_databases()
    shutil.rmtree(embedded, ignore_errors=True)
    rows, reference = [], runs["pypgstac"]
    for side, figures in runs.items():
        row = {"side": side, "best items/s": args.items / figures["best s"]}
        row["median items/s"] = args.items / figures["median s"]
        if side != "pypgstac":
            row["ratio best (>= 0.9)"] = reference["best s"] / figures["best s"]
            row["ratio median (>= 0.9)"] = reference["median s"] / figures["median s"]
        rows.append(row | figures)
    h.table(rows)
    figures = {"items": args.items, "repeat": args.repeat, "sides": rows}
    h.write("stac_load", figures, quick=args.items != 100_000)


if __name__ == "__main__":
    main()
