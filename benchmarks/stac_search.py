"""``geo-platform stac search`` as a whole command over 100,000 items: embedded vs pgSTAC."""

import datetime as dt
import json
import random
import statistics
import subprocess
import uuid
from functools import partial

import harness as h
import numpy as np
import orjson

# Imported before the timed write, as in the Dagster step that writes items (which built
# them with shapely and pystac already).
import shapely  # noqa: F401
from stac_load import stac_items

from geo_platform.backends import stac_catalog
from geo_platform.resources import duckdb_catalog, pgstac_catalog  # noqa: F401
from geo_platform.settings import get_platform_settings


def queries(count: int) -> list[list[str]]:
    """Seeded bbox + datetime searches around real items (0.01° to 1°; ±30 days to ±3 years
    or open-ended): each matches at least its item."""
    rng, found = random.Random(h.SEED), []
    real = [orjson.loads(line) for line in (h.REAL / "stac" / "naip-items.ndjson").open("rb")]
    for number in range(count):
        item, r = rng.choice(real), (0.005, 0.025, 0.125, 0.5)[number % 4]
        x, y = (item["bbox"][0] + item["bbox"][2]) / 2, (item["bbox"][1] + item["bbox"][3]) / 2
        when = dt.datetime.fromisoformat(item["properties"]["datetime"])
        days = dt.timedelta(days=rng.choice([30, 365, 1100]))
        end = ".." if rng.random() < 0.25 else f"{when + days:%Y-%m-%dT%H:%M:%SZ}"
        bbox = ",".join(f"{v:.6f}" for v in (x - r, y - r, x + r, y + r))
        found.append(["--bbox", bbox, "--datetime", f"{when - days:%Y-%m-%dT%H:%M:%SZ}/{end}"])
    return found


def write_one(items: str) -> None:
    """Timed by ``harness.call``: the first of ``items``, with a new id, into the catalog."""
    with open(items, "rb") as f:
        item = orjson.loads(f.readline()) | {"id": f"write-{uuid.uuid4().hex}"}
    stac_catalog(get_platform_settings()).upsert_items([item])


def main() -> None:
    args = h.options(__doc__, items=100_000, queries=30)
    items, collection = stac_items(args.items)
    search = [h.GEO_PLATFORM, "stac", "search"]
    with h.scratch("stac_search") as folder:
        envs = {"embedded": h.platform_env("embedded", folder / "embedded")}
        envs["pgSTAC"] = h.platform_env("production", folder / "production")
        for env in envs.values():  # then a first search, untimed: page cache, database buffers
            load = [h.GEO_PLATFORM, "stac", "load", items, "--collection", collection]
            subprocess.run(load, env=env, check=True, capture_output=True)
            subprocess.run(search, env=env, check=True, capture_output=True)
        searches = [[*search, "--limit", "10", *q] for q in queries(args.queries)]
        sides = {
            f"{i} {n}": partial(h.run, q, envs[n]) for i, q in enumerate(searches) for n in envs
        }
        runs = h.rounds(sides, 1, args.retries)
        write = h.call("stac_search:write_one", items)
        sides = {n: partial(h.run, write, env, timed=True) for n, env in envs.items()}
        writes = h.rounds(sides, 10, args.retries)
    by = {name: [runs[f"{i} {name}"][0] for i in range(len(searches))] for name in envs}
    ids = [[[f["id"] for f in json.loads(r.stdout)["features"]] for r in rs] for rs in by.values()]
    for query, embedded_ids, pgstac_ids in zip(searches, *ids, strict=True):
        if embedded_ids != pgstac_ids:
            print("different ids:", *query[5:], embedded_ids, pgstac_ids)
    same = sum(a == b for a, b in zip(*ids, strict=True))
    rows = []
    for name, searched in by.items():
        times = [r.wall_s for r in searched]
        row = {"backend": name, "search median s": statistics.median(times)}
        row["search p95 s"] = float(np.percentile(times, 95))
        row["search peak RSS MB"] = max(r.rss for r in searched) // h.MB
        row["write one item, median s (<= 0.1)"] = statistics.median(r.wall_s for r in writes[name])
        rows.append(row)
    rows[0]["embedded/pgSTAC (<= 1.0)"] = rows[0]["search median s"] / rows[1]["search median s"]
    h.table(rows)
    print(f"same ids in the same order: {same} of {len(searches)} queries")
    figures = {"items": args.items, "same ids in the same order": f"{same}/{len(searches)}"}
    h.write("stac_search", figures | {"backends": rows}, args.smoke)


if __name__ == "__main__":
    main()
