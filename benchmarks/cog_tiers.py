"""Benchmark: our COG tiers (``write_cog_tiers``) against ``gdal_translate -of COG``.

Usage::

    .venv/bin/python benchmarks/cog_tiers.py [--quick] [--repeat N] [--cachemax MB]

Two synthetic inputs are generated once into ``benchmarks/.data/`` (git-ignored): a
3-band uint8 image and a float32 elevation model with nodata, both smooth fields plus
texture so that compression ratios are realistic. Every measurement runs in a fresh
child process; its peak memory is that child's ``ru_maxrss`` (``os.wait4``). Three
writers are compared per tier, all with the creation options of
``geo_platform.lib.raster.cog.creation_options`` and the same ``RESAMPLING``:

* ``gdal_translate``: the system's ``gdal_translate -of COG`` (Debian GDAL);
* ``GDALTranslate (bundled)``: the same utility, called through ``ctypes`` in the
  GDAL that rasterio bundles, i.e. the library our code runs on. It separates
  "our code" from "a different GDAL build" (version, libjpeg vs libjpeg-turbo);
* ``ours``: ``write_cog_tiers(src, [tier], ...)``, and once per input with all tiers.

Both sides get the same ``GDAL_CACHEMAX`` and ``GDAL_NUM_THREADS`` (environment) and
``NUM_THREADS`` (creation option). The input is read once before each measurement so
that it is in the page cache, and ``sync`` runs first so earlier outputs are not
being written back meanwhile. Times are the best of the repeats, memory the worst.
Results are printed and written to ``benchmarks/results/cog_tiers.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geo_platform.lib.raster.cog import creation_options, overview_resampling, write_cog_tiers
from geo_platform.lib.raster.tiers import Tier

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / ".data"
RESULTS_PATH = HERE / "results" / "cog_tiers.json"
QUICK_RESULTS_PATH = HERE / "results" / "cog_tiers.quick.json"
SEED = 20240607
MB = 1024 * 1024
# A run during which other processes used more CPU than this (in cores) is "disturbed".
QUIET_CORES = 0.25

# Targets from the brief; reported, never asserted.
TARGET_THROUGHPUT = 0.9  # ours / gdal_translate, higher is better
TARGET_MEMORY = 1.5  # ours / gdal_translate peak RSS, lower is better
TARGET_ALL_TIERS = 0.6  # ours (all tiers) / sum of per-tier gdal_translate, lower is better

CLI = "gdal_translate"
BUNDLED = "bundled"
OURS = "ours"
WRITERS = (CLI, BUNDLED, OURS)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSpec:
    """A synthetic benchmark input and the tiers that apply to it."""

    key: str
    width: int
    height: int
    count: int
    dtype: str
    resolution: float
    nodata: float | None
    tiers: tuple[Tier, ...]

    @property
    def path(self) -> Path:
        return DATA_DIR / f"{self.key}_{self.dtype}_{self.width}x{self.height}.tif"

    @property
    def raw_bytes(self) -> int:
        return self.width * self.height * self.count * np.dtype(self.dtype).itemsize


def input_specs(quick: bool) -> list[InputSpec]:
    """The RGB image (all three tiers) and the elevation model (lossless tiers only)."""
    rgb, dem = (2000, 2000) if quick else (10000, 8000)
    all_tiers = (Tier.VISUALIZATION, Tier.ANALYSIS, Tier.ARCHIVE)
    return [
        InputSpec("rgb", rgb, rgb, 3, "uint8", 0.5, None, all_tiers),
        InputSpec("dem", dem, dem, 1, "float32", 2.0, -9999.0, (Tier.ANALYSIS, Tier.ARCHIVE)),
    ]


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


class ValueNoise:
    """Deterministic multi-octave value noise, evaluated window by window."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, cells: Sequence[int]):
        self.octaves = [
            (cell, rng.random((height // cell + 2, width // cell + 2))) for cell in cells
        ]

    @staticmethod
    def _octave(grid: np.ndarray, cell: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        gy, gx = rows / cell, cols / cell
        iy, ix = gy.astype(np.intp), gx.astype(np.intp)
        ty, tx = _smoothstep(gy - iy)[:, None], _smoothstep(gx - ix)[None, :]
        top = grid[iy[:, None], ix] * (1 - tx) + grid[iy[:, None], ix + 1] * tx
        bottom = grid[iy[:, None] + 1, ix] * (1 - tx) + grid[iy[:, None] + 1, ix + 1] * tx
        return top * (1 - ty) + bottom * ty

    def __call__(self, rows: np.ndarray, cols: np.ndarray, persistence: float = 0.55) -> np.ndarray:
        """Noise in [0, 1] at the outer product of ``rows`` and ``cols``."""
        total = np.zeros((rows.size, cols.size))
        weight, norm = 1.0, 0.0
        for cell, grid in self.octaves:
            total += weight * self._octave(grid, cell, rows, cols)
            norm += weight
            weight *= persistence
        return total / norm


_PALETTE = np.array(
    [(74, 98, 52), (118, 138, 64), (164, 152, 112), (92, 82, 70), (196, 188, 168), (48, 66, 92)],
    dtype=np.float64,
)


def _rgb_strip(
    noise: dict[str, ValueNoise], rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Land-cover-like parcels with shading, a few linear features and sensor texture."""
    parcels = noise["parcels"](rows, cols, persistence=0.35)
    classes = np.clip(((parcels - 0.2) / 0.6 * len(_PALETTE)).astype(int), 0, len(_PALETTE) - 1)
    shade = 0.65 + 0.7 * noise["shade"](rows, cols)
    roads = np.abs(noise["roads"](rows, cols, persistence=0.3) - 0.5) < 0.004
    rgb = _PALETTE[classes] * shade[..., None]
    rgb[roads] = (205.0, 200.0, 190.0)
    rgb += rng.normal(0.0, 5.0, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _dem_strip(
    noise: dict[str, ValueNoise],
    rng: np.random.Generator,
    rows: np.ndarray,
    cols: np.ndarray,
    spec: InputSpec,
) -> np.ndarray:
    """Terrain-like heights in metres, centimetre noise, nodata outside a tilted footprint."""
    base = noise["terrain"](rows, cols, persistence=0.5)
    ridges = 1.0 - np.abs(2.0 * noise["ridges"](rows, cols) - 1.0)
    dem = 150.0 + 2200.0 * base**1.6 + 180.0 * ridges + rng.normal(0.0, 0.02, base.shape)
    # A scene footprint rotated by ~12 degrees: the corners are nodata.
    y = (rows[:, None] - spec.height / 2) / spec.height
    x = (cols[None, :] - spec.width / 2) / spec.width
    angle = np.deg2rad(12.0)
    u, v = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
    dem[(np.abs(u) > 0.42) | (np.abs(v) > 0.45)] = spec.nodata
    return dem.astype(np.float32)[None]


def ensure_input(spec: InputSpec) -> Path:
    """Generate ``spec`` (deterministically, from a fixed seed) unless it already exists."""
    if spec.path.exists():
        return spec.path
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {spec.path.name} ({spec.raw_bytes / MB:.0f} MB) ...", flush=True)
    rng = np.random.default_rng([SEED, spec.width, spec.count])
    w, h = spec.width, spec.height
    if spec.key == "rgb":
        noise = {
            "parcels": ValueNoise(rng, w, h, [900, 300, 110]),
            "shade": ValueNoise(rng, w, h, [1500, 500, 160, 50, 16, 5]),
            "roads": ValueNoise(rng, w, h, [2500, 800]),
        }
    else:
        noise = {
            "terrain": ValueNoise(rng, w, h, [3000, 1200, 480, 190, 75, 30, 12, 5]),
            "ridges": ValueNoise(rng, w, h, [700, 260, 90]),
        }
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": spec.count,
        "dtype": spec.dtype,
        "nodata": spec.nodata,
        "crs": "EPSG:32633",
        "transform": from_origin(400000.0, 5600000.0, spec.resolution, spec.resolution),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "NONE",
        "interleave": "pixel",
    }
    tmp = spec.path.with_suffix(".tmp.tif")
    strip = 512
    cols = np.arange(w, dtype=np.float64)
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, h, strip):
            rows = np.arange(row, min(row + strip, h), dtype=np.float64)
            strip_rng = np.random.default_rng([SEED, row])
            if spec.key == "rgb":
                data = _rgb_strip(noise, strip_rng, rows, cols)
            else:
                data = _dem_strip(noise, strip_rng, rows, cols, spec)
            dst.write(data, window=Window(0, row, w, rows.size))
    tmp.rename(spec.path)
    return spec.path


# ----------------------------------------------------------------------- measurement


@dataclass
class Sample:
    """One measured child process."""

    wall_s: float  # the whole child process
    op_s: float  # the write: in-child for Python children, the whole process for the CLI
    cpu_s: float  # user + system CPU time of the child (of the write, for Python children)
    maxrss_mb: float  # ru_maxrss of the child
    background_cores: float  # CPU used by other processes meanwhile, in cores
    base_rss_mb: float = 0.0  # the child's RSS before the write started
    outputs: dict[str, int] = field(default_factory=dict)  # output file -> bytes
    details: dict[str, Any] = field(default_factory=dict)  # anything else the child reported


def _bundled_libgdal() -> str:
    libs = Path(rasterio.__file__).resolve().parent.parent / "rasterio.libs"
    (path,) = glob.glob(str(libs / "libgdal-*.so*"))
    return path


def warm_up(path: Path) -> None:
    """Read the input once so that every writer starts from the page cache."""
    with open(path, "rb") as f:
        while f.read(16 * MB):
            pass


def machine_busy_s() -> float:
    """CPU seconds all cores of this machine have spent busy since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(max_wait_s: float, threshold_cores: float = QUIET_CORES) -> float:
    """Wait (at most ``max_wait_s``) until other processes use < ``threshold_cores``.

    The machine may be shared (test suites, other benchmarks); measuring while it is
    busy mostly measures them. Returns the last observed load, in cores.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_s()
        time.sleep(1.0)
        load = machine_busy_s() - before
        if load < threshold_cores or time.monotonic() >= deadline:
            return load


# Peak RSS is ru_maxrss of the measured process. Linux folds the memory of a forked
# child before its exec into its ru_maxrss, so a child of this (large) process would
# report at least our own size; the measured process is therefore started by a tiny
# launcher (``python -S``, ~9 MB) and its rusage comes from the launcher's wait4. The
# launcher also counts the CPU the rest of the machine used meanwhile.
_LAUNCHER = """
import json, os, sys, time
def busy():
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:9]]
    return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")
result, argv = sys.argv[1], sys.argv[2:]
busy0, start = busy(), time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall, busy1 = time.perf_counter() - start, busy()
cpu = usage.ru_utime + usage.ru_stime
with open(result, "w") as f:
    json.dump({"wall_s": wall, "cpu_s": cpu, "maxrss_kb": usage.ru_maxrss,
               "background_cores": max(0.0, (busy1 - busy0 - cpu) / wall)}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


_RESULT_KEYS = {"op_s", "base_rss_mb", "base_cpu_s"}


def run_child(argv: list[str], env: dict[str, str], result_file: Path | None = None) -> Sample:
    """Run ``argv`` to completion in a fresh process: its time, CPU and peak RSS.

    A Python child may write ``{"op_s", "base_rss_mb", "base_cpu_s", "outputs", ...}``
    to ``result_file``; other keys end up in ``Sample.details``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        usage_file = Path(tmp) / "usage.json"
        with open(Path(tmp) / "log", "w+b") as log:
            launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *argv]
            proc = subprocess.run(launcher, env=env, stdout=log, stderr=log, check=False)
            if proc.returncode != 0:
                log.seek(0)
                raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}):\n{log.read().decode()}")
        usage = json.loads(usage_file.read_text())
    sample = Sample(
        wall_s=usage["wall_s"],
        op_s=usage["wall_s"],
        cpu_s=usage["cpu_s"],
        maxrss_mb=usage["maxrss_kb"] / 1024,
        background_cores=usage["background_cores"],
    )
    if result_file is not None:
        inner = json.loads(result_file.read_text())
        result_file.unlink()
        sample.op_s, sample.base_rss_mb = inner["op_s"], inner["base_rss_mb"]
        sample.cpu_s -= inner["base_cpu_s"]  # the write, not the interpreter start-up
        sample.outputs = inner.pop("outputs")
        sample.details = {k: v for k, v in inner.items() if k not in _RESULT_KEYS}
    return sample


def gdal_args(options: dict[str, str], resampling: str) -> list[str]:
    """``gdal_translate`` arguments for the COG driver with these creation options."""
    args = ["-q", "-of", "COG"]
    for key, value in {**options, "RESAMPLING": resampling}.items():
        args += ["-co", f"{key}={value}"]
    return args


@dataclass
class Case:
    """One thing to measure: a writer, an input and the tiers it writes."""

    input_key: str
    writer: str  # CLI | BUNDLED | OURS
    tiers: tuple[Tier, ...]
    label: str = ""  # "" for the regular cases; "no-predictor" for the size comparison
    samples: list[Sample] = field(default_factory=list)

    @property
    def name(self) -> str:
        tiers = "+".join(t.value for t in self.tiers)
        return "/".join(p for p in (self.input_key, tiers, self.writer, self.label) if p)

    @property
    def best(self) -> Sample:
        """The fastest sample: the one least disturbed by anything else."""
        return min(self.samples, key=lambda s: s.op_s)

    @property
    def seconds(self) -> float:
        return self.best.op_s

    @property
    def peak_rss_mb(self) -> float:
        """The worst peak RSS over the repeats."""
        return max(s.maxrss_mb for s in self.samples)

    def net_rss_mb(self, cli_base_mb: float) -> float:
        """Peak RSS minus what the process held before writing."""
        base = cli_base_mb if self.writer == CLI else min(s.base_rss_mb for s in self.samples)
        return self.peak_rss_mb - base

    @property
    def output_bytes(self) -> int:
        return sum(self.samples[-1].outputs.values())


def worker_argv(task: dict[str, Any]) -> list[str]:
    """A child running ``worker(task)`` of this script."""
    return [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(task)]


def run_case(
    case: Case,
    spec: InputSpec,
    env: dict[str, str],
    threads: str,
    out_root: Path,
    max_wait_s: float,
) -> Sample:
    """Measure ``case`` once, in a fresh child, and append the sample."""
    out_dir = out_root / case.name.replace("/", "_")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    with rasterio.open(spec.path) as src:
        resampling = overview_resampling(src).name.upper()
    os.sync()
    warm_up(spec.path)
    wait_until_quiet(max_wait_s)
    result_file = out_dir.parent / f".{out_dir.name}.json"
    if case.writer == OURS:
        task = {
            "op": OURS,
            "src": str(spec.path),
            "tiers": [t.value for t in case.tiers],
            "out_dir": str(out_dir),
            "threads": threads,
            "result": str(result_file),
        }
        sample = run_child(worker_argv(task), env, result_file)
    else:
        (tier,) = case.tiers
        options = creation_options(tier, spec.dtype, threads)
        if case.label == "no-predictor":
            options = {k: v for k, v in options.items() if not k.endswith("PREDICTOR")}
        args = gdal_args(options, resampling)
        dst = out_dir / f"cog.{tier.value}.tif"
        if case.writer == CLI:
            sample = run_child([CLI, *args, str(spec.path), str(dst)], env)
            sample.outputs = {dst.name: dst.stat().st_size}
        else:
            task = {
                "op": BUNDLED,
                "src": str(spec.path),
                "dst": str(dst),
                "args": args,
                "result": str(result_file),
            }
            sample = run_child(worker_argv(task), env, result_file)
    case.samples.append(sample)
    return sample


# ---------------------------------------------------------------------------- worker


def _self_rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _translate_bundled(src: str, dst: str, args: list[str]) -> None:
    """``gdal_translate`` as a library call in rasterio's bundled GDAL."""
    lib = ctypes.CDLL(_bundled_libgdal())
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    lib.GDALAllRegister()
    lib.GDALOpen.restype, lib.GDALOpen.argtypes = vp, [cp, ctypes.c_int]
    lib.GDALTranslateOptionsNew.restype = vp
    lib.GDALTranslateOptionsNew.argtypes = [ctypes.POINTER(cp), vp]
    lib.GDALTranslate.restype = vp
    lib.GDALTranslate.argtypes = [cp, vp, vp, ctypes.POINTER(ctypes.c_int)]
    lib.GDALClose.argtypes = [vp]
    lib.GDALTranslateOptionsFree.argtypes = [vp]
    lib.CPLGetLastErrorMsg.restype = cp
    argv = (cp * (len(args) + 1))(*[a.encode() for a in args], None)
    options = lib.GDALTranslateOptionsNew(argv, None)
    source = lib.GDALOpen(src.encode(), 0)
    if not source:
        raise RuntimeError(f"cannot open {src}: {lib.CPLGetLastErrorMsg().decode()}")
    usage_error = ctypes.c_int(0)
    out = lib.GDALTranslate(dst.encode(), source, options, ctypes.byref(usage_error))
    if not out:
        raise RuntimeError(f"GDALTranslate failed: {lib.CPLGetLastErrorMsg().decode()}")
    lib.GDALClose(out)
    lib.GDALClose(source)
    lib.GDALTranslateOptionsFree(options)


def worker(task: dict[str, Any]) -> None:
    """Child side of a measurement: do one write, report its time and base RSS."""
    base_rss, base_cpu = _self_rss_mb(), time.process_time()
    start = time.perf_counter()
    if task["op"] == OURS:
        tiers = [Tier(t) for t in task["tiers"]]
        cogs = write_cog_tiers(task["src"], tiers, task["out_dir"], threads=task["threads"])
        outputs = {c.path.name: c.size_bytes for c in cogs.values()}
    else:
        _translate_bundled(task["src"], task["dst"], task["args"])
        outputs = {Path(task["dst"]).name: Path(task["dst"]).stat().st_size}
    op_s = time.perf_counter() - start
    result = {"op_s": op_s, "base_rss_mb": base_rss, "base_cpu_s": base_cpu, "outputs": outputs}
    Path(task["result"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- reports


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first two columns left-aligned, the others right-aligned."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _vs_target(ratio: float, ok: bool) -> str:
    return f"{ratio:.2f} {'ok' if ok else 'MISS'}"


def _per_writer(cases: dict[str, Case], value) -> dict[str, Any]:
    return {writer: value(case) for writer, case in cases.items()}


def single_tier_figures(spec: InputSpec, tier: Tier, by: dict, cli_base_mb: float) -> dict:
    """The three writers on one tier of one input."""
    cases = {w: by[(spec.key, w, (tier,), "")] for w in WRITERS}
    cli, bundled, ours = (cases[w] for w in WRITERS)
    return {
        "input": spec.key,
        "tier": tier.value,
        "seconds": _per_writer(cases, lambda c: c.seconds),
        "process_seconds": _per_writer(cases, lambda c: c.best.wall_s),
        "cpu_seconds": _per_writer(cases, lambda c: c.best.cpu_s),
        "background_cores": _per_writer(cases, lambda c: c.best.background_cores),
        "throughput_mb_s": _per_writer(cases, lambda c: spec.raw_bytes / MB / c.seconds),
        "peak_rss_mb": _per_writer(cases, lambda c: c.peak_rss_mb),
        "net_rss_mb": _per_writer(cases, lambda c: c.net_rss_mb(cli_base_mb)),
        "output_bytes": _per_writer(cases, lambda c: c.output_bytes),
        "throughput_ratio_vs_gdal_translate": cli.seconds / ours.seconds,
        "throughput_ratio_vs_bundled": bundled.seconds / ours.seconds,
        "cpu_ratio_vs_gdal_translate": ours.best.cpu_s / cli.best.cpu_s,
        "memory_ratio_vs_gdal_translate": ours.peak_rss_mb / cli.peak_rss_mb,
        "net_memory_ratio_vs_gdal_translate": (
            ours.net_rss_mb(cli_base_mb) / cli.net_rss_mb(cli_base_mb)
        ),
        "memory_ratio_vs_bundled": ours.peak_rss_mb / bundled.peak_rss_mb,
    }


def all_tiers_figures(spec: InputSpec, by: dict) -> dict:
    """Ours writing every tier in one call against the sum of single-tier writes."""
    ours_all = by[(spec.key, OURS, spec.tiers, "")]
    singles = {w: [by[(spec.key, w, (t,), "")] for t in spec.tiers] for w in WRITERS}
    sums = {w: sum(c.seconds for c in cs) for w, cs in singles.items()}
    cpu_sums = {w: sum(c.best.cpu_s for c in cs) for w, cs in singles.items()}
    return {
        "input": spec.key,
        "tiers": [t.value for t in spec.tiers],
        "ours_all_seconds": ours_all.seconds,
        "ours_all_cpu_seconds": ours_all.best.cpu_s,
        "ours_all_background_cores": ours_all.best.background_cores,
        "sum_of_single_tier_seconds": sums,
        "sum_of_single_tier_cpu_seconds": cpu_sums,
        "ratio_vs_sum_gdal_translate": ours_all.seconds / sums[CLI],
        "ratio_vs_sum_bundled": ours_all.seconds / sums[BUNDLED],
        "ratio_vs_sum_ours_single": ours_all.seconds / sums[OURS],
        "cpu_ratio_vs_sum_gdal_translate": ours_all.best.cpu_s / cpu_sums[CLI],
        "peak_rss_mb": ours_all.peak_rss_mb,
        "max_single_tier_peak_rss_mb": {
            w: max(c.peak_rss_mb for c in cs) for w, cs in singles.items()
        },
        "output_bytes": ours_all.samples[-1].outputs,
    }


def size_figures(spec: InputSpec, tier: Tier, by: dict) -> dict:
    """Output sizes of one tier."""
    ours_all = by[(spec.key, OURS, spec.tiers, "")]
    return {
        "input": spec.key,
        "tier": tier.value,
        "source_bytes": spec.path.stat().st_size,
        "ours_bytes": by[(spec.key, OURS, (tier,), "")].output_bytes,
        "ours_all_tiers_bytes": ours_all.samples[-1].outputs[f"cog.{tier.value}.tif"],
        "gdal_translate_bytes": by[(spec.key, CLI, (tier,), "")].output_bytes,
    }


def predictor_figures(by: dict) -> dict:
    """RGB analysis tier with PREDICTOR=2 against rio-cogeo's plain DEFLATE profile."""
    with_pred = by[("rgb", BUNDLED, (Tier.ANALYSIS,), "")]
    without = by[("rgb", BUNDLED, (Tier.ANALYSIS,), "no-predictor")]
    return {
        "input": "rgb",
        "tier": "analysis",
        "deflate_predictor2_bytes": with_pred.output_bytes,
        "deflate_no_predictor_bytes": without.output_bytes,
        "saving": 1 - with_pred.output_bytes / without.output_bytes,
        "predictor2_seconds": with_pred.seconds,
        "no_predictor_seconds": without.seconds,
    }


def summarise(specs: list[InputSpec], cases: list[Case], cli_base_mb: float) -> dict[str, Any]:
    """All figures derived from the measured cases."""
    by = {(c.input_key, c.writer, c.tiers, c.label): c for c in cases}
    return {
        "single_tier": [single_tier_figures(s, t, by, cli_base_mb) for s in specs for t in s.tiers],
        "all_tiers": [all_tiers_figures(s, by) for s in specs],
        "sizes": [size_figures(s, t, by) for s in specs for t in s.tiers],
        "predictor": predictor_figures(by),
    }


def render(figures: dict[str, Any], cli_base_mb: float) -> str:
    """The figures as plain-text tables."""
    single, all_tiers = figures["single_tier"], figures["all_tiers"]
    sizes, pred = figures["sizes"], figures["predictor"]
    out = ["Single tier: seconds of the write (best of repeats), throughput ratio ours/other"]
    out.append(
        table(
            [
                "input",
                "tier",
                "gdal_translate",
                "bundled",
                "ours",
                "ours MB/s",
                f"ratio vs gdal_translate (>={TARGET_THROUGHPUT})",
                "vs bundled",
                "CPU s gdal_translate",
                "CPU s ours",
            ],
            [
                [
                    r["input"],
                    r["tier"],
                    *(f"{r['seconds'][w]:.2f}" for w in WRITERS),
                    f"{r['throughput_mb_s'][OURS]:.1f}",
                    _vs_target(
                        r["throughput_ratio_vs_gdal_translate"],
                        r["throughput_ratio_vs_gdal_translate"] >= TARGET_THROUGHPUT,
                    ),
                    f"{r['throughput_ratio_vs_bundled']:.2f}",
                    f"{r['cpu_seconds'][CLI]:.2f}",
                    f"{r['cpu_seconds'][OURS]:.2f}",
                ]
                for r in single
            ],
        )
    )
    title = (
        "Single tier: peak RSS in MB (worst of repeats); net = minus the RSS before the "
        f"write (gdal_translate: {cli_base_mb:.0f} MB, its RSS for --version)"
    )
    out += ["", title]
    out.append(
        table(
            [
                "input",
                "tier",
                "gdal_translate",
                "bundled",
                "ours",
                f"ratio ours/gdal_translate (<={TARGET_MEMORY})",
                "net ratio",
                "ours/bundled",
            ],
            [
                [
                    r["input"],
                    r["tier"],
                    *(f"{r['peak_rss_mb'][w]:.0f}" for w in WRITERS),
                    _vs_target(
                        r["memory_ratio_vs_gdal_translate"],
                        r["memory_ratio_vs_gdal_translate"] <= TARGET_MEMORY,
                    ),
                    f"{r['net_memory_ratio_vs_gdal_translate']:.2f}",
                    f"{r['memory_ratio_vs_bundled']:.2f}",
                ]
                for r in single
            ],
        )
    )
    title = (
        "All applicable tiers: ours in one call vs the sum of the single-tier writes "
        "(seconds; ratio = ours all / sum)"
    )
    out += ["", title]
    out.append(
        table(
            [
                "input",
                "tiers",
                "ours all",
                "sum gdal_translate",
                "sum bundled",
                "sum ours single",
                f"ratio vs gdal_translate (<={TARGET_ALL_TIERS})",
                "vs bundled",
                "vs ours single",
                "CPU ratio vs gdal_translate",
                "peak RSS MB",
            ],
            [
                [
                    r["input"],
                    "+".join(t[:3] for t in r["tiers"]),
                    f"{r['ours_all_seconds']:.2f}",
                    *(f"{r['sum_of_single_tier_seconds'][w]:.2f}" for w in WRITERS),
                    _vs_target(
                        r["ratio_vs_sum_gdal_translate"],
                        r["ratio_vs_sum_gdal_translate"] <= TARGET_ALL_TIERS,
                    ),
                    f"{r['ratio_vs_sum_bundled']:.2f}",
                    f"{r['ratio_vs_sum_ours_single']:.2f}",
                    f"{r['cpu_ratio_vs_sum_gdal_translate']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
                for r in all_tiers
            ],
        )
    )
    out += ["", "Output sizes in MB (ratio = output / source file)"]
    out.append(
        table(
            ["input", "tier", "source", "ours", "ratio", "ours, all-tiers call", "gdal_translate"],
            [
                [
                    r["input"],
                    r["tier"],
                    f"{r['source_bytes'] / MB:.1f}",
                    f"{r['ours_bytes'] / MB:.1f}",
                    f"{r['ours_bytes'] / r['source_bytes']:.3f}",
                    f"{r['ours_all_tiers_bytes'] / MB:.1f}",
                    f"{r['gdal_translate_bytes'] / MB:.1f}",
                ]
                for r in sizes
            ],
        )
    )
    with_mb, without_mb = (
        pred[k] / MB for k in ("deflate_predictor2_bytes", "deflate_no_predictor_bytes")
    )
    note = (
        f"RGB analysis tier: DEFLATE + PREDICTOR=2 {with_mb:.1f} MB vs {without_mb:.1f} MB "
        f"without a predictor (rio-cogeo's 'deflate' profile): {100 * pred['saving']:.1f}% "
        f"smaller; write {pred['predictor2_seconds']:.2f} s vs "
        f"{pred['no_predictor_seconds']:.2f} s (bundled GDAL)"
    )
    out += ["", note]
    background = [s for r in single for s in r["background_cores"].values()]
    background += [r["ours_all_background_cores"] for r in all_tiers]
    note = (
        f"Other processes used {statistics.median(background):.2f} cores (median, "
        f"max {max(background):.2f}) during the runs kept; CPU seconds are less sensitive "
        "to that than wall time."
    )
    out += ["", note]
    return "\n".join(out)


# ------------------------------------------------------------------------------ main


def build_cases(specs: list[InputSpec]) -> Iterator[Case]:
    """Every measurement of one repeat, in the order they run."""
    for spec in specs:
        for tier in spec.tiers:
            for writer in WRITERS:
                yield Case(spec.key, writer, (tier,))
        yield Case(spec.key, OURS, spec.tiers)
        if spec.key == "rgb":
            yield Case(spec.key, BUNDLED, (Tier.ANALYSIS,), "no-predictor")


def _gdal_versions() -> dict[str, str]:
    cli = subprocess.run([CLI, "--version"], capture_output=True, text=True, check=True)
    return {
        "gdal_translate": cli.stdout.strip(),
        "bundled": rasterio.__gdal_version__,
        "rasterio": rasterio.__version__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the inputs if needed, measure, print the tables and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2000x2000 inputs, a smoke test")
    parser.add_argument("--repeat", type=int, help="runs per measurement (default 3)")
    parser.add_argument("--cachemax", type=int, default=512, help="GDAL_CACHEMAX in MB")
    parser.add_argument("--threads", default="ALL_CPUS", help="NUM_THREADS / GDAL_NUM_THREADS")
    parser.add_argument("--output", type=Path, help=f"JSON results (default {RESULTS_PATH.name})")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        help="seconds to wait for other processes to go quiet before each run",
    )
    parser.add_argument(
        "--max-extra",
        type=int,
        default=3,
        help="extra runs of a measurement whose best run was disturbed by other processes",
    )
    parser.add_argument("--keep-outputs", action="store_true", help="keep the written COGs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    repeat = args.repeat or 3
    output = args.output or (QUICK_RESULTS_PATH if args.quick else RESULTS_PATH)
    if shutil.which(CLI) is None:
        parser.error(f"{CLI} is not on PATH (apt-get install gdal-bin)")

    specs = input_specs(args.quick)
    for spec in specs:
        ensure_input(spec)
    env = {**os.environ, "GDAL_CACHEMAX": str(args.cachemax), "GDAL_NUM_THREADS": args.threads}
    settings = {
        "GDAL_CACHEMAX_MB": args.cachemax,
        "GDAL_NUM_THREADS": args.threads,
        "NUM_THREADS (creation option)": args.threads,
        "repeat": repeat,
        "time": "best of repeats; in-child time of the write for Python children",
        "quiet gate": f"wait up to {args.max_wait:.0f} s for other processes < {QUIET_CORES} "
        f"cores; up to {args.max_extra} extra runs if the best run was disturbed",
        "memory": "worst of repeats (ru_maxrss of a fresh child)",
        "quick": args.quick,
    }
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **_gdal_versions(),
    }
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print("machine:  " + ", ".join(f"{k}={v}" for k, v in machine.items()))

    cli_base = run_child([CLI, "--version"], env).maxrss_mb
    out_root = DATA_DIR / "out"
    cases = list(build_cases(specs))
    spec_by_key = {s.key: s for s in specs}

    def measure(case: Case, label: str) -> None:
        spec = spec_by_key[case.input_key]
        sample = run_case(case, spec, env, args.threads, out_root, args.max_wait)
        print(
            f"[{label}] {case.name:<48} {sample.op_s:7.2f} s {sample.cpu_s:7.2f} cpu-s "
            f"{sample.maxrss_mb:6.0f} MB (others: {sample.background_cores:.2f} cores)",
            flush=True,
        )

    for rep in range(repeat):
        for case in cases:
            measure(case, f"{rep + 1}/{repeat}")
    # On a shared machine: measure again what no undisturbed run was measured for.
    for case in cases:
        for extra in range(args.max_extra):
            if case.best.background_cores <= QUIET_CORES:
                break
            measure(case, f"extra {extra + 1}")
    if not args.keep_outputs:
        shutil.rmtree(out_root, ignore_errors=True)

    figures = summarise(specs, cases, cli_base)
    print()
    print(render(figures, cli_base))
    results = {
        "settings": settings,
        "machine": machine,
        "inputs": [
            {
                "key": s.key,
                "path": str(s.path.relative_to(HERE.parent)),
                "width": s.width,
                "height": s.height,
                "count": s.count,
                "dtype": s.dtype,
                "nodata": s.nodata,
                "bytes": s.path.stat().st_size,
                "tiers": [t.value for t in s.tiers],
            }
            for s in specs
        ],
        "gdal_translate_base_rss_mb": cli_base,
        **figures,
        "samples": {c.name: [asdict(s) for s in c.samples] for c in cases},
        "median_op_seconds": {c.name: statistics.median(s.op_s for s in c.samples) for c in cases},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
