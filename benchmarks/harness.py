"""What the benchmarks share (README.md says how they measure): a quiet machine, measured
processes in rounds, tables and result files, scratch platforms and services, inputs."""

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / ".data"  # generated inputs and scratch space (git-ignored)
REAL = ROOT.parent / "shared" / "data" / "real"  # beside the repository, as for the tests
BIN = Path(sys.executable).parent  # the venv running the benchmark: geo-platform, pypgstac
GEO_PLATFORM = BIN / "geo-platform"
QUIET_CORES = 0.25  # other processes using less than this: the machine is quiet
MB = 1024 * 1024
SEED = 20240607
GDAL_ENV = {"GDAL_CACHEMAX": "512", "GDAL_NUM_THREADS": "ALL_CPUS"}  # the same on both sides


def options(doc: str, **defaults: Any) -> argparse.Namespace:
    """``--name`` per default (False: a flag) and ``--retries`` (of ``rounds``); ``smoke``: a
    size is not its default (not ``--repeat`` or ``--profile``), results go to .quick.json."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in ({"retries": 2} | defaults).items():
        kind = {"action": "store_true"} if default is False else {"type": type(default)}
        parser.add_argument(f"--{name}", default=default, help=f"default: {default}", **kind)
    args = parser.parse_args()
    sizes = [name for name in defaults if name not in ("repeat", "profile", "retries")]
    args.smoke = any(getattr(args, name) != defaults[name] for name in sizes)
    return args


def _busy_s() -> float:
    """CPU seconds spent since boot by every process but PostgreSQL's and Azurite's (node):
    they work for the command measured."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait; steal included
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if name.endswith(("(postgres", "(node")):  # exited backends: in the postmaster's cutime
            busy -= sum(int(x) for x in fields.split()[11:15])
    return busy / os.sysconf("SC_CLK_TCK")


def wait_quiet() -> None:  # at most $BENCHMARK_QUIET_WAIT_S (300) seconds
    deadline = time.monotonic() + float(os.environ.get("BENCHMARK_QUIET_WAIT_S", "300"))
    while time.monotonic() < deadline:
        before = _busy_s()
        time.sleep(0.5)
        if (_busy_s() - before) / 0.5 < QUIET_CORES:
            return


# Linux counts a forked child's pre-exec memory in its ru_maxrss: a tiny launcher (python -S,
# ~9 MB) starts the command and prints the command's own rusage (wait4), last on stderr.
_LAUNCHER = """import json, os, sys, time
start = time.perf_counter()
_, status, usage = os.wait4(os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ), 0)
cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
print(json.dumps([time.perf_counter() - start, cpu, rss]), file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))"""


class Run(NamedTuple):  # peak RSS in bytes; others: cores other processes used meanwhile
    wall_s: float
    cpu_s: float
    rss: int
    others: float = 0.0
    stdout: str = ""
    figures: tuple = ()  # (name, value) pairs for the side's row when this run is its best


def run(cmd: Sequence, env: dict[str, str] | None = None, timed=False, warm=None) -> Run:
    """``cmd`` in a fresh process, on a quiet machine: wall, CPU, peak RSS. ``warm``: a file
    read first (page cache warm); ``timed``: ``cmd`` is a ``call``, whose own times count."""
    if warm:
        subprocess.run(["cat", warm], stdout=subprocess.DEVNULL, check=True)
    wait_quiet()
    busy = _busy_s()
    argv = [sys.executable, "-S", "-c", _LAUNCHER, *map(str, cmd)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    busy = _busy_s() - busy
    if proc.returncode:
        raise RuntimeError(f"{argv[4:8]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    wall, cpu, rss = json.loads(proc.stderr.splitlines()[-1])
    others = max(0.0, (busy - cpu) / wall)
    if timed:
        wall, cpu = json.loads(proc.stdout.splitlines()[-1])
    return Run(wall, cpu, rss, others, proc.stdout)


def call(function: str, *args: object) -> list[str]:
    """A command timing ``module:function(*args)`` in a fresh interpreter, imports excluded
    (a worker pays them once); it prints [seconds, CPU seconds]."""
    return [sys.executable, __file__, function, *map(str, args)]


def with_steps(result: Run, env: dict[str, str]) -> Run:
    """``result`` of a command that made a Dagster run on the instance of ``env``, with the
    seconds of the run's steps and of the rest of the command (read by a child)."""
    child = [sys.executable, __file__, "--steps"]
    out = subprocess.run(child, env=env, capture_output=True, text=True, check=True).stdout
    steps = float(out.splitlines()[-1])
    figures = (("steps s", steps), ("outside the steps s", result.wall_s - steps))
    return result._replace(figures=figures)


def rounds(sides: dict[str, Callable[[], Run]], repeat: int, retries: int = 2) -> dict[str, list]:
    """``repeat`` rounds of every side, the order rotating; a run during which others used
    more than QUIET_CORES is done again, ``retries`` times at most (the least disturbed kept)."""
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    names = list(sides)
    for number in range(repeat):
        for name in names[number % len(names) :] + names[: number % len(names)]:
            attempts: list[Run] = []
            for _ in range(retries + 1):
                wall, cpu, rss, others, *_ = result = sides[name]()
                print(f"[{number + 1}/{repeat}] {name:<30} {wall:8.3f} s {cpu:7.2f} CPU s", end="")
                print(f" {rss / MB:6.0f} MB (others: {others:.2f} cores)", flush=True)
                attempts.append(result)
                if others <= QUIET_CORES:
                    break
            runs[name].append(min(attempts, key=lambda r: r.others))
    return runs


def versus(runs: dict[str, list[Run]], target: str = "") -> list[dict[str, Any]]:
    """A row per side: best and median seconds, the best run's CPU seconds and figures, the
    worst peak RSS; with a ``target``, the others' ratios to the first side: seconds over its
    for "<= x", its seconds over theirs (throughput) for ">= x"."""
    rows = []
    for name, side in runs.items():
        best, median = min(side, key=lambda r: r.wall_s), float(np.median([r.wall_s for r in side]))
        row = {"side": name, "best s": best.wall_s, "median s": median, "CPU s": best.cpu_s}
        peak = round(max(r.rss for r in side) / MB)
        rows.append(row | {"peak RSS MB": peak, **dict(best.figures)})
    for row, kind in ((row, kind) for row in rows[1:] if target for kind in ("best", "median")):
        ratio = row[f"{kind} s"] / rows[0][f"{kind} s"]
        row[f"ratio {kind} ({target})"] = 1 / ratio if target.startswith(">") else ratio
    return rows


def table(rows: Sequence[dict[str, Any]]) -> None:
    """The rows' columns, aligned; a value under a target ("... (>= 0.9)") is marked ok or
    MISS (a target met exactly is met, whichever way it points)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [columns] + [[_cell(row.get(c, ""), c) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        padded = [c.rjust(w) for c, w in zip(line, widths, strict=True)]
        print("  ".join([line[0].ljust(widths[0]), *padded[1:]]))


def _cell(value: Any, column: str) -> str:
    if not isinstance(value, float):
        return str(value)
    text, bound = f"{value:.2f}" if value < 100 else f"{value:,.0f}", column.partition("= ")[2]
    if not bound:
        return text
    met = value <= float(bound[:-1]) if "<=" in column else value >= float(bound[:-1])
    return f"{text} ok" if met else f"{text} MISS"


def write(name: str, figures: dict[str, Any], smoke: bool) -> None:
    """``benchmarks/results/<name>.json``, or ``<name>.quick.json`` for a ``smoke`` test."""
    path = ROOT / "benchmarks" / "results" / f"{name}{'.quick' if smoke else ''}.json"
    figures = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), **figures}
    rounded = json.loads(json.dumps(figures), parse_float=lambda x: round(float(x), 4))
    path.write_text(json.dumps(rounded, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


_TAG = f"bench{uuid.uuid4().hex[:6]}"  # this process's scratch databases and containers
_databases: list[str] = []
_prefixes: list[str] = []


@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """``DATA/name``, empty; at the end it is removed with the databases and Azurite
    containers made meanwhile (they can hold gigabytes)."""
    shutil.rmtree(folder := DATA / name, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for database_name in _databases:
            sql("DROP DATABASE IF EXISTS {} WITH (FORCE)", database_name)
        if _prefixes:
            from azure.storage.blob import BlobServiceClient

            from geo_platform.settings import AZURITE_CONNECTION_STRING

            service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
            for container in service.list_containers(name_starts_with=_TAG):
                service.delete_container(container.name)


def sql(statement: str, *names: str) -> None:  # {}: names, as identifiers
    import psycopg
    from psycopg import sql as q

    from geo_platform.settings import get_postgres_settings

    with psycopg.connect(get_postgres_settings().dsn("postgres"), autocommit=True) as conn:
        conn.execute(q.SQL(statement).format(*map(q.Identifier, names)))


def database(template: str | None = None, pgstac: bool = True) -> str:
    """A scratch database: a copy of ``template``, or new (``pgstac``: migrated by pypgstac)."""
    from geo_platform.settings import get_postgres_settings

    _databases.append(name := f"{_TAG}_{len(_databases)}")
    sql("CREATE DATABASE {}" + " TEMPLATE {}" * bool(template), name, *filter(None, [template]))
    if pgstac and not template:
        migrate = [BIN / "pypgstac", "migrate", "--dsn", get_postgres_settings().dsn(name)]
        subprocess.run(migrate, check=True, capture_output=True)
    sql("CHECKPOINT")  # dirty buffers are flushed now, not during the next run
    return name


def platform_env(profile: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a platform in ``data_dir``; on production, in scratch services of
    its own: a pgSTAC database, a Dagster database and Azurite containers."""
    if profile == "production":
        settings |= {"pg_database": database(), "pg_dagster_database": database(pgstac=False)}
        _prefixes.append(prefix := f"{_TAG}-{len(_prefixes)}-")
        settings["azure_container_prefix"] = prefix
    drop = {"DAGSTER_HOME", "GEO_PLATFORM_DATA_DIR", "GEO_PLATFORM_COLLECTIONS_FILE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    settings |= {"profile": profile, "data_dir": str(data_dir)}
    return env | {f"GEO_PLATFORM_{k.upper()}": v for k, v in settings.items()}


def ingest_setup(env: dict[str, str], *options: str, source: Path | None = None) -> None:
    """The platform exists before the first timed run: instance, catalog, a first item."""
    source = source or raster("rgb", 256)
    setup = [GEO_PLATFORM, "ingest", *options, "--collection", "setup", source]
    subprocess.run(setup, env=env, check=True, capture_output=True)


def gdal_cog(src: Path, tier: str, dst: Path) -> list[str]:
    """``gdal_translate -of COG`` with our creation options for ``tier`` and our resampling."""
    from geo_platform.lib.raster.cog import Tier, creation_options, overview_resampling

    with rasterio.open(src) as ds:
        options = creation_options(Tier(tier), ds.dtypes[0], "ALL_CPUS")
        options["RESAMPLING"] = overview_resampling(ds).name.upper()
    co = [arg for key, value in options.items() for arg in ("-co", f"{key}={value}")]
    return ["gdal_translate", "-q", "-of", "COG", *co, str(src), str(dst)]


# Inputs: noise fields (octaves' cell sizes, persistence) plus texture: realistic compression.
_FIELDS = {
    "rgb": [([900, 300, 110], 0.35), ([1500, 500, 160, 50, 16, 5], 0.55), ([2500, 800], 0.3)],
    "dem": [([3000, 1200, 480, 190, 75, 30, 12, 5], 0.5), ([700, 260, 90], 0.55)],
    "gray": [([2000, 600, 150, 40], 0.5)],
}
_PALETTE = np.float64(
    [(74, 98, 52), (118, 138, 64), (164, 152, 112), (92, 82, 70), (196, 188, 168), (48, 66, 92)]
)
_GRAY_BASE = 4000  # gray: a field this size repeated with an offset (40,000² in minutes)


def _noise(octaves: list, persistence: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Multi-octave value noise in [0, 1] at the outer product of ``rows`` and ``cols``."""
    total, weight, norm = 0.0, 1.0, 0.0
    for cell, grid in octaves:
        gy, gx = rows / cell, cols / cell
        iy, ix = gy.astype(np.intp), gx.astype(np.intp)
        fy, fx = gy - iy, gx - ix
        ty, tx = (fy * fy * (3 - 2 * fy))[:, None], (fx * fx * (3 - 2 * fx))[None, :]
        top = grid[iy[:, None], ix] * (1 - tx) + grid[iy[:, None], ix + 1] * tx
        bottom = grid[iy[:, None] + 1, ix] * (1 - tx) + grid[iy[:, None] + 1, ix + 1] * tx
        total = total + weight * (top * (1 - ty) + bottom * ty)
        norm, weight = norm + weight, weight * persistence
    return total / norm


def _pixels(kind: str, fields: list, rng: np.random.Generator, rows: np.ndarray, size: int):
    if kind == "gray":  # the base field shifted per repetition, sensor noise
        base, cols = fields[0], np.arange(size)
        values = base[(rows.astype(int) % len(base))[:, None], cols % len(base)]
        values += (cols // len(base)) * 23 + (rows // len(base) * 11).astype(int)[:, None]
        return ((values + rng.integers(0, 7, values.shape, np.int16)) % 240).astype(np.uint8)[None]
    noise = [_noise(*field, rows, np.arange(size, dtype=float)) for field in fields]
    if kind == "rgb":  # land-cover parcels, shaded, a few roads, sensor noise
        parcels, shade, roads = noise
        rgb = _PALETTE[np.clip(((parcels - 0.2) / 0.6 * 6).astype(int), 0, 5)]
        rgb *= (0.65 + 0.7 * shade)[..., None]
        rgb[np.abs(roads - 0.5) < 0.004] = (205, 200, 190)
        rgb += rng.normal(0.0, 5.0, rgb.shape)
        return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    terrain, ridges = noise
    dem = 150 + 2200 * terrain**1.6 + 180 * (1 - np.abs(2 * ridges - 1))  # metres
    dem += rng.normal(0.0, 0.02, dem.shape)
    y, x, a = (rows[:, None] - size / 2) / size, (np.arange(size) - size / 2) / size, np.deg2rad(12)
    u, v = x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)
    dem[(np.abs(u) > 0.42) | (np.abs(v) > 0.45)] = -9999.0  # outside a tilted footprint
    return dem.astype(np.float32)[None]


def raster(kind: str, size: int, path: Path | None = None, seed: int = SEED, x0=4e5) -> Path:
    """A ``size``² ``rgb`` (3-band uint8), ``dem`` (float32) or ``gray`` (uint8), tiled 512
    and uncompressed, generated once, deterministically, a strip at a time."""
    dtype, count, nodata, res, bigtiff = {
        "rgb": ("uint8", 3, None, 0.5, "NO"), "dem": ("float32", 1, -9999.0, 2.0, "NO"),
        "gray": ("uint8", 1, None, 1.0, "YES"),
    }[kind]  # fmt: skip
    path = path or DATA / f"{kind}_{dtype}_{size}x{size}.tif"
    if path.exists():
        return path
    rng = np.random.default_rng([seed, size, count] if kind != "gray" else [seed, size])
    side = min(size, _GRAY_BASE) if kind == "gray" else size
    fields = [([(c, rng.random((side // c + 2,) * 2)) for c in cs], p) for cs, p in _FIELDS[kind]]
    if kind == "gray":
        axis = np.arange(side, dtype=float)
        fields = [(_noise(*fields[0], axis, axis) * 230).astype(np.int16)]
    profile = dict(driver="GTiff", crs="EPSG:32633", tiled=True, blockxsize=512, blockysize=512)
    profile |= dict(width=size, height=size, count=count, dtype=dtype, nodata=nodata)
    transform = rasterio.transform.from_origin(x0, 5.6e6, res, res)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.tif")
    with rasterio.open(partial, "w", transform=transform, BIGTIFF=bigtiff, **profile) as dst:
        for row in range(0, size, 512):
            rows = np.arange(row, min(row + 512, size), dtype=float)
            data = _pixels(kind, fields, np.random.default_rng([seed, row]), rows, size)
            dst.write(data, window=((row, row + rows.size), (0, size)))
    partial.rename(path)
    return path


if __name__ == "__main__" and sys.argv[1] == "--steps":  # the child of ``with_steps``
    from geo_platform.instance import get_instance
    from geo_platform.settings import get_platform_settings

    instance = get_instance(get_platform_settings())
    stats = instance.get_run_step_stats(instance.get_runs(limit=1)[0].run_id)
    print(sum(s.end_time - s.start_time for s in stats))
elif __name__ == "__main__":  # the child of ``call``
    module, name = sys.argv[1].split(":")
    function = getattr(importlib.import_module(module), name)
    wall, cpu = time.perf_counter(), time.process_time()
    function(*sys.argv[2:])
    print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
