"""The sensor's planning of one page: what is new, changed, deleted, and where to resume."""

import datetime as dt

import pytest

from geo_platform.lib.blob_scan import BronzeCursor, ListedBlob, plan_page

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(hours=1)


def _blobs(*keys, etag="e1", stored_at=OLD):
    return [ListedBlob(key, etag, stored_at) for key in keys]


def _plan(blobs, next_token, cursor, observed=None, registered=(), max_changes=100):
    return plan_page(
        blobs,
        next_token,
        cursor,
        observed=observed or {},
        registered=sorted(registered),
        now=NOW,
        settle=dt.timedelta(seconds=60),
        max_changes=max_changes,
    )


def test_deletes_are_found_only_in_the_span_each_page_covers():
    registered = ["a.tif", "b.tif", "c.tif", "d.tif", "e.tif", "f.tif"]
    observed = dict.fromkeys(registered, "e1")
    # Page 1 lists a, c (b is gone) and ends at c: d and later are not judged yet.
    first = _plan(_blobs("a.tif", "c.tif"), "tok1", BronzeCursor(), observed, registered)
    assert first.deleted == ["b.tif"] and first.changed == []
    assert (first.cursor.token, first.cursor.after) == ("tok1", "c.tif")
    # The last page lists f only: d and e, after c, are gone too.
    last = _plan(_blobs("f.tif"), None, first.cursor, observed, registered)
    assert last.deleted == ["d.tif", "e.tif"]
    assert (last.cursor.token, last.cursor.after, last.cursor.passes) == (None, "", 1)
    # An empty container deletes everything registered.
    assert _plan([], None, BronzeCursor(), observed, registered).deleted == registered


def test_changed_versions_unsettled_blobs_and_the_cap():
    blobs = [
        *_blobs("a.tif", "b.tif", etag="e2"),
        *_blobs("c.tif", etag="e1"),
        *_blobs("d.tif", stored_at=NOW - dt.timedelta(seconds=5)),
        *_blobs("e.tif", "f.tif", etag="e9"),
    ]
    observed = {"a.tif": "e1", "c.tif": "e1"}
    plan = _plan(blobs, "tok", BronzeCursor(token="t0", after="0"), observed, max_changes=3)
    assert plan.changed == [("a.tif", "e2"), ("b.tif", "e2"), ("e.tif", "e9")]
    assert plan.unsettled == 1
    # More than the cap: the next tick lists the same page again.
    assert (plan.cursor.token, plan.cursor.after) == ("t0", "0")


def test_names_dagster_cannot_use_are_reported_once_and_the_memory_is_bounded():
    first = _plan(_blobs("x|y.tif", "ok.tif", "notes.txt"), None, BronzeCursor())
    assert first.rejected == [("x|y.tif", "contains '|', which Dagster reserves in partition keys")]
    assert [key for key, _ in first.changed] == ["ok.tif"]
    again = _plan(_blobs("x|y.tif"), None, first.cursor)
    assert again.rejected == []
    many = BronzeCursor(rejected=[f"{i}|.tif" for i in range(1000)])
    assert len(_plan(_blobs("new|.tif"), None, many).cursor.rejected) == 1000


def test_a_cursor_from_before_paging_starts_a_new_pass():
    old = '{"seen": {"a.tif": "e1"}, "rejected": {}}'
    assert BronzeCursor.from_json(old) == BronzeCursor()
    cursor = BronzeCursor(token="t", after="k", passes=3, rejected=["a|b"])
    assert BronzeCursor.from_json(cursor.to_json()) == cursor
