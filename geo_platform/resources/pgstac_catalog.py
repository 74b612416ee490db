"""The production STAC catalog: pgSTAC in PostgreSQL.

Items go in through pypgstac's ``Loader`` (the same code as ``pypgstac load``), one
transaction per batch; searches go through pgSTAC's own ``search(jsonb)``, so the
answers are pgSTAC's. Connections are short-lived: one per call, which is simple
to retry and safe across Dagster's step processes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg
import psycopg.errors
from plpygis.exceptions import PlpygisError
from plpygis.geometry import Geometry
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from pypgstac.db import PgstacDB
from pypgstac.hydration import hydrate
from pypgstac.load import Loader, Methods
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_none,
)

from geo_platform.errors import (
    ConfigurationError,
    GeoPlatformError,
    InvalidInputError,
    TransientError,
)
from geo_platform.lib.stac.bbox import MERGED_ARCS_SQL, union_bbox
from geo_platform.lib.stac.collection import CollectionAggregate, TierAggregate
from geo_platform.lib.stac.items import item_name
from geo_platform.lib.stac.loader import LoadMethod, LoadResult
from geo_platform.lib.stac.search import Bbox, bbox_search_geometry, check_search
from geo_platform.resources.stac_catalog import StacCatalog

T = TypeVar("T")

# Server messages (SQLSTATE 28xxx and 3D000 arrive before a session exists, so only
# as text) that no retry can fix: the settings are wrong.
_CONFIGURATION_PROBLEMS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
    "authentication method",
)


@dataclass(kw_only=True, frozen=True)
class PgstacCatalog(StacCatalog):
    """STAC items and collections in pgSTAC (schema installed by ``pypgstac migrate``).

    ``dsn`` holds the password: it is never logged, and errors name only the host,
    port and database. Lost connections, lock timeouts, deadlocks and serialization
    failures are retried with backoff, then raised as TransientError; a refused
    login or a missing database is a ConfigurationError at once.
    """

    # libpq URL with the password: a secret.
    dsn: str = field(repr=False)
    connect_timeout_seconds: int = 5
    # A load waits at most this long for a lock before retrying the batch.
    lock_timeout_seconds: float = 30.0
    attempts: int = 4
    retry_wait_seconds: float = 0.25
    # Rows per pgSTAC search call when a search asks for every match (limit=None).
    search_page_size: int = 1000

    @property
    def location(self) -> str:
        """host:port/database, for messages: the dsn minus the secrets."""
        try:
            params = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            return "(unreadable dsn)"
        host = params.get("host") or params.get("hostaddr") or "localhost"
        return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user')}"

    def upsert_collection(self, collection: dict[str, Any]) -> None:
        if not isinstance(collection, dict) or not isinstance(collection.get("id"), str):
            raise InvalidInputError("collection", "is not a JSON object with an id")

        def work(conn: psycopg.Connection) -> None:
            conn.execute("SELECT upsert_collection(%s)", [Jsonb(collection)])

        self._run(f"upserting collection {collection['id']!r}", work)

    def update_collection(
        self, collection_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        def work(conn: psycopg.Connection) -> dict[str, Any]:
            with conn.transaction():
                # The row lock makes concurrent read-modify-writes take turns.
                current = _scalar(
                    conn,
                    "SELECT content FROM collections WHERE id = %s FOR UPDATE",
                    [collection_id],
                )
                collection = change(current)
                conn.execute("SELECT upsert_collection(%s)", [Jsonb(collection)])
                return collection

        return self._run(f"updating collection {collection_id!r}", work)

    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        return self._run(
            f"reading collection {collection_id!r}",
            lambda conn: _scalar(conn, "SELECT get_collection(%s)", [collection_id]),
        )

    def list_collections(self) -> list[dict[str, Any]]:
        def work(conn: psycopg.Connection) -> list[dict[str, Any]]:
            return [row[0] for row in conn.execute("SELECT content FROM collections ORDER BY id")]

        return self._run("listing collections", work)

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        return self._run(
            f"reading item {item_id!r}",
            lambda conn: _scalar(conn, "SELECT get_item(%s, %s)", [item_id, collection_id]),
        )

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        def work(conn: psycopg.Connection) -> bool:
            # pgSTAC's delete_item raises when there is no such item: check first, in one
            # transaction.
            with conn.transaction():
                found = _scalar(
                    conn,
                    "SELECT 1 FROM items WHERE collection = %s AND id = %s FOR UPDATE",
                    [collection_id, item_id],
                )
                if found is None:
                    return False
                conn.execute("SELECT delete_item(%s, %s)", [item_id, collection_id])
                return True

        return self._run(f"deleting item {item_id!r}", work)

    def item_ids(self, collection_id: str) -> set[str]:
        def work(conn: psycopg.Connection) -> set[str]:
            rows = conn.execute("SELECT id FROM items WHERE collection = %s", [collection_id])
            return {row[0] for row in rows}

        return self._run(f"listing the items of {collection_id!r}", work)

    def collection_bbox(self, collection_id: str) -> tuple[float, ...] | None:
        def work(conn: psycopg.Connection) -> tuple[float, ...] | None:
            union = union_bbox(conn.execute(_MERGED_ARCS, [collection_id]).fetchall())
            return tuple(union) if union else None

        return self._run(f"reading the extent of collection {collection_id!r}", work)

    def collection_aggregate(self, collection_id: str) -> CollectionAggregate:
        def work(conn: psycopg.Connection) -> CollectionAggregate:
            row = conn.execute(
                "SELECT count(*), min(datetime), max(end_datetime) FROM items "
                "WHERE collection = %s",
                [collection_id],
            ).fetchone()
            count, start, end = row or (0, None, None)
            # Item bboxes, not geometry extents: a footprint split at 180 degrees spans
            # the world, and its bbox the right side of it (west > east).
            arcs = conn.execute(_MERGED_ARCS, [collection_id]).fetchall()
            # proj:code ("EPSG:32660", projection v2) or, in older items, proj:epsg.
            epsg = conn.execute(
                "SELECT DISTINCT code FROM (SELECT COALESCE("
                "(content->'properties'->>'proj:epsg')::int, "
                "substring(content->'properties'->>'proj:code' from '^EPSG:([0-9]+)$')::int"
                ") AS code FROM items WHERE collection = %s) AS codes "
                "WHERE code IS NOT NULL ORDER BY code",
                [collection_id],
            ).fetchall()
            tiers = conn.execute(
                "SELECT asset.value->>'geo_platform:tier' AS tier, count(*), "
                "sum((asset.value->>'file:size')::bigint), "
                "min(asset.value->>'geo_platform:storage_class') "
                "FROM items, jsonb_each(items.content->'assets') AS asset "
                "WHERE items.collection = %s AND asset.value ? 'geo_platform:tier' "
                "GROUP BY tier",
                [collection_id],
            ).fetchall()
            union = union_bbox(arcs)
            return CollectionAggregate(
                items=count,
                bbox=tuple(union) if union else None,  # type: ignore[arg-type]
                start=_rfc3339(start),
                end=_rfc3339(end),
                epsg=tuple(code for (code,) in epsg),
                tiers={t: TierAggregate(n, int(b or 0), c or "hot") for t, n, b, c in tiers},
            )

        return self._run(f"summarizing collection {collection_id!r}", work)

    def batch_writer(self, method: LoadMethod) -> _PgstacBatchWriter:
        return _PgstacBatchWriter(self, method)

    def _formatting_info(self, collection_id: str) -> tuple[Any, ...] | None:
        """What pypgstac formats the collection's items with, or None: no such collection."""

        def work(conn: psycopg.Connection) -> tuple[Any, ...] | None:
            if _scalar(conn, "SELECT 1 FROM collections WHERE id = %s", [collection_id]) is None:
                return None
            # The uncached function under Loader's class-wide lru_cache.
            loader = _BatchLoader(_ConnectionDB(conn))
            return Loader.collection_json.__wrapped__(loader, collection_id)

        return self._run(f"reading collection {collection_id!r}", work)

    def search(
        self,
        *,
        collections: Sequence[str] | None = None,
        bbox: Bbox | None = None,
        datetime: str | None = None,
        ids: Sequence[str] | None = None,
        query: Mapping[str, Any] | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        box, _, _ = check_search(bbox, datetime, query, limit)
        if (ids is not None and not ids) or limit == 0:
            return []
        # context off: pgSTAC skips counting the matches, a second query. nohydrate: each
        # feature comes with its base item and is hydrated here, by pypgstac's hydrate (the
        # same merge, in Rust): 0.25 s instead of 1.2 s for 1,000 items in PL/pgSQL.
        body: dict[str, Any] = {"conf": {"context": "off", "nohydrate": True}}
        if collections:
            body["collections"] = list(collections)
        if ids:
            body["ids"] = list(ids)
        if box:
            geometry = bbox_search_geometry(box)
            if geometry:
                body["intersects"] = geometry
            else:
                body["bbox"] = list(box)
        if datetime:
            body["datetime"] = datetime
        if query:
            body["query"] = dict(query)

        def work(conn: psycopg.Connection) -> list[dict[str, Any]]:
            return list(_search_pages(conn, body, limit, self.search_page_size))

        return self._run("searching", work)

    def _run(self, what: str, work: Callable[[psycopg.Connection], T]) -> T:
        """``work`` on a fresh connection, retried on transient errors, errors translated."""
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_exponential(multiplier=self.retry_wait_seconds, max=5),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt, self._connect() as conn:
                    return work(conn)
        except _ConnectFailed as e:
            raise TransientError(
                f"cannot connect to PostgreSQL at {self.location}: {e.reason} "
                f"(after {self.attempts} attempts)"
            ) from None
        except psycopg.Error as e:
            translated = self._translate(what, e)
            if translated is e:
                raise
            raise translated from e
        raise AssertionError("unreachable: Retrying either returns or raises")

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.connect_timeout_seconds,
                application_name="geo_platform",
                options=self._session_options(),
            )
        except psycopg.ProgrammingError:
            # libpq quotes the connection string in this message, password and all.
            raise ConfigurationError(
                "the PostgreSQL dsn is not a valid libpq connection string or URL"
            ) from None
        except psycopg.OperationalError as e:
            reason = _server_reason(str(e), self.dsn)
            if any(problem in reason for problem in _CONFIGURATION_PROBLEMS):
                raise ConfigurationError(f"PostgreSQL at {self.location}: {reason}") from None
            raise _ConnectFailed(reason) from None
        try:
            yield conn
        finally:
            conn.close()

    def _session_options(self) -> str:
        # pgSTAC's functions and tables without a schema prefix, as pypgstac sets it;
        # a lock wait that ends in an error, which is retried, rather than a hang.
        lock_timeout_ms = int(self.lock_timeout_seconds * 1000)
        return f"-c search_path=pgstac,public -c lock_timeout={lock_timeout_ms}"

    def _translate(self, what: str, error: psycopg.Error) -> Exception:
        """A geo_platform error for a database error that retrying did not or cannot fix."""
        message = _scrub((error.diag.message_primary or str(error)).strip(), self.dsn)
        if _is_transient(error):
            return TransientError(
                f"{what} at {self.location}: {message} (after {self.attempts} attempts)"
            )
        if isinstance(error, (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable)):
            return ConfigurationError(
                f"pgSTAC is not installed in {self.location} ({message}): run pypgstac migrate"
            )
        if "could not be converted to GEOS" in message:
            # Items written before geometries were checked, or by another tool.
            return InvalidInputError(
                f"{what} at {self.location}",
                f"an item's geometry cannot be read by PostGIS ({message}); "
                f"find such items with {_FIND_INVALID_GEOMETRIES!r}, then delete or fix them",
            )
        if isinstance(error, (psycopg.errors.RaiseException, psycopg.DataError)):
            return InvalidInputError(what, message)
        if isinstance(error, psycopg.IntegrityError):
            return InvalidInputError(what, message)
        return error


_FIND_INVALID_GEOMETRIES = "SELECT collection, id FROM pgstac.items WHERE NOT ST_IsValid(geometry)"


class _ConnectFailed(Exception):
    """No connection; ``reason`` is what libpq said, secrets removed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_transient(error: BaseException) -> bool:
    # OperationalError covers lost connections, lock timeouts (55P03), deadlocks and
    # serialization failures (40xxx), admin shutdowns and statement timeouts.
    return isinstance(error, (_ConnectFailed, psycopg.OperationalError))


def _server_reason(message: str, dsn: str) -> str:
    """The part of a libpq connection error that says why, e.g. 'connection refused'."""
    marker = "FATAL:" if "FATAL:" in message else "failed:"
    reason = message.rpartition(marker)[2].strip() or message
    reason = reason.splitlines()[0].strip()
    return _scrub(reason[:1].lower() + reason[1:], dsn)


def _scrub(text: str, dsn: str) -> str:
    """``text`` without the dsn's password: a safety net, libpq does not quote it."""
    try:
        password = str(conninfo_to_dict(dsn).get("password") or "")
    except psycopg.Error:
        return text
    # A very short password would blank out ordinary letters of the message instead.
    return text.replace(password, "***") if len(password) >= 4 else text


# Item bboxes (2D or 3D) merged into a few longitude arcs by PostgreSQL.
_MERGED_ARCS = (
    """
    WITH boxes AS (
        SELECT (b->>0)::float8 AS w, (b->>1)::float8 AS s,
            (b->>(jsonb_array_length(b) / 2))::float8 AS e,
            (b->>(jsonb_array_length(b) / 2 + 1))::float8 AS n
        FROM (SELECT content->'bbox' AS b FROM items WHERE collection = %s) AS bboxes
        WHERE jsonb_typeof(b) = 'array'
    ),
    """
    + MERGED_ARCS_SQL
)


def _scalar(conn: psycopg.Connection, query: str, params: Sequence[Any]) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _check_collections(conn: psycopg.Connection, items: list[dict[str, Any]]) -> None:
    wanted = sorted({item["collection"] for item in items})
    found = {
        row[0] for row in conn.execute("SELECT id FROM collections WHERE id = ANY(%s)", [wanted])
    }
    for item in items:
        if item["collection"] not in found:
            raise InvalidInputError(
                f"item {item['id']!r}", f"unknown collection {item['collection']!r}"
            )


def _lock_collections(conn: psycopg.Connection, items: list[dict[str, Any]]) -> None:
    """One writer per collection at a time, until the transaction ends: concurrent loads
    into one collection's partition contend on its statistics and may deadlock; runs of
    the same collection otherwise proceed side by side (only their writes take turns)."""
    for collection in sorted({item["collection"] for item in items}):
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [collection])


def _existing_keys(conn: psycopg.Connection, items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(collection, id) of the batch's items already stored."""
    collections = sorted({item["collection"] for item in items})
    # Both arrays filter: pgSTAC partitions items by collection, and each partition
    # has a unique index on id. Pairs that only match crosswise are dropped below.
    rows = conn.execute(
        "SELECT collection, id FROM items WHERE collection = ANY(%s) AND id = ANY(%s)",
        [collections, [item["id"] for item in items]],
    )
    wanted = {(item["collection"], item["id"]) for item in items}
    return {(c, i) for c, i in rows if (c, i) in wanted}


_DUPLICATE_KEY = re.compile(r"\(id\)=\((?P<id>.*)\) already exists")


def _duplicate_error(
    error: psycopg.errors.UniqueViolation, items: list[dict[str, Any]]
) -> Exception:
    match = _DUPLICATE_KEY.search(error.diag.message_detail or "")
    if not match:
        return InvalidInputError("items", "an item already exists (method insert)")
    item_id = match["id"]
    collection = next((i["collection"] for i in items if i["id"] == item_id), None)
    return InvalidInputError(
        f"item {item_id!r}", f"already exists in collection {collection!r} (method insert)"
    )


class _PgstacBatchWriter:
    """Items become pgSTAC rows with pypgstac's ``format_item`` (prepare), which
    pypgstac's ``load_partition`` COPYs in, one transaction a batch (write)."""

    def __init__(self, catalog: PgstacCatalog, method: LoadMethod) -> None:
        self.catalog = catalog
        self.method = method
        self._formatter = _ItemFormatter()

    def prepare(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        infos = self._formatter.infos
        for item in items:
            collection = item["collection"]
            if collection not in infos:
                info = self.catalog._formatting_info(collection)
                if info is None:
                    raise InvalidInputError(item_name(item), f"unknown collection {collection!r}")
                infos[collection] = info
        return [self._formatter.format_item(item) for item in items]

    def close(self) -> None:
        """Each write had a connection of its own: nothing is kept open."""

    def write(self, rows: list[dict[str, Any]]) -> LoadResult:
        method = self.method

        def work(conn: psycopg.Connection) -> LoadResult:
            # One transaction: the Loader's own per-partition transactions become
            # savepoints inside it, so a batch is applied whole or not at all.
            with conn.transaction():
                _lock_collections(conn, rows)
                _check_collections(conn, rows)
                existing = _existing_keys(conn, rows)
                if existing and method == "insert":
                    first = next(r for r in rows if (r["collection"], r["id"]) in existing)
                    raise InvalidInputError(
                        item_name(first),
                        f"already exists in collection {first['collection']!r} (method insert)",
                    )
                todo = rows
                if method == "ignore":
                    todo = [r for r in rows if (r["collection"], r["id"]) not in existing]
                if todo:
                    self._load(conn, todo, existing)
                if conn.info.transaction_status == TransactionStatus.INERROR:
                    # The Loader logs and swallows a failed partition-stats update,
                    # which leaves the transaction aborted: COMMIT would roll back quietly.
                    raise psycopg.OperationalError("pgSTAC's partition statistics update failed")
            return LoadResult(loaded=len(todo), skipped=len(rows) - len(todo))

        return self.catalog._run(f"loading {len(rows)} items", work)

    def _load(
        self, conn: psycopg.Connection, rows: list[dict[str, Any]], existing: set[Any]
    ) -> None:
        # When none of the ids is stored yet every method means insert, and a plain
        # COPY into the partition is pgSTAC's fastest path (no temporary table, no
        # ON CONFLICT): a fresh collection loads as fast with upsert as with insert.
        method = "insert" if not existing or self.method == "ignore" else self.method
        try:
            _load_rows(conn, rows, method, self.catalog.location)
        except psycopg.errors.UniqueViolation as e:
            if method == self.method:
                # insert of an id already there (or loaded meanwhile by another writer).
                raise _duplicate_error(e, rows) from None
            # Another writer stored one of these ids meanwhile: load as asked after all.
            _load_rows(conn, rows, self.method, self.catalog.location)


def _load_rows(
    conn: psycopg.Connection, rows: list[dict[str, Any]], method: LoadMethod, location: str
) -> None:
    """Rows formatted by pypgstac into their partitions: the loop of
    ``Loader.load_items`` without its formatting, which ``prepare`` did."""
    loader = _BatchLoader(_ConnectionDB(conn))
    try:
        loader.check_version()
        for row in rows:
            row["partition"] = loader._partition_update(row)
        rows = sorted(rows, key=itemgetter("partition"))
        for name, group in itertools.groupby(rows, key=itemgetter("partition")):
            loader.load_partition(loader._partition_cache[name], list(group), Methods(method))
    except (psycopg.Error, GeoPlatformError):
        raise
    except Exception as e:
        # pypgstac raises bare Exceptions for a schema version it does not support
        # or a collection it cannot read: the database, not the items, is at fault.
        raise ConfigurationError(f"pypgstac cannot load into {location}: {e}") from e


def _search_pages(
    conn: psycopg.Connection, body: dict[str, Any], limit: int | None, page_size: int
) -> Iterator[dict[str, Any]]:
    """Features of pgSTAC's search, following its ``next`` token until ``limit``."""
    returned = 0
    token: str | None = None
    while True:
        want = page_size if limit is None else min(page_size, limit - returned)
        page = dict(body, limit=want, **({"token": token} if token else {}))
        result = _scalar(conn, "SELECT search(%s)", [Jsonb(page)])
        features = result.get("features") or []
        for feature in features:
            base_item = feature.pop("pgstac:base_item", None)
            yield hydrate(base_item, feature) if base_item else feature
        returned += len(features)
        token = _next_token(result)
        if token is None or not features or (limit is not None and returned >= limit):
            return


def _next_token(result: dict[str, Any]) -> str | None:
    for link in result.get("links") or []:
        if link.get("rel") == "next":
            tokens = parse_qs(urlsplit(link.get("href", "")).query).get("token")
            return tokens[0] if tokens else None
    return None


class _ConnectionDB(PgstacDB):
    """pypgstac's database wrapper over a connection (and transaction) we own.

    PgstacDB opens a pool of its own; the Loader has to write inside our
    transaction instead, and must not roll back on our behalf.
    """

    def __init__(self, connection: psycopg.Connection) -> None:
        super().__init__(dsn="", connection=connection)

    def connect(self) -> psycopg.Connection:
        assert self.connection is not None
        return self.connection

    def query(  # type: ignore[override]  # the parent is wrapped by tenacity
        self,
        query: str | sql.SQL | sql.Composed,
        args: Sequence[Any] | None = None,
        row_factory: Any = tuple_row,
    ) -> Generator[Any, None, None]:
        assert self.connection is not None
        with self.connection.cursor(row_factory=row_factory) as cursor:
            cursor.execute(query, args, prepare=False)
            if cursor.description is not None:
                yield from cursor.fetchall()

    def disconnect(self) -> None:
        """The connection belongs to PgstacCatalog, which closes it."""


class _BatchLoader(Loader):
    """pypgstac's Loader, with its partition retry kept only for what it is for.

    The Loader retries a partition load up to 10 times, waiting up to 2 minutes,
    on lock and serialization errors too. Inside our transaction those are better
    retried by PgstacCatalog, whole batch on a fresh connection; a CheckViolation
    (partition bounds that need widening) is still handled here, as pypgstac does.
    """

    load_partition = Loader.load_partition.retry_with(
        retry=retry_if_exception_type(psycopg.errors.CheckViolation),
        stop=stop_after_attempt(3),
        wait=wait_none(),
    )

    def format_item(self, _item: Any) -> dict[str, Any]:
        try:
            return super().format_item(_item)
        except Exception as e:
            item = _item if isinstance(_item, dict) else {}
            raise InvalidInputError(f"item {item.get('id')!r}", _format_problem(item, e)) from e


class _ItemFormatter(_BatchLoader):
    """pypgstac's ``format_item``, with each collection's formatting info read once
    per load (by the batch writer, into ``infos``) rather than through a database."""

    def __init__(self) -> None:
        super().__init__(db=None)  # type: ignore[arg-type]  # formats only
        self.infos: dict[str, tuple[Any, ...]] = {}

    def collection_json(self, collection_id: str) -> tuple[Any, ...]:
        return self.infos[collection_id]


def _format_problem(item: dict[str, Any], error: Exception) -> str:
    """What pypgstac refused in an item; plpygis's own messages can be a bare letter."""
    try:
        Geometry.from_geojson(item.get("geometry"))
    except (PlpygisError, LookupError, TypeError, ValueError) as geometry_error:
        return f"has an invalid geometry ({type(geometry_error).__name__}: {geometry_error!r})"
    return f"refused by pypgstac: {type(error).__name__}: {error}"


def _rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))
