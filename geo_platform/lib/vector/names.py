"""Table and column names: pure functions of the blob key, the layer and the source's fields.

Every name is lowercase ``[a-z0-9_]``, at most 63 bytes (PostgreSQL's limit), and is
always quoted when used. Table names are one-to-one with ``(blob key, layer)``:

- a key and layer that are already plain snake case (``roads/2024/main_roads.gpkg``,
  layer ``lanes``) read back as they are: ``roads__2024__main_roads_gpkg__lanes``
  (``__`` between folders and before the layer; single-layer files have no layer part);
- anything else (capitals, dots, dashes, spaces, non-ASCII, a name over 63 bytes) is
  sanitised, truncated if needed, and ends with ``___`` and a hash of the exact key and
  layer. Plain names never contain ``___``, so the two kinds never meet.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from geo_platform.lib.vector.formats import VECTOR_SUFFIXES

MAX_IDENTIFIER_BYTES = 63
# The geometry and primary-key columns every vector table has.
GEOMETRY_COLUMN = "geom"
FID_COLUMN = "fid"
_HASH_CHARS = 10
_PLAIN_PART = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
_UNSAFE = re.compile(r"[^a-z0-9]+")

# Reserved in PostgreSQL or DuckDB (or both): a column so named would need quoting in
# every query a user writes, so it gets a trailing underscore instead.
RESERVED_WORDS = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization between binary both
    case cast check collate collation column concurrently constraint create cross
    current_catalog current_date current_role current_schema current_time current_timestamp
    current_user default deferrable desc describe distinct do else end except false fetch
    for foreign freeze from full grant group having ilike in initially inner intersect into
    is isnull join lateral leading left like limit localtime localtimestamp natural not
    notnull null offset on only or order outer overlaps pivot placing primary qualify
    references returning right select session_user similar some summarize symmetric
    system_user table tablesample then to trailing true union unique unpivot user using
    variadic verbose when where window with
    """.split()
)
# Our own columns: a source field of the same name is renamed rather than overwritten.
OWN_COLUMNS = frozenset({GEOMETRY_COLUMN, FID_COLUMN})


def short_hash(text: str, chars: int = _HASH_CHARS) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def _ascii_words(text: str) -> str:
    """Lowercase ASCII with every run of other characters as one ``_``, no edge ``_``."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _UNSAFE.sub("_", folded.lower()).strip("_")


def _fit(readable: str, suffix: str) -> str:
    room = MAX_IDENTIFIER_BYTES - len(suffix)
    return readable[:room].rstrip("_") + suffix


def _plain_parts(blob_key: str, layer: str | None, extension: str) -> list[str] | None:
    """The parts of a name that needs no hash, or None if the key or layer is not plain."""
    segments = blob_key.split("/")
    if extension != extension.lower() or not segments[-1].endswith(extension):
        return None
    ext = extension.lstrip(".").replace(".", "_")
    parts = [*segments[:-1], segments[-1][: -len(extension)]]
    if not all(_PLAIN_PART.fullmatch(p) for p in [*parts, *([layer] if layer else [])]):
        return None
    if not parts[0][0].isalpha():
        return None
    parts[-1] = f"{parts[-1]}_{ext}"
    if layer is None:
        return parts
    # A layer named like a file (``c_geojson``) would read as another key's last segment.
    if any(layer.endswith("_" + s.lstrip(".").replace(".", "_")) for s in VECTOR_SUFFIXES):
        return None
    return [*parts, layer]


def table_name(blob_key: str, layer: str | None, extension: str) -> str:
    """The table of one layer of one blob (``layer`` None for single-layer formats).

    ``extension`` is the key's vector suffix as it appears in the key (``.gpkg``).
    """
    plain = _plain_parts(blob_key, layer, extension)
    if plain is not None:
        name = "__".join(plain)
        if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
            return name
    exact = blob_key if layer is None else f"{blob_key}\x00{layer}"
    readable = _ascii_words(blob_key if layer is None else f"{blob_key} {layer}") or "t"
    if not readable[0].isalpha():
        readable = f"t_{readable}"
    return _fit(readable, f"___{short_hash(exact)}")


@dataclass(frozen=True)
class ColumnName:
    source: str
    name: str
    why: str  # "" when the name is the source's own


def column_names(sources: Iterable[str]) -> list[ColumnName]:
    """Safe, unique column names for a layer's fields, in order, with why each changed."""
    taken: set[str] = set(OWN_COLUMNS)
    out: list[ColumnName] = []
    for source in sources:
        name, why = _column_base(source)
        if name in taken:
            stem, n = name, 2
            while name in taken:
                suffix = f"_{n}"
                name = _fit(stem, suffix) if len(stem) + len(suffix) > 63 else stem + suffix
                n += 1
            why = why or "duplicate"
        taken.add(name)
        out.append(ColumnName(source, name, why))
    return out


def _column_base(source: str) -> tuple[str, str]:
    name = _ascii_words(source) or "field"
    why = "" if name == source else "sanitised"
    if name[0].isdigit():
        name, why = f"c_{name}", "sanitised"
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        name, why = _fit(name, f"_{short_hash(source, 8)}"), "truncated"
    if name in RESERVED_WORDS:
        name, why = f"{name}_", "reserved word"
    elif name in OWN_COLUMNS:
        name, why = f"{name}_", f"{name} is the table's own column"
    return name, why
