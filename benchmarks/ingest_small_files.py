"""``geo-platform ingest`` of small rasters (a folder) vs a bare loop of the same library calls."""

import itertools
import shutil

import harness as h


def main() -> None:
    args = h.options(__doc__, files=20, repeat=3)
    folder, platform = h.DATA / f"small-{args.files}", h.DATA / "ingest_small_files"
    for i in range(args.files):  # different rasters side by side
        h.raster("rgb", 256, folder / f"tile_{i:04d}.tif", h.SEED + i, 4e5 + i * 128)
    shutil.rmtree(platform, ignore_errors=True)
    env, numbers = h.platform_env(data_dir=str(platform)), itertools.count()
    ingest = [h.GEO_PLATFORM, "ingest", "--tiers", "analysis", "--collection"]
    h.ingest_setup(env, "--tiers", "analysis")
    # The bare loop of many_files.py, writing each item as it is made, as the ingest does;
    # landing the files in bronze counts on both sides (ingest copies them there too).
    bare = h.call("many_files:bare_loop", folder, platform / "bare.json")
    sides = {
        "bare loop": lambda: h.run([*bare, f"bare-{next(numbers)}", 1], env),
        "geo-platform ingest": lambda: h.run([*ingest, f"ingest-{next(numbers)}", folder], env),
    }
    runs = {name: h.summary(r) for name, r in h.rounds(sides, args.repeat).items()}
    shutil.rmtree(platform)
    rows = [{"side": name, "files/s": args.files / r["best s"]} | r for name, r in runs.items()]
    bare_s, ingest_s = (r["best s"] for r in runs.values())
    rows[1]["files/s, ingest/bare"] = bare_s / ingest_s
    rows[1]["s more per file"] = (ingest_s - bare_s) / args.files
    h.table(rows)
    h.write("ingest_small_files", {"files": args.files, "sides": rows}, quick=args.files != 20)


if __name__ == "__main__":
    main()
