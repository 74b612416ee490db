"""``geo-platform ingest`` of small rasters (one folder) vs a bare loop of the same library calls.

.venv/bin/python benchmarks/ingest_small_files.py [--files 20] [--repeat 3]"""

import datetime as dt
import itertools
import shutil
import subprocess
from pathlib import Path

import harness as h

from geo_platform import backends, settings
from geo_platform.lib.raster import cog, tiers, validate
from geo_platform.lib.stac import collection, item


def bare_loop(folder: str, name: str) -> None:
    """What ``ingest --tiers analysis`` calls for each file, in one process, without Dagster."""
    platform, analysis = settings.get_platform_settings(), tiers.Tier.ANALYSIS
    catalog = backends.stac_catalog(platform)
    catalog.upsert_collection(collection.new_collection(name))
    for path in sorted(Path(folder).glob("*.tif")):
        key = f"{name}/{path.name}"
        info = validate.validate_raster(path, settings.LimitSettings(), name=key)
        out = cog.write_cog_tiers(path, [analysis], platform.data_dir / key)[analysis]
        ref = tiers.TierRef(analysis, str(out.path), str(out.path), out.size_bytes, out.sha256)
        at = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)  # the file's own date
        new = item.build_item(ref.href, key, [ref], source_sha256=info.sha256, fallback_datetime=at)
        catalog.upsert_items([new])


def main() -> None:
    args = h.options(__doc__, files=20, repeat=3)
    folder, platform = h.DATA / f"small-{args.files}", h.DATA / "ingest_small_files"
    for i in range(args.files):  # different rasters side by side
        h.raster("rgb", 256, folder / f"tile_{i:04d}.tif", h.SEED + i, 4e5 + i * 128)
    shutil.rmtree(platform, ignore_errors=True)
    env, numbers = h.platform_env(data_dir=str(platform)), itertools.count()
    ingest = [h.BIN / "geo-platform", "ingest", "--tiers", "analysis", "--collection"]
    # The platform exists before the first timed run: instance, catalog, a first item.
    setup = [*ingest, "setup", h.raster("rgb", 256)]
    subprocess.run(setup, env=env, check=True, capture_output=True)
    bare = h.call("ingest_small_files:bare_loop", folder)
    sides = {
        "geo-platform ingest": lambda: h.run([*ingest, f"ingest-{next(numbers)}", folder], env),
        "bare loop": lambda: h.run([*bare, f"bare-{next(numbers)}"], env),
    }
    runs = {name: h.summary(r) for name, r in h.rounds(sides, args.repeat).items()}
    shutil.rmtree(platform)
    rows = [{"side": name, "files/s": args.files / r["best s"]} | r for name, r in runs.items()]
    ingest_s, bare_s = (r["best s"] for r in runs.values())
    rows[0]["files/s, ingest/bare"] = bare_s / ingest_s
    rows[0]["s more per file"] = (ingest_s - bare_s) / args.files
    h.table(rows)
    h.write("ingest_small_files", {"files": args.files, "sides": rows}, quick=args.files != 20)


if __name__ == "__main__":
    main()
