"""The private parts of pypgstac's Loader that PgstacCatalog relies on, pinned.

``PgstacCatalog`` formats a batch once and COPYs it inside its own transaction, which
pypgstac's public ``load_items`` cannot do; for that it uses four internals of
``pypgstac.load.Loader``. Each test here names one and checks the behaviour we rely
on, so that a pypgstac upgrade that changes it fails here, by name, rather than as a
wrong load somewhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from pypgstac.load import Loader, Methods, Partition

from geo_platform.resources.pgstac_catalog import PgstacCatalog, _BatchLoader, _ConnectionDB

pytestmark = pytest.mark.integration


@pytest.fixture
def naip(pgstac_dsn: str, real_stac: Path) -> tuple[dict, dict]:
    collection = json.loads((real_stac / "naip-collection.json").read_text())
    with (real_stac / "naip-items.ndjson").open() as lines:
        item = json.loads(next(lines))
    with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgstac.collections")
    PgstacCatalog(dsn=pgstac_dsn).upsert_collection(collection)
    return collection, item


def _loader(conn: psycopg.Connection) -> Loader:
    return _BatchLoader(_ConnectionDB(conn))


def test_collection_json_is_an_lru_cache_whose_wrapped_function_reads_the_collection(
    pgstac_dsn, naip
):
    """``Loader.collection_json.__wrapped__``: the uncached read, so that no Loader is
    kept alive by the class-wide cache. Returns (base_item, key, partition_trunc,
    base_item_id), the base item being what items of the collection are dehydrated against."""
    collection, _ = naip
    assert hasattr(Loader.collection_json, "__wrapped__")
    with psycopg.connect(pgstac_dsn, autocommit=True, options="-c search_path=pgstac,public") as c:
        base_item, key, partition_trunc, _ = Loader.collection_json.__wrapped__(
            _loader(c), collection["id"]
        )
    assert base_item["collection"] == collection["id"]
    assert isinstance(key, int)
    assert partition_trunc in (None, "year", "month")


def test_load_partition_is_retried_by_tenacity_and_can_be_narrowed():
    """``Loader.load_partition.retry_with``: our subclass narrows pypgstac's retry to
    CheckViolation (partition bounds), leaving lock errors to PgstacCatalog."""
    assert callable(getattr(Loader.load_partition, "retry_with", None))
    assert _BatchLoader.load_partition is not Loader.load_partition


def test_partition_update_names_the_partition_and_caches_its_bounds(pgstac_dsn, naip):
    """``Loader._partition_update(row)`` returns the partition's name and leaves a
    ``Partition`` under that name in ``Loader._partition_cache``, which
    ``load_partition`` then takes: together they load a formatted row."""
    collection, item = naip
    with psycopg.connect(pgstac_dsn, autocommit=True, options="-c search_path=pgstac,public") as c:
        loader = _loader(c)
        row = loader.format_item(item)
        name = loader._partition_update(row)
        partition = loader._partition_cache[name]
        assert isinstance(partition, Partition) and partition.collection == collection["id"]
        loader.load_partition(partition, [row], Methods.insert)
    stored = PgstacCatalog(dsn=pgstac_dsn).get_item(collection["id"], item["id"])
    assert stored is not None and stored["id"] == item["id"]
