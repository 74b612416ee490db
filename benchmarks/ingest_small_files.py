"""``geo-platform ingest`` of small rasters (a folder) vs a bare loop of the same library calls."""

import itertools

import harness as h


def main() -> None:
    args = h.options(__doc__, files=20, repeat=3)
    folder, numbers = h.DATA / f"small-{args.files}", itertools.count()
    for i in range(args.files):  # different rasters side by side
        h.raster("rgb", 256, folder / f"tile_{i:04d}.tif", h.SEED + i, 4e5 + i * 128)
    with h.scratch("ingest_small_files") as platform:
        env, ingest = h.platform_env("embedded", platform), [h.GEO_PLATFORM, "ingest", "--tiers"]
        h.ingest_setup(env, "--tiers", "analysis")
        # The bare loop of many_files.py, writing each item as it is made, as the ingest does;
        # landing the files in bronze counts on both sides (ingest copies them there too).
        bare = h.call("many_files:bare_loop", folder, platform / "bare.json")
        sides = {
            "bare loop": lambda: h.run([*bare, f"bare-{next(numbers)}", 1], env),
            "geo-platform ingest": lambda: h.run(
                [*ingest, "analysis", "--collection", f"ingest-{next(numbers)}", folder], env
            ),
        }
        rows = h.versus(h.rounds(sides, args.repeat, args.retries))
    for row in rows:
        row["files/s"] = args.files / row["best s"]
    bare_s, ingest_s = (row["best s"] for row in rows)
    rows[1]["files/s, ingest/bare"] = bare_s / ingest_s
    rows[1]["s more per file"] = (ingest_s - bare_s) / args.files
    h.table(rows)
    h.write("ingest_small_files", {"files": args.files, "sides": rows}, args.smoke)


if __name__ == "__main__":
    main()
