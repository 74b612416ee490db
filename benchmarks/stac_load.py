"""``geo-platform stac load`` vs ``pypgstac load items``: 100,000 items on pgSTAC and DuckDB."""

import shutil
import subprocess
from pathlib import Path

import harness as h
import orjson

from geo_platform.settings import get_postgres_settings


def stac_items(count: int) -> tuple[Path, Path]:
    """NDJSON of ``count`` items of collection ``naip-bench`` and the collection's JSON: the
    real NAIP items copied as often as needed, with new ids ``<id>-c<copy>``."""
    items, collection = h.DATA / "stac" / f"naip-{count}.ndjson", h.DATA / "stac" / "naip.json"
    items.parent.mkdir(parents=True, exist_ok=True)
    real = orjson.loads((h.REAL / "stac" / "naip-collection.json").read_bytes())
    collection.write_bytes(orjson.dumps(real | {"id": "naip-bench"}))
    if not items.exists():
        real = [orjson.loads(line) for line in (h.REAL / "stac" / "naip-items.ndjson").open("rb")]
        with items.with_suffix(".partial").open("wb") as out:
            for n in range(count):
                item = real[n % len(real)] | {"collection": "naip-bench"}
                out.write(orjson.dumps(item | {"id": f"{item['id']}-c{n // len(real)}"}) + b"\n")
        items.with_suffix(".partial").rename(items)
    return items, collection


def main() -> None:
    args = h.options(__doc__, items=100_000, repeat=5)
    items, collection = stac_items(args.items)
    embedded, template = h.DATA / "stac_load_embedded", h.database()

    def load(side: str) -> h.Run:
        shutil.rmtree(embedded, ignore_errors=True)
        db = "" if side == "ours, embedded" else h.database(template)
        profile = "production" if db else "embedded"
        env = h.platform_env(profile, data_dir=str(embedded), pg_database=db)
        cmd = [h.GEO_PLATFORM, "stac", "load", items, "--collection", collection]
        if side == "pypgstac":
            pypgstac, dsn = h.BIN / "pypgstac", get_postgres_settings().dsn(db)
            load_collection = [pypgstac, "load", "collections", collection, "--dsn", dsn]
            subprocess.run([*load_collection, "--method", "insert_ignore"], check=True)
            cmd = [pypgstac, "load", "items", items, "--dsn", dsn, "--method", "insert"]
        result = h.run(cmd, env, warm=items)  # either command fails on an item it does not load
        if db:
            h.sql("DROP DATABASE {} WITH (FORCE)", db)
        return result

    sides = {s: lambda s=s: load(s) for s in ("pypgstac", "ours, pgSTAC", "ours, embedded")}
    try:
        rows = h.versus(h.rounds(sides, args.repeat), ">= 0.9")  # items/s: pypgstac's s / ours
    finally:
        h.drop_databases()
        shutil.rmtree(embedded, ignore_errors=True)
    for row in rows:
        row["best items/s"], row["median items/s"] = (
            args.items / row[s] for s in ("best s", "median s")
        )
    h.table(rows)
    figures = {"items": args.items, "repeat": args.repeat, "sides": rows}
    h.write("stac_load", figures, quick=args.items != 100_000)


if __name__ == "__main__":
    main()
