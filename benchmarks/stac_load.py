"""``geo-platform stac load`` vs ``pypgstac load items`` on 100,000 items, and search latency.

    .venv/bin/python benchmarks/stac_load.py [--items 100000] [--repeat 5] [--searches 50]

Loads the same items (the 1,000 real NAIP items of ``/work/shared/data/real/stac``
copied ``--items / 1000`` times with new ids ``<id>-c<n>``) with whole commands, as a
user runs them, interpreter start-up included:

* ``pypgstac``: ``pypgstac load items FILE --dsn DSN --method insert`` (the collection
  is loaded first with ``pypgstac load collections``, not timed);
* ``ours``: ``geo-platform stac load FILE --collection COLL.json`` on the production
  profile (pgSTAC), its default method (``upsert``);
* ``ours-insert``: the same with ``--method insert``, pypgstac's method;
* ``embedded`` / ``embedded-insert``: the same two on the embedded profile (DuckDB).

Every run loads into a fresh collection: pgSTAC runs into a fresh database (copied
from a migrated template database, all created here and dropped at the end), embedded
runs into a fresh data directory. Rounds alternate the sides (the order rotates each
round). Before each run: a wait for ``--wait-for`` (another benchmark, default
``cog_tiers``) to finish, a CHECKPOINT, a warm page cache for the input, and a wait for
the machine to be quiet; a run disturbed nonetheless is done again. Recorded per run:
wall time, the command's CPU and peak RSS (``ru_maxrss`` through a tiny launcher),
PostgreSQL's CPU, and the CPU other processes and the hypervisor took meanwhile.
Target (reported, never asserted): ours / pypgstac >= 0.9 in items per second, best
vs best and median vs median.

First, the fixed cost of each command: the same command on a one-item file (method
``upsert``, so that it can be repeated), and its import time by package
(``python -X importtime``).

Then ~50 deterministic bbox + datetime searches through ``PgstacCatalog`` and
``DuckDBCatalog`` (in-process, ``limit=100``) on the catalogs of the last ``ours`` and
``embedded`` runs: median and p95 latency, and whether both backends return the same ids.

Needs the local services (``make services``). Inputs are generated once into
``benchmarks/.data/stac_load/`` (git-ignored); results go to
``benchmarks/results/stac_load.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import psycopg
from psycopg import sql

from geo_platform.lib.duckdb_spatial import load_spatial
from geo_platform.resources.duckdb_catalog import DuckDBCatalog
from geo_platform.resources.pgstac_catalog import PgstacCatalog
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import PostgresSettings

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path("/work/shared/data/real/stac")
SOURCE_ITEMS = SOURCE / "naip-items.ndjson"
SOURCE_COLLECTION = SOURCE / "naip-collection.json"
DATA = REPO / "benchmarks" / ".data" / "stac_load"
RESULTS = REPO / "benchmarks" / "results" / "stac_load.json"
BIN = REPO / ".venv" / "bin"

TARGET = 0.9
# Below this many cores used by other processes, the machine counts as quiet.
QUIET_CORES = 0.25
# Scratch databases carry this prefix; leftovers of an interrupted run are dropped.
DB_PREFIX = "stac_load_bench_"
SIDES = ("pypgstac", "ours", "ours-insert", "embedded", "embedded-insert")
SEARCH_SEED = 20_240


@dataclass
class Run:
    """One timed command: its wall time, CPU, peak RSS, and what else ran meanwhile."""

    side: str
    round: int
    wall_s: float
    items_per_s: float
    cpu_s: float  # of the command itself (user + system)
    maxrss_mb: float  # of the command itself
    postgres_cpu_s: float  # of the PostgreSQL server meanwhile
    background_cores: float  # CPU of everything else meanwhile, in cores
    steal_cores: float  # CPU the hypervisor withheld meanwhile, in cores
    quiet_wait_s: float  # waited before the run for the machine to be quiet
    output: str  # last line the command printed


@dataclass
class Inputs:
    """The generated files: items and collection of each side, and a one-item file."""

    count: int
    items: dict[str, Path] = field(default_factory=dict)
    collections: dict[str, Path] = field(default_factory=dict)
    collection_ids: dict[str, str] = field(default_factory=dict)
    single: dict[str, Path] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="a multiple of 1,000")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of all sides")
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--wait-for", default="cog_tiers", help="pgrep -f pattern to wait out")
    parser.add_argument("--max-wait", type=float, default=2400.0, help="seconds, for --wait-for")
    parser.add_argument(
        "--quiet-wait", type=float, default=300.0, help="seconds, before each run, at most"
    )
    parser.add_argument(
        "--max-extra", type=int, default=3, help="re-runs of a run disturbed by other processes"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.items <= 0 or args.items % 1000:
        parser.error("--items must be a positive multiple of 1,000")

    started = time.monotonic()
    inputs = generate_inputs(args.items)
    size_mb = inputs.items["ours"].stat().st_size / 1e6
    print(f"inputs: {args.items:,} items a side, {size_mb:.0f} MB")
    settings = PostgresSettings()
    bench = Bench(
        settings,
        inputs,
        quiet_wait=args.quiet_wait,
        wait_for=args.wait_for,
        max_wait=args.max_wait,
        max_extra=args.max_extra,
    )
    try:
        bench.wait_for_other_benchmark()
        bench.create_template()
        # A repeated insert of the one item would fail: the -insert sides are left out.
        startup = {s: bench.startup(s) for s in args.sides if not s.endswith("-insert")}
        runs = bench.rounds(args.sides, args.repeat)
        search = bench.search_latency(args.searches)
    finally:
        bench.cleanup()

    commands = {
        side: " ".join(bench.command(side, "", inputs.items[side], shown=True))
        for side in args.sides
    }
    results = summarize(inputs, runs, startup, search, bench, commands, args)
    results["elapsed_s"] = time.monotonic() - started
    print_tables(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


# -- inputs ---------------------------------------------------------------------------


def generate_inputs(count: int) -> Inputs:
    """Per-side copies of the NAIP items (new ids, the side's collection id), made once.

    ``ours`` and the embedded sides share a file (their catalogs are separate anyway).
    Files are written under a temporary name and renamed: one that exists is complete.
    """
    DATA.mkdir(parents=True, exist_ok=True)
    collection = orjson.loads(SOURCE_COLLECTION.read_bytes())
    source = [orjson.loads(line) for line in SOURCE_ITEMS.open("rb") if line.strip()]
    inputs = Inputs(count=count)
    for name in ("ours", "pypgstac"):
        collection_id = f"naip-bench-{name}"
        items = DATA / f"items-{count}-{name}.ndjson"
        if not items.exists():
            _write_atomically(items, _copies(source, collection_id, count // len(source)))
        coll = DATA / f"collection-{name}.json"
        coll.write_bytes(
            orjson.dumps(dict(collection, id=collection_id), option=orjson.OPT_INDENT_2)
        )
        single = DATA / f"single-{name}.ndjson"
        single.write_bytes(_line(source[0], f"{source[0]['id']}-startup", collection_id))
        for side in SIDES:
            if (side == "pypgstac") == (name == "pypgstac"):
                inputs.items[side], inputs.collections[side] = items, coll
                inputs.collection_ids[side], inputs.single[side] = collection_id, single
    return inputs


def _copies(source: list[dict[str, Any]], collection_id: str, copies: int) -> Iterator[bytes]:
    for copy in range(copies):
        for item in source:
            yield _line(item, f"{item['id']}-c{copy}", collection_id)


def _line(item: dict[str, Any], item_id: str, collection_id: str) -> bytes:
    return orjson.dumps(dict(item, id=item_id, collection=collection_id)) + b"\n"


def _write_atomically(path: Path, lines: Iterator[bytes]) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        out.writelines(lines)
    partial.rename(path)


# -- the machine ----------------------------------------------------------------------


def wait_for_other_benchmark(pattern: str, max_wait_s: float) -> dict[str, Any]:
    """Wait (polling every 30 s, at most ``max_wait_s``) until no process matches ``pattern``."""
    started = time.monotonic()
    announced = False
    while _other_benchmark_running(pattern) and time.monotonic() - started < max_wait_s:
        if not announced:
            print(f"waiting for {pattern!r} to finish (up to {max_wait_s / 60:.0f} min) ...")
            announced = True
        time.sleep(30)
    return {
        "pattern": pattern,
        "waited_s": round(time.monotonic() - started, 1),
        "still_running": _other_benchmark_running(pattern),
    }


def _other_benchmark_running(pattern: str) -> bool:
    """Whether a process other than this one and its ancestors matches ``pattern``."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return bool({int(pid) for pid in found.stdout.split()} - _ancestry())


def _ancestry() -> set[int]:
    """This process and its ancestors, whose command lines may hold the pattern too."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return pids


def machine_busy_s() -> float:
    """CPU seconds all cores of this machine have spent busy since boot (steal excluded)."""
    return _cpu_seconds()[0]


def steal_s() -> float:
    """CPU seconds the hypervisor gave to others while this VM wanted them, since boot."""
    return _cpu_seconds()[1]


def _cpu_seconds() -> tuple[float, float]:
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, f.readline().split()[1:9]
        )
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def postgres_cpu_s() -> float:
    """CPU seconds of the PostgreSQL server: its live processes and the exited backends.

    Backends are children of the postmaster, which reaps them: their CPU time ends
    up in its cutime/cstime once they exit.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if comm == "postgres":
            fields = rest.split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) until the machine uses < QUIET_CORES; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        before = machine_busy_s()
        time.sleep(1.0)
        if machine_busy_s() - before < QUIET_CORES:
            break
    return time.monotonic() - started


# Peak RSS is ru_maxrss of the measured process. Linux folds the memory of a forked
# child before its exec into its ru_maxrss, so the command is started by a tiny
# launcher (``python -S``) and its rusage comes from the launcher's wait4.
_LAUNCHER = """
import json, os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(result, "w") as f:
    json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
               "maxrss_kb": usage.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_command(argv: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv`` in a fresh process: wall time, CPU, peak RSS, what ran beside it."""
    with tempfile.TemporaryDirectory() as tmp:
        usage_file = Path(tmp) / "usage.json"
        busy0, pg0, steal0 = machine_busy_s(), postgres_cpu_s(), steal_s()
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *argv]
        proc = subprocess.run(launcher, env=env, capture_output=True, text=True, check=False)
        busy1, pg1, steal1 = machine_busy_s(), postgres_cpu_s(), steal_s()
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        usage = json.loads(usage_file.read_text())
    postgres = pg1 - pg0
    others = busy1 - busy0 - usage["cpu_s"] - postgres
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {
        "wall_s": usage["wall_s"],
        "cpu_s": usage["cpu_s"],
        "maxrss_mb": usage["maxrss_kb"] / 1024,
        "postgres_cpu_s": postgres,
        "background_cores": max(0.0, others / usage["wall_s"]),
        "steal_cores": (steal1 - steal0) / usage["wall_s"],
        "output": lines[-1] if lines else "",
    }


def warm_page_cache(path: Path) -> None:
    """Read ``path`` whole, so that every run finds its input in the page cache."""
    with path.open("rb") as f:
        while f.read(16 << 20):
            pass


# -- the benchmark --------------------------------------------------------------------


class Bench:
    """Scratch databases and data directories, the commands, and their runs."""

    def __init__(
        self,
        settings: PostgresSettings,
        inputs: Inputs,
        *,
        quiet_wait: float,
        wait_for: str,
        max_wait: float,
        max_extra: int,
    ) -> None:
        self.settings = settings
        self.inputs = inputs
        # Seconds to wait at most, before each run, for the machine to be quiet.
        self.quiet_wait = quiet_wait
        # Another benchmark (pgrep -f pattern) to wait out before each run, and how long.
        self.wait_for = wait_for
        self.max_wait = max_wait
        self.waits: list[dict[str, Any]] = []
        # Runs done again because other processes were busy meanwhile, and how often at most.
        self.discarded: list[Run] = []
        self.max_extra = max_extra
        self.tag = uuid.uuid4().hex[:8]
        self.template = f"{DB_PREFIX}{self.tag}_template"
        self.databases: list[str] = []
        self.numbers = itertools.count(1)
        self.tmp = Path(tempfile.mkdtemp(prefix="stac_load_bench_"))
        # The catalogs of the last ours and embedded runs: searched afterwards.
        self.last: dict[str, str] = {}

    # databases

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.dsn("postgres"), autocommit=True)

    def create_template(self) -> None:
        """A database with pgSTAC migrated into it, that each run's database copies."""
        with self._admin() as admin:
            leftovers = admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [DB_PREFIX + "%"]
            ).fetchall()
            for (name,) in leftovers:
                _drop(admin, name)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self.databases.append(self.template)
        migrate = [str(BIN / "pypgstac"), "migrate", "--dsn", self.settings.dsn(self.template)]
        subprocess.run(migrate, check=True, capture_output=True)

    def fresh_database(self) -> str:
        """A new database with pgSTAC in it, copied from the template; its name."""
        name = f"{DB_PREFIX}{self.tag}_{next(self.numbers)}"
        with self._admin() as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self.template)
                )
            )
        self.databases.append(name)
        return name

    def drop(self, name: str) -> None:
        """Drop a database created here."""
        with self._admin() as admin:
            _drop(admin, name)
        self.databases.remove(name)

    def checkpoint(self) -> None:
        """Flush PostgreSQL's dirty buffers now, not during the next run."""
        with self._admin() as admin:
            admin.execute("CHECKPOINT")

    def cleanup(self) -> None:
        """Drop every database created here and remove the data directories."""
        with self._admin() as admin:
            for name in reversed(self.databases):
                _drop(admin, name)
        self.databases.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # commands

    def _env(self, side: str, target: str) -> dict[str, str]:
        """The environment of ``side``'s command: its profile, pointed at ``target``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_PLATFORM_")}
        if side.startswith("embedded"):
            env.update(GEO_PLATFORM_PROFILE="embedded", GEO_PLATFORM_DATA_DIR=target)
        elif side.startswith("ours"):
            s = self.settings
            env.update(
                GEO_PLATFORM_PROFILE="production",
                GEO_PLATFORM_PG_HOST=s.host,
                GEO_PLATFORM_PG_PORT=str(s.port),
                GEO_PLATFORM_PG_USER=s.user,
                GEO_PLATFORM_PG_PASSWORD=s.password.get_secret_value(),
                GEO_PLATFORM_PG_DATABASE=target,
            )
        return env

    def command(
        self, side: str, target: str, items: Path, method: str | None = None, *, shown: bool = False
    ) -> list[str]:
        """The command of ``side`` loading ``items`` into ``target``.

        ``method`` defaults to ``insert`` for pypgstac and the ``-insert`` sides, and to
        the command's own default (``upsert``) for ours. ``shown``: for the results file,
        with the password and the scratch paths left out.
        """
        name = (lambda path: Path(path).name) if shown else str
        if side == "pypgstac":
            dsn = "DSN" if shown else self.settings.dsn(target)
            argv = [name(BIN / "pypgstac"), "load", "items", name(items), "--dsn", dsn]
            return [*argv, "--method", method or "insert"]
        argv = [name(BIN / "geo-platform"), "stac", "load", name(items)]
        argv += ["--collection", name(self.inputs.collections[side])]
        method = method or ("insert" if side.endswith("-insert") else None)
        argv += ["--method", method] if method else []
        if shown:
            profile = "embedded" if side.startswith("embedded") else "production"
            argv.insert(0, f"GEO_PLATFORM_PROFILE={profile}")
        return argv

    def _prepare(self, side: str) -> str:
        """A fresh target for ``side``: a database (pgSTAC) or a data directory (DuckDB)."""
        if side.startswith("embedded"):
            target = self.tmp / f"{side}-{uuid.uuid4().hex[:8]}"
            target.mkdir()
            return str(target)
        database = self.fresh_database()
        if side == "pypgstac":
            coll = str(self.inputs.collections[side])
            dsn = self.settings.dsn(database)
            argv = [str(BIN / "pypgstac"), "load", "collections", coll, "--dsn", dsn]
            subprocess.run([*argv, "--method", "insert_ignore"], check=True, capture_output=True)
        return database

    def _discard(self, side: str, target: str) -> None:
        if side.startswith("embedded"):
            shutil.rmtree(target, ignore_errors=True)
        else:
            self.drop(target)

    def _count(self, side: str, target: str) -> int:
        collection = self.inputs.collection_ids[side]
        if side.startswith("embedded"):
            with duckdb.connect(str(Path(target) / "catalog.duckdb"), read_only=True) as con:
                load_spatial(con)
                row = con.execute(
                    "SELECT count(*) FROM items WHERE collection = ?", [collection]
                ).fetchone()
        else:
            with psycopg.connect(self.settings.dsn(target)) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pgstac.items WHERE collection = %s", [collection]
                ).fetchone()
        return int(row[0]) if row else 0

    def startup(self, side: str, repeat: int = 3) -> dict[str, Any]:
        """The fixed cost of a load: the same command on a one-item file (``upsert``).

        Then as many runs under ``python -X importtime``: import time by top-level package.
        """
        target = self._prepare(side)
        argv = self.command(side, target, self.inputs.single[side], "upsert")
        env = self._env(side, target)
        try:
            samples = []
            for _ in range(repeat):
                wait_until_quiet(self.quiet_wait)
                samples.append(run_command(argv, env))
            traces = []
            for _ in range(repeat):
                wait_until_quiet(self.quiet_wait)
                traced = subprocess.run(
                    [sys.executable, "-X", "importtime", *argv],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                traces.append(traced.stderr)
        finally:
            self._discard(side, target)
        best = min(samples, key=lambda s: s["wall_s"])
        imports = import_times(traces)
        print(
            f"one-item load, {side:10s} best of {repeat}: {best['wall_s']:.2f} s "
            f"({best['cpu_s']:.2f} s CPU, {best['maxrss_mb']:.0f} MB); "
            f"imports {imports['total_ms']:.0f} ms"
        )
        return {
            "wall_s": [s["wall_s"] for s in samples],
            "best_wall_s": best["wall_s"],
            "best_cpu_s": best["cpu_s"],
            "maxrss_mb": max(s["maxrss_mb"] for s in samples),
            "imports": imports,
        }

    def wait_for_other_benchmark(self) -> None:
        """Wait out the other benchmark; remember each wait."""
        waited = wait_for_other_benchmark(self.wait_for, self.max_wait)
        if waited["waited_s"] or waited["still_running"]:
            self.waits.append(waited)

    def rounds(self, sides: Sequence[str], repeat: int) -> list[Run]:
        """``repeat`` rounds of every side, alternating; the order rotates each round.

        A run during which other processes used more than QUIET_CORES is set aside
        (kept in ``self.discarded``) and done again, up to ``max_extra`` times.
        """
        runs: list[Run] = []
        for number in range(repeat):
            order = list(sides[number % len(sides) :]) + list(sides[: number % len(sides)])
            for side in order:
                self.wait_for_other_benchmark()
                run = self.run(side, number)
                for _ in range(self.max_extra):
                    if run.background_cores <= QUIET_CORES:
                        break
                    self.discarded.append(run)
                    print("  (disturbed by other processes: done again)")
                    self.wait_for_other_benchmark()
                    run = self.run(side, number)
                runs.append(run)
        return runs

    def run(self, side: str, number: int) -> Run:
        """One timed load of ``side`` into a fresh target; keeps ours' and embedded's last."""
        target = self._prepare(side)
        items = self.inputs.items[side]
        warm_page_cache(items)
        self.checkpoint()
        waited = wait_until_quiet(self.quiet_wait)
        measured = run_command(self.command(side, target, items), self._env(side, target))
        loaded = self._count(side, target)
        if loaded != self.inputs.count:
            raise RuntimeError(f"{side} loaded {loaded} items, not {self.inputs.count}")
        run = Run(
            side=side,
            round=number,
            items_per_s=self.inputs.count / measured["wall_s"],
            quiet_wait_s=round(waited, 1),
            **measured,
        )
        print(
            f"round {number + 1} {side:16s} {run.wall_s:6.2f} s {run.items_per_s:8,.0f} items/s "
            f"CPU {run.cpu_s:5.1f} s, postgres {run.postgres_cpu_s:5.1f} s, "
            f"RSS {run.maxrss_mb:5.0f} MB, others {run.background_cores:.2f} cores, "
            f"steal {run.steal_cores:.2f}"
        )
        keep = side if side in ("ours", "embedded") else None
        if keep:
            if keep in self.last:
                self._discard(side, self.last[keep])
            self.last[keep] = target
        else:
            self._discard(side, target)
        return run

    def search_latency(self, count: int) -> dict[str, Any]:
        """Latency of the same bbox + datetime searches on the last ours and embedded catalogs."""
        queries = search_queries(count)
        catalogs: dict[str, StacCatalog] = {}
        if "ours" in self.last:
            catalogs["pgstac"] = PgstacCatalog(dsn=self.settings.dsn(self.last["ours"]))
        if "embedded" in self.last:
            path = Path(self.last["embedded"]) / "catalog.duckdb"
            catalogs["duckdb"] = DuckDBCatalog(path=str(path))
        if not catalogs:
            return {}
        self.wait_for_other_benchmark()
        self.checkpoint()
        wait_until_quiet(self.quiet_wait)
        results: dict[str, Any] = {"queries": queries, "limit": 100, "backends": {}}
        ids: dict[str, list[list[str]]] = {}
        for name, catalog in catalogs.items():
            for query in queries[:5]:  # warm-up: connections, extension, caches
                catalog.search(bbox=tuple(query["bbox"]), datetime=query["datetime"], limit=100)
            times, ids[name] = [], []
            busy0, pg0, own0 = machine_busy_s(), postgres_cpu_s(), time.process_time()
            started_all = time.perf_counter()
            for query in queries:
                started = time.perf_counter()
                found = catalog.search(
                    bbox=tuple(query["bbox"]), datetime=query["datetime"], limit=100
                )
                times.append((time.perf_counter() - started) * 1000)
                ids[name].append([item["id"] for item in found])
            wall = time.perf_counter() - started_all
            others = machine_busy_s() - busy0 - (postgres_cpu_s() - pg0)
            others -= time.process_time() - own0
            results["backends"][name] = {
                "median_ms": statistics.median(times),
                "p95_ms": _percentile(times, 95),
                "min_ms": min(times),
                "max_ms": max(times),
                "ms": times,
                "returned": [len(found) for found in ids[name]],
                "background_cores": max(0.0, others / wall),
            }
        if len(ids) == 2:
            pg, duck = ids["pgstac"], ids["duckdb"]
            results["same_ids_in_same_order"] = sum(a == b for a, b in zip(pg, duck, strict=True))
        return results


def import_times(traces: Sequence[str], top: int = 12) -> dict[str, Any]:
    """``-X importtime`` outputs summed by top-level package (self times): medians, in ms."""
    runs: list[dict[str, float]] = []
    for trace in traces:
        packages: dict[str, float] = {}
        for line in trace.splitlines():
            if not line.startswith("import time:") or line.count("|") != 2:
                continue
            own, _, name = line.removeprefix("import time:").split("|")
            if own.strip().isdigit():  # not the header line
                package = name.strip().split(".")[0]
                packages[package] = packages.get(package, 0.0) + int(own) / 1000
        runs.append(packages)
    names = {name for packages in runs for name in packages}
    median = {name: statistics.median(p.get(name, 0.0) for p in runs) for name in names}
    ranked = sorted(median.items(), key=lambda kv: -kv[1])
    return {
        "total_ms": statistics.median(sum(p.values()) for p in runs),
        "by_package_ms": {name: round(ms, 1) for name, ms in ranked[:top]},
    }


def _drop(admin: psycopg.Connection, name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def search_queries(count: int) -> list[dict[str, Any]]:
    """Deterministic bbox + datetime searches around the centroids of random items.

    Boxes of 0.01 to 1 degree a side; date ranges of the item's year, +/- 30 days
    around it, three years, or open-ended: each query matches at least its item.
    """
    rng = random.Random(SEARCH_SEED)
    source = [orjson.loads(line) for line in SOURCE_ITEMS.open("rb") if line.strip()]
    sizes = (0.01, 0.05, 0.25, 1.0)
    queries = []
    for number in range(count):
        item = rng.choice(source)
        west, south, east, north = item["bbox"]
        x, y, half = (west + east) / 2, (south + north) / 2, sizes[number % len(sizes)] / 2
        when = dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        year = when.year
        kind = rng.choice(("year", "month", "three-years", "open"))
        day = dt.timedelta(days=30)
        datetime = {
            "year": f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z",
            "month": f"{_iso(when - day)}/{_iso(when + day)}",
            "three-years": f"{year - 1}-01-01T00:00:00Z/{year + 1}-12-31T23:59:59Z",
            "open": f"{year - 2}-01-01T00:00:00Z/..",
        }[kind]
        bbox = [round(v, 6) for v in (x - half, y - half, x + half, y + half)]
        queries.append({"bbox": bbox, "datetime": datetime, "box_degrees": half * 2})
    return queries


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- results --------------------------------------------------------------------------


def summarize(
    inputs: Inputs,
    runs: list[Run],
    startup: dict[str, Any],
    search: dict[str, Any],
    bench: Bench,
    commands: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Every figure, raw runs included, as written to the results file."""
    sides: dict[str, Any] = {}
    for side in args.sides:
        mine = [r for r in runs if r.side == side]
        rates = [r.items_per_s for r in mine]
        sides[side] = {
            "best_items_per_s": max(rates),
            "median_items_per_s": statistics.median(rates),
            "best_wall_s": min(r.wall_s for r in mine),
            "median_cpu_s": statistics.median(r.cpu_s for r in mine),
            "median_postgres_cpu_s": statistics.median(r.postgres_cpu_s for r in mine),
            "peak_rss_mb": max(r.maxrss_mb for r in mine),
            "max_background_cores": max(r.background_cores for r in mine),
        }
    ratios: dict[str, Any] = {}
    if "pypgstac" in sides:
        ref = sides["pypgstac"]
        for side in (s for s in args.sides if s != "pypgstac"):
            best = sides[side]["best_items_per_s"] / ref["best_items_per_s"]
            median = sides[side]["median_items_per_s"] / ref["median_items_per_s"]
            ratios[f"{side}/pypgstac"] = {"best": best, "median": median}
    background = [r.background_cores for r in runs]
    steal = [r.steal_cores for r in runs]
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgresql": _server_version(),
        },
        "items": inputs.count,
        "item_file_mb": inputs.items[args.sides[0]].stat().st_size / 1e6,
        "repeat": args.repeat,
        "target": f"ours/pypgstac >= {TARGET} items/s",
        "commands": commands,
        "waited_for_other_benchmark": bench.waits,
        "background_cores": {
            "median": statistics.median(background),
            "max": max(background),
            "max_steal": max(steal),
        },
        "sides": sides,
        "ratios": ratios,
        "one_item_load": startup,
        "search": search,
        "runs": [asdict(r) for r in runs],
        "discarded_runs": [asdict(r) for r in bench.discarded],
    }


def _server_version() -> str:
    try:
        with psycopg.connect(PostgresSettings().dsn()) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return "unknown"
    return str(row[0]) if row else "unknown"


def print_tables(results: dict[str, Any]) -> None:
    """The summary tables, on stdout."""
    print(
        f"\n{results['items']:,} items ({results['item_file_mb']:.0f} MB NDJSON), "
        f"{results['repeat']} rounds, whole commands (interpreter start-up included)"
    )
    print(
        f"  {'side':16s} {'best it/s':>10s} {'median it/s':>12s} {'best s':>7s} "
        f"{'CPU s':>6s} {'PG CPU s':>8s} {'peak RSS':>9s} {'1-item load':>12s}"
    )
    for side, s in results["sides"].items():
        one_item = results["one_item_load"].get(side)
        one = f"{one_item['best_wall_s']:10.2f} s" if one_item else f"{'-':>12s}"
        print(
            f"  {side:16s} {s['best_items_per_s']:10,.0f} {s['median_items_per_s']:12,.0f} "
            f"{s['best_wall_s']:7.2f} {s['median_cpu_s']:6.1f} {s['median_postgres_cpu_s']:8.1f} "
            f"{s['peak_rss_mb']:6.0f} MB {one}"
        )
    for name, ratio in results["ratios"].items():
        mark = "meets" if min(ratio.values()) >= TARGET else "misses"
        target = f"  ({mark} {TARGET}x)" if name.startswith("ours") else ""
        print(f"  {name:26s} best {ratio['best']:.2f}x  median {ratio['median']:.2f}x{target}")
    for side, one_item in results["one_item_load"].items():
        imports = ", ".join(
            f"{name} {ms:.0f}"
            for name, ms in list(one_item["imports"]["by_package_ms"].items())[:8]
        )
        print(f"  imports of {side}: {one_item['imports']['total_ms']:.0f} ms ({imports})")
    bg = results["background_cores"]
    print(
        f"  other processes during the runs: median {bg['median']:.2f} cores, "
        f"max {bg['max']:.2f}; hypervisor steal max {bg['max_steal']:.2f} cores"
    )
    if results["discarded_runs"]:
        print(
            f"  {len(results['discarded_runs'])} runs disturbed by other processes "
            f"(> {QUIET_CORES} cores) were done again; they are in discarded_runs"
        )
    waited = sum(w["waited_s"] for w in results["waited_for_other_benchmark"])
    if waited:
        print(f"  waited {waited / 60:.1f} min in all for another benchmark to finish")
    search = results["search"]
    if search:
        print(f"\nbbox + datetime search, {len(search['queries'])} queries, limit 100:")
        for name, s in search["backends"].items():
            print(
                f"  {name:8s} median {s['median_ms']:7.1f} ms  p95 {s['p95_ms']:7.1f} ms  "
                f"(min {s['min_ms']:.1f}, max {s['max_ms']:.1f}; "
                f"median {statistics.median(s['returned']):.0f} items returned; "
                f"others {s['background_cores']:.2f} cores)"
            )
        if "same_ids_in_same_order" in search:
            print(
                f"  same ids in the same order: {search['same_ids_in_same_order']} of "
                f"{len(search['queries'])} queries"
            )


if __name__ == "__main__":
    main()
