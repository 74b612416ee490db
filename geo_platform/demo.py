"""`make demo`: sample rasters through the whole pipeline on the embedded profile."""

from __future__ import annotations

import click

from geo_platform.backends import stac_catalog
from geo_platform.ingest import IngestOutcome, ingest
from geo_platform.lib.raster.samples import write_dem_sample, write_rgb_sample
from geo_platform.settings import PlatformSettings, Profile, get_price_settings

DEMO_COLLECTION = "demo"


def run_demo(settings: PlatformSettings) -> int:
    samples = settings.data_dir.resolve() / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    files = [
        write_rgb_sample(samples / "orthophoto_rgb.tif"),
        write_dem_sample(samples / "elevation_float32.tif"),
    ]
    click.echo(f"Generated {len(files)} sample rasters in {samples}")
    click.echo("Ingesting (validation -> COG tiers -> STAC item -> catalog) ...")

    def report(outcome: IngestOutcome) -> None:
        status = "ok" if outcome.ok else f"failed: {outcome.message}"
        click.echo(f"  {outcome.blob_key}: {status}")

    outcomes = ingest(
        files, collection=DEMO_COLLECTION, output_tier=None, settings=settings, report=report
    )
    catalog = stac_catalog(settings)
    items = catalog.search(collections=[DEMO_COLLECTION], limit=None)
    prices = get_price_settings()
    click.echo(f"\nSTAC catalog ({catalog.location}): {len(items)} items in '{DEMO_COLLECTION}'")
    total_cost = 0.0
    for item in items:
        click.echo(f"  item {item['collection']}/{item['id']}  {item['properties']['datetime']}")
        for name, asset in item["assets"].items():
            cost = prices.monthly_cost(asset["file:size"], asset["geo_platform:storage_class"])
            total_cost += cost
            click.echo(
                f"    {name:<13} {asset['file:size'] / 1e6:8.2f} MB  "
                f"{asset['geo_platform:storage_class']:<4}  {cost:.8f} {prices.currency}/month  "
                f"{asset['href']}"
            )
    click.echo(f"  storage cost of all tiers: {total_cost:.8f} {prices.currency}/month")
    profile = "" if settings.profile is Profile.EMBEDDED else f" PROFILE={settings.profile.value}"
    click.echo(
        f"\nSearch it:  .venv/bin/geo-platform stac search --collection {DEMO_COLLECTION}\n"
        f"Look at it: make dev{profile}, then open http://127.0.0.1:3000 "
        "(Assets -> cog_analysis ...)"
    )
    return 0 if outcomes and all(o.ok for o in outcomes) else 1
