"""Where the time of a multi-tier ``write_cog_tiers`` goes, and what would make it faster.

Usage::

    .venv/bin/python benchmarks/cog_tiers_experiments.py [--quick] [--repeat N] [--only NAME]
        [--input rgb|dem] [--source-compress DEFLATE] [--codec-check]

Each variant below is a copy of the multi-tier path of
``geo_platform/lib/raster/cog.py`` with one thing changed, timed stage by stage in a
fresh child process (peak RSS as in ``cog_tiers.py``). Uses the inputs of
``cog_tiers.py``; writes ``benchmarks/results/cog_tiers_experiments.json``.

Variants (``source`` = where the tiers are encoded from, ``encode`` = how):

* ``production``: uncompressed full copy + internal overviews, thread pool of
  ``min(tiers, cpus)`` encoders each with ``NUM_THREADS=ALL_CPUS`` (what cog.py does);
* ``sequential``: same intermediate, tiers one after another (ALL_CPUS each);
* ``pool_1thread``: same intermediate, one encoder thread per tier, ``NUM_THREADS=1``;
* ``vrt_ovr``: no full-resolution copy: a VRT of the source plus an external ``.ovr``;
* ``vrt_ovr_seq``: ``vrt_ovr`` with sequential encoding;
* ``lossless_first``: the first lossless tier straight through the COG driver, the
  other tiers from it (``FORCE_USE_EXISTING``), in parallel;
* ``single_seq``: no sharing: the single-tier path once per tier, one after another;
* ``production_arena2`` / ``sequential_arena2``: with ``MALLOC_ARENA_MAX=2``, to see
  how much of the peak RSS is glibc's per-thread arenas rather than live data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
import rasterio.shutil
from cog_tiers import (
    BUNDLED,
    CLI,
    DATA_DIR,
    HERE,
    InputSpec,
    ensure_input,
    input_specs,
    run_child,
    table,
    wait_until_quiet,
    warm_up,
    worker_argv,
)

from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.cog import (
    BLOCKSIZE,
    creation_options,
    overview_factors,
    overview_resampling,
)
from geo_platform.lib.raster.tiers import Tier

RESULTS_PATH = HERE / "results" / "cog_tiers_experiments.json"
THREADS = "ALL_CPUS"
Stages = dict[str, dict[str, float]]
# Variants that encode from cog.py's uncompressed intermediate, and how they encode.
INTERMEDIATE_MODES = {
    "production": "pool",
    "production_arena2": "pool",
    "sequential": "sequential",
    "sequential_arena2": "sequential",
    "pool_1thread": "pool_1thread",
}


@contextmanager
def _stage(stages: Stages, name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    stages[name] = {"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _full_copy_with_overviews(src: rasterio.DatasetReader, tmp: Path, stages: Stages) -> Path:
    """What cog.py's ``_write_intermediate`` does."""
    path = tmp / "source.tif"
    with _stage(stages, "copy"):
        rasterio.shutil.copy(
            src, path, driver="GTiff", TILED="YES", BLOCKXSIZE=str(BLOCKSIZE),
            BLOCKYSIZE=str(BLOCKSIZE), COMPRESS="NONE", BIGTIFF="IF_SAFER", NUM_THREADS=THREADS,
        )  # fmt: skip
    with _stage(stages, "overviews"):
        factors = overview_factors(src.width, src.height)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES"), rasterio.open(path, "r+") as dst:
            dst.build_overviews(factors, overview_resampling(src))
    return path


def _vrt_with_overviews(src: rasterio.DatasetReader, tmp: Path, stages: Stages) -> Path:
    """A VRT pointing at the source, with external (``.vrt.ovr``) uncompressed overviews."""
    path = tmp / "source.vrt"
    with _stage(stages, "copy"):
        rasterio.shutil.copy(src, path, driver="VRT")
    with _stage(stages, "overviews"):
        factors = overview_factors(src.width, src.height)
        env = {"GDAL_TIFF_OVR_BLOCKSIZE": str(BLOCKSIZE), "BIGTIFF_OVERVIEW": "IF_SAFER"}
        with rasterio.Env(**env), rasterio.open(path, "r+") as dst:
            dst.build_overviews(factors, overview_resampling(src))
    return path


def _encode(source: Path, dst: Path, tier: Tier, dtype: str, threads: str) -> None:
    with rasterio.open(source) as src:
        rasterio.shutil.copy(
            src, dst, driver="COG", OVERVIEWS="FORCE_USE_EXISTING",
            **creation_options(tier, dtype, threads),
        )  # fmt: skip


def _encode_all(
    source: Path, outputs: dict[Tier, Path], dtype: str, mode: str, stages: Stages
) -> None:
    """Encode every tier from ``source``: "pool", "pool_1thread" or "sequential"."""
    if mode == "sequential":
        for tier, dst in outputs.items():
            with _stage(stages, f"encode {tier.value}"):
                _encode(source, dst, tier, dtype, THREADS)
        return
    threads = "1" if mode == "pool_1thread" else THREADS
    workers = len(outputs) if mode == "pool_1thread" else min(len(outputs), os.cpu_count() or 1)
    with _stage(stages, "encode"), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_encode, source, dst, t, dtype, threads) for t, dst in outputs.items()
        ]
        for future in futures:
            future.result()


def _single(src: rasterio.DatasetReader, dst: Path, tier: Tier) -> None:
    """cog.py's single-tier path."""
    resampling = overview_resampling(src).name.upper()
    opts = creation_options(tier, src.dtypes[0], THREADS)
    rasterio.shutil.copy(src, dst, driver="COG", RESAMPLING=resampling, **opts)


def run_variant(name: str, source: str, tiers: list[Tier], out_dir: Path) -> Stages:
    """Write ``tiers`` of ``source`` the way variant ``name`` does; its stage timings."""
    stages: Stages = {}
    outputs = {tier: out_dir / f"cog.{tier.value}.tif" for tier in tiers}
    with (
        rasterio.Env(GDAL_NUM_THREADS=THREADS),
        rasterio.open(source) as src,
        tempfile.TemporaryDirectory(dir=out_dir, prefix=".overviews-") as tmp_name,
    ):
        tmp, dtype = Path(tmp_name), src.dtypes[0]
        if name in INTERMEDIATE_MODES:
            mode = INTERMEDIATE_MODES[name]
            intermediate = _full_copy_with_overviews(src, tmp, stages)
            _encode_all(intermediate, outputs, dtype, mode, stages)
        elif name in ("vrt_ovr", "vrt_ovr_seq"):
            vrt = _vrt_with_overviews(src, tmp, stages)
            _encode_all(
                vrt, outputs, dtype, "sequential" if name.endswith("seq") else "pool", stages
            )
        elif name == "lossless_first":
            first = next(t for t in tiers if t is not Tier.VISUALIZATION)
            with _stage(stages, f"single {first.value}"):
                _single(src, outputs[first], first)
            rest = {t: p for t, p in outputs.items() if t is not first}
            _encode_all(outputs[first], rest, dtype, "pool", stages)
        elif name == "single_seq":
            for tier, dst in outputs.items():
                with _stage(stages, f"single {tier.value}"):
                    _single(src, dst, tier)
        else:
            raise ValueError(f"unknown variant {name!r}")
    return stages


VARIANTS = [
    "production",
    "sequential",
    "pool_1thread",
    "vrt_ovr",
    "vrt_ovr_seq",
    "lossless_first",
    "single_seq",
    "production_arena2",
    "sequential_arena2",
]
VARIANT_ENV: dict[str, dict[str, str]] = {
    "production_arena2": {"MALLOC_ARENA_MAX": "2"},
    "sequential_arena2": {"MALLOC_ARENA_MAX": "2"},
}


def worker(task: dict[str, Any]) -> None:
    """Child side: run one variant and report its total time, stages and output sizes."""
    out_dir = Path(task["out_dir"])
    tiers = [Tier(t) for t in task["tiers"]]
    base_cpu = time.process_time()
    start = time.perf_counter()
    stages = run_variant(task["variant"], task["src"], tiers, out_dir)
    op_s = time.perf_counter() - start
    paths = sorted(out_dir.glob("cog.*.tif"))
    result = {
        "op_s": op_s,
        "base_rss_mb": 0.0,
        "base_cpu_s": base_cpu,
        "outputs": {p.name: p.stat().st_size for p in paths},
        "sha256": {p.name: sha256_file(p) for p in paths},  # same bytes as production?
        "stages": stages,
    }
    Path(task["result"]).write_text(json.dumps(result))


@dataclass(frozen=True)
class Source:
    """A benchmark input as the experiments use it, possibly a compressed copy."""

    key: str
    path: Path
    tiers: tuple[Tier, ...]


def source(spec: InputSpec, compress: str) -> Source:
    """``spec`` itself, or (made once) a tiled copy of it compressed with ``compress``.

    Encoding every tier from a VRT decodes a compressed source once per tier, where the
    uncompressed intermediate of cog.py decodes it once.
    """
    path = ensure_input(spec)
    if compress == "NONE":
        return Source(spec.key, path, spec.tiers)
    copy = path.with_name(f"{path.stem}.{compress.lower()}.tif")
    if not copy.exists():
        options = {"COMPRESS": compress, "TILED": "YES", "BLOCKXSIZE": "512",
                   "BLOCKYSIZE": "512", "NUM_THREADS": THREADS}  # fmt: skip
        if compress == "DEFLATE":
            options["PREDICTOR"] = "3" if spec.dtype == "float32" else "2"
        tmp = copy.with_suffix(".tmp.tif")
        rasterio.shutil.copy(path, tmp, driver="GTiff", **options)
        tmp.rename(copy)
    return Source(f"{spec.key}.{compress.lower()}", copy, spec.tiers)


def measure(spec: Source, variant: str, env: dict[str, str], max_wait: float) -> dict:
    """One run of ``variant`` on ``spec`` in a fresh child."""
    out_dir = DATA_DIR / "experiments" / f"{spec.key}_{variant}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    result_file = out_dir.parent / f".{out_dir.name}.json"
    task = {"variant": variant, "src": str(spec.path), "tiers": [t.value for t in spec.tiers],
            "out_dir": str(out_dir), "result": str(result_file)}  # fmt: skip
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(task)]
    os.sync()
    warm_up(spec.path)
    wait_until_quiet(max_wait)
    sample = run_child(argv, {**env, **VARIANT_ENV.get(variant, {})}, result_file)
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"s": sample.op_s, "cpu_s": sample.cpu_s, "peak_rss_mb": sample.maxrss_mb,
            "background_cores": sample.background_cores, "outputs": sample.outputs,
            "sha256": sample.details["sha256"], "stages": sample.details["stages"]}  # fmt: skip


def codec_check(spec: InputSpec, env: dict[str, str], repeat: int, max_wait: float) -> dict:
    """Plain JPEG encoding (JPEG driver, QUALITY=85) in the system GDAL and in rasterio's.

    Both are ``GDALTranslate``; the codec is libjpeg-turbo in Debian's GDAL and IJG
    libjpeg 9 in the rasterio wheel, which is what the visualization tier pays for.
    """
    args = ["-q", "-of", "JPEG", "-co", "QUALITY=85"]
    out_dir = DATA_DIR / "experiments" / "codec_check"
    out_dir.mkdir(parents=True, exist_ok=True)
    dst, result_file = out_dir / "rgb.jpg", out_dir / "result.json"
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for writer in (CLI, BUNDLED):
            dst.unlink(missing_ok=True)
            os.sync()
            warm_up(spec.path)
            wait_until_quiet(max_wait)
            if writer == CLI:
                sample = run_child([CLI, *args, str(spec.path), str(dst)], env)
            else:
                task = {"op": BUNDLED, "src": str(spec.path), "dst": str(dst), "args": args,
                        "result": str(result_file)}  # fmt: skip
                sample = run_child(worker_argv(task), env, result_file)
            print(f"jpeg/{writer:<16} {sample.op_s:7.2f} s {sample.cpu_s:7.2f} cpu-s "
                  f"(others {sample.background_cores:.2f})", flush=True)  # fmt: skip
            if writer not in best or sample.cpu_s < best[writer]["cpu_s"]:
                best[writer] = {"s": sample.op_s, "cpu_s": sample.cpu_s,
                                "bytes": dst.stat().st_size}  # fmt: skip
    shutil.rmtree(out_dir, ignore_errors=True)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the variants on both inputs and print a stage table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 2000x2000 inputs")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant (best kept)")
    parser.add_argument("--only", action="append", choices=VARIANTS, help="run only these")
    parser.add_argument("--input", action="append", choices=["rgb", "dem"], help="inputs")
    parser.add_argument("--cachemax", type=int, default=512, help="GDAL_CACHEMAX in MB")
    parser.add_argument("--max-wait", type=float, default=60.0, help="quiet-gate timeout, s")
    parser.add_argument("--codec-check", action="store_true", help="also time plain JPEG")
    parser.add_argument(
        "--source-compress",
        default="NONE",
        choices=["NONE", "DEFLATE"],
        help="encode from a compressed copy of the inputs (made once in .data/)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    env = {**os.environ, "GDAL_CACHEMAX": str(args.cachemax), "GDAL_NUM_THREADS": THREADS}
    inputs = [s for s in input_specs(args.quick) if not args.input or s.key in args.input]
    specs = [source(s, args.source_compress) for s in inputs]
    variants = args.only or VARIANTS
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for spec in specs:
            for variant in variants:
                sample = measure(spec, variant, env, args.max_wait)
                key = f"{spec.key}/{variant}"
                stages = " ".join(f"{k}={v['s']:.2f}" for k, v in sample["stages"].items())
                print(f"{key:<28} {sample['s']:7.2f} s {sample['cpu_s']:7.2f} cpu-s "
                      f"{sample['peak_rss_mb']:6.0f} MB (others {sample['background_cores']:.2f}) "
                      f"{stages}", flush=True)  # fmt: skip
                best = results.get(key)
                peak = max(sample["peak_rss_mb"], best["peak_rss_mb"] if best else 0.0)
                if best is None or sample["s"] < best["s"]:
                    results[key] = sample
                results[key]["peak_rss_mb"] = peak
    codecs = None
    if args.codec_check:
        rgb = next(s for s in input_specs(args.quick) if s.key == "rgb")
        codecs = codec_check(rgb, env, args.repeat, args.max_wait)
    rows = [
        [*key.split("/"), f"{r['s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['background_cores']:.2f}",
         f"{r['peak_rss_mb']:.0f}",
         "  ".join(f"{k} {v['s']:.2f}/{v['cpu_s']:.2f}" for k, v in r["stages"].items())]
        for key, r in results.items()
    ]  # fmt: skip
    print("\nbest of repeats (peak RSS: worst); stages as wall/cpu seconds")
    headers = ["input", "variant", "s", "cpu s", "others (cores)", "peak RSS MB", "stages"]
    print(table(headers, rows))
    if codecs:
        print("\nplain JPEG, QUALITY=85 (least CPU of repeats):")
        print(table(["GDAL", "", "s", "cpu s", "MB"],
                    [[w, "", f"{c['s']:.2f}", f"{c['cpu_s']:.2f}", f"{c['bytes'] / 2**20:.1f}"]
                     for w, c in codecs.items()]))  # fmt: skip
    suffix = "" if args.source_compress == "NONE" else f".{args.source_compress.lower()}"
    out = RESULTS_PATH.with_suffix(f"{'.quick' if args.quick else ''}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"GDAL_CACHEMAX_MB": args.cachemax, "threads": THREADS, "repeat": args.repeat,
                "source_compress": args.source_compress}  # fmt: skip
    figures = {"settings": settings, "results": results, "jpeg_codec_check": codecs}
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
