"""``geo-platform stac load`` vs ``pypgstac load items``: 100,000 items on pgSTAC and DuckDB."""

import shutil
import subprocess
from functools import partial
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
    with h.scratch("stac_load") as folder:
        template, embedded = h.database(), h.platform_env("embedded", folder)

        def load(side: str) -> h.Run:
            shutil.rmtree(folder, ignore_errors=True)
            cmd = [h.GEO_PLATFORM, "stac", "load", items, "--collection", collection]
            if side == "ours, embedded":
                return h.run(cmd, embedded, warm=items)
            db = h.database(template)  # pgSTAC: a fresh copy of the migrated template
            env = embedded | {"GEO_PLATFORM_PROFILE": "production", "GEO_PLATFORM_PG_DATABASE": db}
            if side == "pypgstac":
                pypgstac, dsn = h.BIN / "pypgstac", get_postgres_settings().dsn(db)
                load_collection = [pypgstac, "load", "collections", collection, "--dsn", dsn]
                subprocess.run([*load_collection, "--method", "insert_ignore"], check=True)
                cmd = [pypgstac, "load", "items", items, "--dsn", dsn, "--method", "insert"]
            result = h.run(cmd, env, warm=items)  # either command fails on an item it does not load
            h.sql("DROP DATABASE {} WITH (FORCE)", db)
            return result

        sides = {s: partial(load, s) for s in ("pypgstac", "ours, pgSTAC", "ours, embedded")}
        rows = h.versus(h.rounds(sides, args.repeat, args.retries), ">= 0.9")  # pypgstac's s / ours
    for row in rows:
        row |= {f"{kind} items/s": args.items / row[f"{kind} s"] for kind in ("best", "median")}
    h.table(rows)
    h.write("stac_load", {"items": args.items, "repeat": args.repeat, "sides": rows}, args.smoke)


if __name__ == "__main__":
    main()
