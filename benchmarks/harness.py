"""What the benchmarks share: paths, inputs, a quiet machine, measured processes, results.

Each side of a benchmark is a function that prepares one run and calls ``run``; ``rounds``
repeats them, ``summary``, ``table`` and ``write`` report. Run as a script: see ``call``."""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / ".data"  # generated inputs and scratch space (git-ignored)
BIN = Path(sys.executable).parent  # the venv running the benchmark: geo-platform, pypgstac
QUIET_CORES = 0.25  # other processes using less than this: the machine is quiet
MB = 1024 * 1024
SEED = 20240607


def _busy_s() -> float:
    """CPU seconds spent since boot by every process but PostgreSQL's (it works for us)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait; steal included
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if name.endswith("(postgres"):  # exited backends are in the postmaster's cutime
            busy -= sum(int(x) for x in fields.split()[11:15])
    return busy / os.sysconf("SC_CLK_TCK")


def wait_quiet() -> None:
    """Wait until other processes use less than QUIET_CORES: at most 300 s, or
    $BENCHMARK_QUIET_WAIT_S (0 to measure on a busy machine, for smoke tests)."""
    deadline = time.monotonic() + float(os.environ.get("BENCHMARK_QUIET_WAIT_S", "300"))
    while time.monotonic() < deadline:
        before = _busy_s()
        time.sleep(0.5)
        if (_busy_s() - before) / 0.5 < QUIET_CORES:
            return


def options(doc: str, **defaults: Any) -> argparse.Namespace:
    """The command line: ``--name`` for each default (a flag when False); ``doc``'s first line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        kind = {"action": "store_true"} if default is False else {"type": type(default)}
        parser.add_argument(f"--{name}", default=default, help=f"default: {default}", **kind)
    return parser.parse_args()


# Linux counts a forked child's pre-exec memory in its ru_maxrss: a tiny launcher (python -S,
# ~9 MB) starts the command and prints the command's own rusage (wait4), last on stderr.
_LAUNCHER = """import json, os, sys, time
start = time.perf_counter()
_, status, usage = os.wait4(os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ), 0)
cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
print(json.dumps([time.perf_counter() - start, cpu, rss]), file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))"""


class Run(NamedTuple):
    wall_s: float
    cpu_s: float
    rss: int  # peak, bytes
    others: float = 0.0  # cores that other processes used meanwhile
    stdout: str = ""


def run(cmd: Sequence, env: dict[str, str] | None = None, timed=False, warm=None) -> Run:
    """Run ``cmd`` in a fresh process after a wait for a quiet machine: wall, CPU, peak RSS.

    ``warm``: a file read first, so that the command finds it in the page cache. ``timed``:
    ``cmd`` is a ``call``, whose own seconds and CPU seconds are kept."""
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
    """A command that times ``module:function(*args)`` in a fresh interpreter, imports
    excluded (a worker pays them once), and prints [seconds, CPU seconds]."""
    return [sys.executable, __file__, function, *map(str, args)]


def rounds(sides: dict[str, Callable[[], Run]], repeat: int, extra: int = 2) -> dict[str, list]:
    """``repeat`` rounds of every side, alternating, the order rotating each round. A run
    during which others used more than QUIET_CORES is done again, ``extra`` times at most."""
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    names = list(sides)
    for number in range(repeat):
        for name in names[number % len(names) :] + names[: number % len(names)]:
            attempts: list[Run] = []
            for _ in range(extra + 1):
                wall, cpu, rss, others, _ = result = sides[name]()
                print(f"[{number + 1}/{repeat}] {name:<30} {wall:8.3f} s {cpu:7.2f} CPU s", end="")
                print(f" {rss / MB:6.0f} MB (others: {others:.2f} cores)", flush=True)
                attempts.append(result)
                if others <= QUIET_CORES:
                    break
            runs[name].append(min(attempts, key=lambda r: r.others))
    return runs


def summary(runs: Sequence[Run]) -> dict[str, Any]:
    """Best and median seconds, CPU seconds of the best run, worst peak RSS."""
    best = min(runs, key=lambda r: r.wall_s)
    median = float(np.median([r.wall_s for r in runs]))
    peak = round(max(r.rss for r in runs) / MB)
    return {"best s": best.wall_s, "median s": median, "CPU s": best.cpu_s, "peak RSS MB": peak}


def table(rows: Sequence[dict[str, Any]]) -> None:
    """Print rows as a table. A column named with a target ("ratio (>= 0.9)") marks each
    value ok or MISS: targets are reported, never asserted."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [columns] + [[_cell(row.get(c, ""), c) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        padded = [c.rjust(w) for c, w in zip(line, widths, strict=True)]
        print("  ".join([line[0].ljust(widths[0]), *padded[1:]]))


def _cell(value: Any, column: str) -> str:
    if not isinstance(value, float):
        return str(value)
    bound = column.partition("= ")[2].rstrip(")")
    # A target met exactly is met, whichever way it points.
    met = value <= float(bound) if "<=" in column else value >= float(bound) if bound else True
    mark = "" if not bound else " ok" if met else " MISS"
    return f"{value:.2f}{mark}" if value < 100 else f"{value:,.0f}{mark}"


def write(name: str, figures: dict[str, Any], quick: bool = False) -> None:
    """Write the summary to ``benchmarks/results/<name>.json`` (``.quick.json``: smoke tests)."""
    path = ROOT / "benchmarks" / "results" / f"{name}{'.quick' if quick else ''}.json"
    figures = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), **figures}
    rounded = json.loads(json.dumps(figures), parse_float=lambda x: round(float(x), 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def platform_env(profile: str = "embedded", **settings: str) -> dict[str, str]:
    """The environment of a ``geo-platform`` command on ``profile`` with these settings."""
    drop = {"DAGSTER_HOME", "GEO_PLATFORM_DATA_DIR", "GEO_PLATFORM_COLLECTIONS_FILE"}
    env = {k: v for k, v in os.environ.items() if k not in drop} | {"GEO_PLATFORM_PROFILE": profile}
    return env | {f"GEO_PLATFORM_{k.upper()}": v for k, v in settings.items()}


# Inputs: noise fields (octaves' cell sizes, persistence) plus texture: realistic compression.
_FIELDS = {
    "rgb": [([900, 300, 110], 0.35), ([1500, 500, 160, 50, 16, 5], 0.55), ([2500, 800], 0.3)],
    "dem": [([3000, 1200, 480, 190, 75, 30, 12, 5], 0.5), ([700, 260, 90], 0.55)],
}
_PALETTE = np.float64(
    [(74, 98, 52), (118, 138, 64), (164, 152, 112), (92, 82, 70), (196, 188, 168), (48, 66, 92)]
)


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


def _pixels(fields: list, rng: np.random.Generator, rows: np.ndarray, size: int) -> np.ndarray:
    if len(fields) == 3:  # land-cover parcels, shaded, a few roads, sensor noise
        parcels, shade, roads = fields
        rgb = _PALETTE[np.clip(((parcels - 0.2) / 0.6 * 6).astype(int), 0, 5)]
        rgb *= (0.65 + 0.7 * shade)[..., None]
        rgb[np.abs(roads - 0.5) < 0.004] = (205, 200, 190)
        rgb += rng.normal(0.0, 5.0, rgb.shape)
        return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    terrain, ridges = fields  # heights in metres, centimetre noise
    dem = 150 + 2200 * terrain**1.6 + 180 * (1 - np.abs(2 * ridges - 1))
    dem += rng.normal(0.0, 0.02, dem.shape)
    y, x, a = (rows[:, None] - size / 2) / size, (np.arange(size) - size / 2) / size, np.deg2rad(12)
    u, v = x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)
    dem[(np.abs(u) > 0.42) | (np.abs(v) > 0.45)] = -9999.0  # outside a tilted footprint
    return dem.astype(np.float32)[None]


def raster(kind: str, size: int, path: Path | None = None, seed: int = SEED, x0=4e5) -> Path:
    """A ``size``² 3-band uint8 ``rgb`` or float32 ``dem``, generated once, deterministically."""
    rgb = kind == "rgb"
    dtype, nodata = ("uint8", None) if rgb else ("float32", -9999.0)
    path = path or DATA / f"{kind}_{dtype}_{size}x{size}.tif"
    if path.exists():
        return path
    rng = np.random.default_rng([seed, size, 3 if rgb else 1])
    fields = [([(c, rng.random((size // c + 2,) * 2)) for c in cs], p) for cs, p in _FIELDS[kind]]
    profile = dict(driver="GTiff", crs="EPSG:32633", tiled=True, blockxsize=512, blockysize=512)
    profile |= dict(width=size, height=size, count=3 if rgb else 1, dtype=dtype, nodata=nodata)
    transform = from_origin(x0, 5.6e6, *[0.5 if rgb else 2.0] * 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial, cols = path.with_suffix(".partial.tif"), np.arange(size, dtype=float)
    with rasterio.open(partial, "w", transform=transform, **profile) as dst:
        for row in range(0, size, 512):
            rows = np.arange(row, min(row + 512, size), dtype=float)
            values = [_noise(*field, rows, cols) for field in fields]
            data = _pixels(values, np.random.default_rng([seed, row]), rows, size)
            dst.write(data, window=Window(0, row, size, rows.size))
    partial.rename(path)
    return path


if __name__ == "__main__":  # the child of ``call``
    module, name = sys.argv[1].split(":")
    function = getattr(importlib.import_module(module), name)
    wall, cpu = time.perf_counter(), time.process_time()
    function(*sys.argv[2:])
    print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
