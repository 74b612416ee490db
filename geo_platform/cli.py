"""The ``geo-platform`` command."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from geo_platform.settings import get_platform_settings


def run() -> NoReturn:
    """The ``geo-platform`` command: ``main``, then an exit without the interpreter's
    teardown of Dagster, GDAL and the rest (~1 s after an ingest). Every command has closed
    its files, connections and runs when it returns; output is flushed and logging shut
    down first. (Tests call ``main`` through click's runner, which exits normally.)"""
    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# Exit codes: 0 done, 1 failed work (a bad file, a service that does not answer),
# 2 bad usage (click's own).
FAILED = 1


class _OneLineErrors(click.Group):
    """Expected failures end a command as one line on stderr and exit code 1; the
    traceback only with ``--verbose`` (anywhere on the command line) or
    GEO_PLATFORM_VERBOSE=1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as e:
            verbose = ctx.params.get("_verbose") or "--verbose" in sys.argv[1:]
            if verbose or os.environ.get("GEO_PLATFORM_VERBOSE") == "1":
                raise
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(FAILED)


def one_line(error: BaseException) -> str:
    """What went wrong, in one line: the platform's own message, or a library's first
    line with its kind; where to see more."""
    from geo_platform.errors import GeoPlatformError

    lines = str(error).strip().splitlines() or [""]
    message = lines[0].strip()
    if isinstance(error, GeoPlatformError):
        return message
    return f"{type(error).__name__}: {message} (--verbose shows the traceback)"


@click.group(cls=_OneLineErrors)
@click.option("--verbose", "_verbose", is_flag=True, help="Tracebacks of failures.")
def main(_verbose: bool) -> None:
    """geo_platform: COG tiers, STAC catalog and more, on Dagster. Exit codes: 0 done,
    1 failed work, 2 bad usage."""


@main.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--collection", default="default", show_default=True, help="Collection (first key segment)."
)
@click.option(
    "--tiers",
    "output_tier",
    type=click.Choice(["visualization", "analysis", "archive", "both", "all"]),
    default=None,
    help="Tiers to write; default: the collection's output_tier, else all.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Files per Dagster run (default: GEO_PLATFORM_RUN_BATCH_SIZE, 100).",
)
@click.option("--verbose", is_flag=True, help="Show Dagster's own log, tracebacks included.")
@click.option(
    "--vector-tiles/--no-vector-tiles",
    default=False,
    show_default=True,
    help="Also make the vector files' PMTiles (otherwise the automation sensor does).",
)
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="Also follow links inside a folder that lead out of it (skipped by default).",
)
def ingest_command(
    paths: tuple[Path, ...],
    collection: str,
    output_tier: str | None,
    batch_size: int | None,
    verbose: bool,
    vector_tiles: bool,
    follow_symlinks: bool,
) -> None:
    """Copy files (or folders of rasters and vector files) into bronze and materialize them."""
    from geo_platform.errors import GeoPlatformError
    from geo_platform.ingest import check_collection_name, ingest

    try:
        check_collection_name(collection)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--collection") from None

    try:
        outcomes = ingest(
            paths,
            collection=collection,
            output_tier=output_tier,
            settings=get_platform_settings(),
            report=_print_outcome,
            batch_size=batch_size,
            verbose=verbose,
            vector_tiles=vector_tiles,
            follow_symlinks=follow_symlinks,
            warn=lambda message: click.echo(f"warning: {message}", err=True),
        )
    except (GeoPlatformError, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    failed = [o for o in outcomes if not o.ok]
    click.echo(f"{len(outcomes) - len(failed)} ok, {len(failed)} failed")
    sys.exit(1 if failed or not outcomes else 0)


@main.command("reconcile")
@click.option("--collection", default=None, help="Only this collection (default: all).")
@click.option("--dry-run", is_flag=True, help="Print what would be done, do nothing.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Files per run.")
@click.option("--verbose", is_flag=True, help="Show Dagster's own log, tracebacks included.")
def reconcile_command(
    collection: str | None, dry_run: bool, batch_size: int | None, verbose: bool
) -> None:
    """Compare bronze with what is materialized and cataloged: ingest what is new or
    changed, remove what was deleted, leave the rest alone."""
    from geo_platform.reconcile import reconcile

    result = reconcile(
        get_platform_settings(),
        collection=collection,
        dry_run=dry_run,
        batch_size=batch_size,
        verbose=verbose,
        report=_print_outcome,
    )
    for what, count in result.plan.counts().items():
        if count:
            click.echo(f"{'would ' if dry_run else ''}{what}: {count}")
    for key, problem in result.plan.rejected:
        click.echo(f"skipped  bronze/{key}: {problem}")
    for key in result.removed:
        click.echo(f"removed  {key} (deleted from bronze: its tiers, item and partition)")
    if dry_run:
        for key, _ in result.plan.to_run:
            click.echo(f"would run  {key} ({result.plan.reasons[key]})")
        for key in result.plan.to_remove:
            click.echo(f"would remove  {key}")
    failed = [o for o in result.outcomes if not o.ok]
    if not dry_run:
        click.echo(
            f"{len(result.outcomes) - len(failed)} ok, {len(failed)} failed, "
            f"{len(result.removed)} removed, {result.plan.unchanged} unchanged"
        )
    sys.exit(1 if failed else 0)


@main.command("backfill")
@click.option("--collection", required=True, help="The collection to run again, whole.")
@click.option(
    "--tiers",
    "output_tier",
    type=click.Choice(["visualization", "analysis", "archive", "both", "all"]),
    default=None,
    help="Tiers to write; default: the collection's output_tier, else all.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Files per run.")
@click.option("--verbose", is_flag=True, help="Show Dagster's own log, tracebacks included.")
def backfill_command(
    collection: str, output_tier: str | None, batch_size: int | None, verbose: bool
) -> None:
    """Run every raster of a collection in bronze again (after changing its output_tier,
    say), in batched runs."""
    from geo_platform.reconcile import backfill

    outcomes = backfill(
        get_platform_settings(),
        collection=collection,
        output_tier=output_tier,
        batch_size=batch_size,
        verbose=verbose,
        report=_print_outcome,
    )
    failed = [o for o in outcomes if not o.ok]
    click.echo(f"{len(outcomes) - len(failed)} ok, {len(failed)} failed")
    sys.exit(1 if failed or not outcomes else 0)


def _print_outcome(outcome) -> None:
    table = outcome.metadata.get("vector_table") if outcome.ok else None
    if table is not None:
        click.echo(
            f"ok      {outcome.blob_key}  ({table.get('rows', 0):,} rows in {table.get('tables')}"
            f"; repaired {table.get('repaired', 0)}, dropped {table.get('dropped', 0)})"
        )
    elif outcome.ok:
        tiers = [
            f"{name.removeprefix('cog_')} {_human_bytes(meta['size_bytes'])}"
            for name, meta in sorted(outcome.metadata.items())
            if name.startswith("cog_") and "size_bytes" in meta
        ]
        by = f"; {_by_run(outcome)}" if getattr(outcome, "by_run", None) else ""
        click.echo(f"ok      {outcome.blob_key}  ({', '.join(tiers) or 'no tiers'}{by})")
    else:
        by = f" ({_by_run(outcome)})" if getattr(outcome, "by_run", None) else ""
        click.echo(f"failed  {outcome.blob_key}: {outcome.message}{by}")


def _by_run(outcome) -> str:
    return f"by run {outcome.by_run}, which was already running it"


@main.command("h3-grid")
@click.argument("resolution", type=click.IntRange(0, 6))
@click.option(
    "--missing",
    is_flag=True,
    help="Only the partitions not materialized yet (after a run that failed part-way).",
)
@click.option("--verbose", is_flag=True, help="Show Dagster's own log, tracebacks included.")
def h3_grid_command(resolution: int, missing: bool, verbose: bool) -> None:
    """Materialize the global H3 grid of RESOLUTION (h3_grid's partitions of it: one, or
    from resolution 5 on one per resolution-0 cell) in one Dagster run."""
    from geo_platform.h3_runs import materialize_grid

    outcome = materialize_grid(
        get_platform_settings(), resolution, missing=missing, verbose=verbose
    )
    for key, reason in sorted(outcome.failed.items()):
        click.echo(f"failed  {key}: {reason}")
    skipped = f", {outcome.skipped} already there" if missing else ""
    click.echo(f"{len(outcome.done)} ok, {len(outcome.failed)} failed{skipped}")
    sys.exit(1 if outcome.failed else 0)


@main.group("stac")
def stac_group() -> None:
    """Query the STAC catalog."""


@stac_group.command("search")
@click.option("--collection", "collections", multiple=True, help="Collection id (repeatable).")
@click.option("--bbox", help="W,S,E,N in degrees.")
@click.option("--datetime", "datetime_", help="Instant, date, or range A/B (open end: ..).")
@click.option("--id", "ids", multiple=True, help="Item id (repeatable).")
@click.option(
    "--query",
    help='Property filters as JSON, e.g. \'{"gsd": {"lte": 1}, "naip:state": {"eq": "al"}}\'',
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1, max=2**31 - 1))
@click.option(
    "--sign",
    is_flag=True,
    help="Sign blob hrefs for reading (Azure SAS): GDAL and QGIS open them with no credentials.",
)
@click.option(
    "--sign-minutes",
    type=click.IntRange(min=1, max=7 * 24 * 60),
    default=None,
    help="How long signed hrefs work (default: GEO_PLATFORM_AZURE_SAS_LIFETIME_MINUTES, 60).",
)
def stac_search(
    collections: tuple[str, ...],
    bbox: str | None,
    datetime_: str | None,
    ids: tuple[str, ...],
    query: str | None,
    limit: int,
    sign: bool,
    sign_minutes: int | None,
) -> None:
    """Print matching items as a GeoJSON FeatureCollection (newest first). Items hold
    canonical blob URLs; ``--sign`` turns them into read-only signed URLs."""
    from geo_platform.backends import stac_catalog
    from geo_platform.errors import InvalidInputError
    from geo_platform.lib.stac.search import check_search

    parsed_bbox = None
    if bbox:
        try:
            parsed_bbox = tuple(float(v) for v in bbox.split(","))
        except ValueError:
            raise click.BadParameter(f"{bbox!r} is not four numbers", param_hint="--bbox") from None
        if len(parsed_bbox) != 4:
            raise click.BadParameter(f"{bbox!r} is not W,S,E,N", param_hint="--bbox")
    parsed_query = None
    if query:
        try:
            parsed_query = json.loads(query)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"not JSON ({e})", param_hint="--query") from None
    try:
        checked_bbox, _, _ = check_search(parsed_bbox, datetime_, parsed_query, limit)
    except InvalidInputError as e:
        raise click.BadParameter(e.problem, param_hint=f"--{e.source}") from None
    catalog = stac_catalog(get_platform_settings())
    items = catalog.search(
        collections=list(collections) or None,
        bbox=checked_bbox,
        datetime=datetime_,
        ids=list(ids) or None,
        query=parsed_query,
        limit=limit,
    )
    if sign or sign_minutes:
        items = _signed(items, sign_minutes)
    json.dump({"type": "FeatureCollection", "features": items}, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _signed(items: list[dict], minutes: int | None) -> list[dict]:
    import datetime as dt

    from geo_platform.backends import blob_store
    from geo_platform.errors import GeoPlatformError
    from geo_platform.lib.stac.items import with_hrefs
    from geo_platform.settings import get_azure_settings

    store = blob_store(get_platform_settings())
    lifetime = dt.timedelta(minutes=minutes or get_azure_settings().sas_lifetime_minutes)
    try:
        return [with_hrefs(item, lambda href: store.sign_href(href, lifetime)) for item in items]
    except GeoPlatformError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


@stac_group.command("load")
@click.argument("items", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--collection",
    "collection_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A collection JSON file, created or replaced before the items.",
)
@click.option(
    "--method",
    type=click.Choice(["upsert", "insert", "ignore", "delsert"]),
    default="upsert",
    show_default=True,
    help="What an item whose id exists does (pypgstac's methods).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Items per batch.")
def stac_load(
    items: Path, collection_path: Path | None, method: str, batch_size: int | None
) -> None:
    """Load an NDJSON file of items (one a line) into the catalog, streaming, in batches."""
    from geo_platform.backends import stac_catalog
    from geo_platform.lib.stac.load import load_ndjson
    from geo_platform.lib.stac.loader import check_load_method

    catalog = stac_catalog(get_platform_settings())
    # A failure (a catalog that stops answering, an insert conflict) ends in one line
    # from the group, saying how many items were committed.
    report = load_ndjson(
        catalog,
        items,
        method=check_load_method(method),
        batch_size=batch_size,
        collection_path=collection_path,
    )
    for rejection in report.rejected:
        item = f" item {_printable(rejection.item_id)}" if rejection.item_id else ""
        click.echo(
            f"rejected line {rejection.line}{item}: {_printable(rejection.reason)}", err=True
        )
    if report.rejected_count > len(report.rejected):
        click.echo(
            f"... and {report.rejected_count - len(report.rejected)} more rejected lines",
            err=True,
        )
    click.echo(
        f"{report.loaded} loaded, {report.skipped} skipped, {report.rejected_count} rejected "
        f"({method}, {report.items_per_second:,.0f} items/s)"
    )
    sys.exit(1 if report.rejected_count else 0)


def _printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): ids come from the file, and
    a terminal would obey them."""
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in text)


@main.command("query")
@click.argument("sql")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def query_command(sql: str, output_format: str) -> None:
    """Run read-only SQL (DuckDB) over the platform's tables, e.g.
    'SELECT name FROM vector.some_table LIMIT 5'. Writes, ATTACH, INSTALL/LOAD, COPY and
    file reads outside the platform's data are refused."""
    import csv

    import orjson

    from geo_platform.errors import GeoPlatformError
    from geo_platform.query import display_rows, run_query

    try:
        result = run_query(sql, get_platform_settings())
    except GeoPlatformError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    names, rows = display_rows(result)
    if output_format == "json":
        records = [dict(zip(names, row, strict=True)) for row in rows]
        sys.stdout.write(orjson.dumps(records, default=str, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
    else:
        click.echo(_text_table(names, rows))


def _text_table(names: list[str], rows: list[list], width: int = 60) -> str:
    def cell(value) -> str:
        text = "NULL" if value is None else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    lines = [
        " | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


@main.command("doctor")
def doctor_command() -> None:
    """Check what the active profile needs; one line per check, with a fix for each failure."""
    from geo_platform.doctor import run_checks

    settings = get_platform_settings()
    click.echo(f"profile: {settings.profile.value}")
    results = run_checks(settings)
    for result in results:
        status = "ok  " if result.ok else "FAIL"
        line = f"{status}  {result.name:<17} {result.detail}"
        click.echo(line if result.ok else f"{line}\n      fix: {result.fix}")
    sys.exit(0 if all(r.ok for r in results) else 1)


@main.command("dev")
@click.option("--port", default=3000, show_default=True, type=int)
def dev_command(port: int) -> None:
    """Open the Dagster UI (dagster dev on 127.0.0.1) on the active profile's instance.
    Stop it with Ctrl-C (or SIGTERM): the UI, the daemon and the code server stop together."""
    import os
    import shutil

    from geo_platform.instance import ensure_dagster_home, ensure_workspace

    home = ensure_dagster_home(get_platform_settings())
    workspace = ensure_workspace(home)
    click.echo(f"Dagster instance: {home}")
    click.echo(f"UI: http://127.0.0.1:{port} (Ctrl-C stops it)")
    dagster = shutil.which("dagster") or str(Path(sys.executable).parent / "dagster")
    # `dagster dev` calls itself superseded by `dg dev`, which needs another package
    # (dagster-dg-cli) for the same servers: a warning nobody here can act on.
    os.environ["PYTHONWARNINGS"] = "ignore:Function `dev_command` is superseded"
    # From the instance folder, with the workspace naming the location as the project
    # does: the same whether geo_platform is installed or a checkout, and no stray
    # dagster.yaml in the working directory.
    os.chdir(home)
    os.execv(
        dagster,
        [dagster, "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
    )


@main.command("demo")
def demo_command() -> None:
    """Generate sample rasters and run the whole pipeline on them (embedded profile)."""
    from geo_platform.demo import run_demo

    sys.exit(run_demo(get_platform_settings()))
