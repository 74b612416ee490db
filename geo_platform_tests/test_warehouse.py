"""The Warehouse interface, the same cases on DuckDB and PostGIS."""

import pyarrow as pa
import pytest
import shapely

from geo_platform.backends import warehouse
from geo_platform.lib.tables import GeometryColumn, TableSpec

pytestmark = pytest.mark.asset

SPEC = TableSpec(
    schema="vector",
    name="swap_test",
    columns=(("fid", pa.int64()), ("label", pa.string()), ("when", pa.timestamp("us", tz="UTC"))),
    primary_key=("fid",),
    geometry=GeometryColumn("geom", 4326),
)


def _batch(start: int, count: int) -> pa.RecordBatch:
    points = [shapely.to_wkb(shapely.Point(i % 90, i % 45)) for i in range(start, start + count)]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(start, start + count), pa.int64()),
            pa.array([f'row "{i}", with comma\nand newline' for i in range(count)]),
            pa.array([None] * count, pa.timestamp("us", tz="UTC")),
            pa.array(points, pa.binary()),
        ],
        schema=SPEC.arrow_schema(),
    )


def test_a_failed_load_leaves_the_previous_table_whole(profile_settings):
    tables = warehouse(profile_settings)
    assert tables.replace_table(SPEC, [_batch(0, 1000), _batch(1000, 500)]) == 1500

    def failing():
        yield _batch(0, 1000)
        raise RuntimeError("the source broke half way")

    with pytest.raises(RuntimeError, match="half way"):
        tables.replace_table(SPEC, failing())
    assert tables.row_count("vector", "swap_test") == 1500
    assert [t for t in tables.tables("vector") if t.startswith("_stage")] == []
    check = tables.check_geometries("vector", "swap_test", "geom")
    assert (check.rows, check.invalid, check.srids) == (1500, 0, (4326,))

    # A duplicate primary key fails the load too, and the old table stays.
    with pytest.raises(Exception, match=r"(?i)duplicate|constraint"):
        tables.replace_table(SPEC, [_batch(0, 10), _batch(5, 10)])
    assert tables.row_count("vector", "swap_test") == 1500
    assert tables.replace_table(SPEC, [_batch(0, 3)]) == 3
    assert tables.row_count("vector", "swap_test") == 3
    assert [c for c, _ in tables.columns("vector", "swap_test")] == ["fid", "label", "when", "geom"]


def test_tables_without_geometry_for_other_domains(profile_settings):
    """What the H3 grids need: a table of plain columns with an index, in its own schema."""
    tables = warehouse(profile_settings)
    spec = TableSpec(
        schema="h3",
        name="grid_test",
        columns=(("cell", pa.int64()), ("resolution", pa.int32())),
        primary_key=("cell",),
        indexes=("resolution",),
    )
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, 2, 3], pa.int64()), pa.array([0, 0, 1], pa.int32())],
        schema=spec.arrow_schema(),
    )
    assert tables.replace_table(spec, [batch]) == 3
    assert tables.replace_table(spec, [batch]) == 3
    assert tables.row_count("h3", "grid_test") == 3
    # Other tests of the session may have H3 tables in the same database.
    assert "grid_test" in tables.tables("h3")


PARTITIONED = TableSpec(
    schema="vector",
    name="partitioned_test",
    columns=(("fid", pa.int64()), ("part", pa.int32())),
    primary_key=("fid",),
    geometry=GeometryColumn("geom", 4326),
    indexes=("part",),
)


def _part(part: int, fids: range) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(fids, pa.int64()),
            pa.array([part] * len(fids), pa.int32()),
            pa.array([shapely.to_wkb(shapely.Point(i % 90, part)) for i in fids], pa.binary()),
        ],
        schema=PARTITIONED.arrow_schema(),
    )


def test_replacing_a_partition_leaves_the_others(profile_settings):
    tables = warehouse(profile_settings)
    assert tables.replace_partition(PARTITIONED, {"part": 1}, [_part(1, range(0, 100))]) == 100
    assert tables.replace_partition(PARTITIONED, {"part": 2}, [_part(2, range(100, 150))]) == 50
    # Replaced with fewer rows, some of the same keys: the old rows of part 1 are gone.
    assert tables.replace_partition(PARTITIONED, {"part": 1}, [_part(1, range(50, 80))]) == 30
    assert tables.row_count("vector", "partitioned_test") == 80

    def failing():
        yield _part(2, range(100, 110))
        raise RuntimeError("the source broke half way")

    with pytest.raises(RuntimeError, match="half way"):
        tables.replace_partition(PARTITIONED, {"part": 2}, failing())
    with pytest.raises(ValueError, match="outside the partition"):
        tables.replace_partition(PARTITIONED, {"part": 2}, [_part(3, range(200, 210))])
    assert tables.row_count("vector", "partitioned_test") == 80
    assert [t for t in tables.tables("vector") if t.startswith("_stage")] == []
    rows = pa.Table.from_batches(
        list(tables.read_table("vector", "partitioned_test", ["fid", "part"], "geom"))
    )
    by_part = {
        p: sorted(
            f
            for f, q in zip(rows["fid"].to_pylist(), rows["part"].to_pylist(), strict=True)
            if q == p
        )
        for p in (1, 2)
    }
    assert by_part == {1: list(range(50, 80)), 2: list(range(100, 150))}
    assert shapely.from_wkb(rows["geom"][0].as_py()).geom_type == "Point"
    check = tables.check_geometries("vector", "partitioned_test", "geom")
    assert (check.rows, check.invalid, check.srids) == (80, 0, (4326,))
    with pytest.raises(LookupError):
        list(tables.read_table("vector", "no_such_table", ["fid"]))
