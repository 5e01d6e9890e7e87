"""Lake snapshots: typed Parquet, atomic rename, CURRENT pointer, reuse by hash."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tasks.core import contract as c
from tasks.stores import lake
from tasks.sources import movielens as ml


@pytest.fixture(scope="module")
def tables(synthetic_small):
    return ml.read_sources(synthetic_small)


def test_write_and_read_snapshot(home, tables):
    assert lake.current(home) is None
    path = lake.write_snapshot(home, tables, "abc123")
    assert path == home.lake / "abc123"
    snap = lake.current(home)
    assert snap.data_hash == "abc123" and snap.row_counts[c.RATINGS] == 6000
    for name in c.SOURCE_TABLES:
        assert pq.read_schema(snap.table_path(name)).remove_metadata() == ml.SCHEMAS[name]
    assert (home.lake / lake.CURRENT).read_text().strip() == "abc123"
    movies = lake.read(home, c.MOVIES)
    assert list(movies.columns) == list(c.MOVIES_COLUMNS) and len(movies) == 200
    assert [p.name for p in home.lake.iterdir() if p.name.startswith(".")] == []   # no temp left


def test_existing_snapshot_is_reused(home, tables):
    lake.write_snapshot(home, tables, "h1")
    before = (home.lake / "h1" / "ratings.parquet").stat().st_mtime_ns
    lake.write_snapshot(home, {c.RATINGS: tables.ratings.head(3)}, "h1")   # same hash: not rewritten
    assert (home.lake / "h1" / "ratings.parquet").stat().st_mtime_ns == before
    assert lake.current(home).row_counts[c.RATINGS] == 6000


def test_failed_write_leaves_nothing(home, tables):
    lake.write_snapshot(home, tables, "good")
    broken = tables.as_dict() | {c.RATINGS: tables.ratings.drop(columns=[c.RATING])}
    with pytest.raises(KeyError):
        lake.write_snapshot(home, broken, "bad")
    assert lake.snapshot(home, "bad") is None and not (home.lake / "bad").exists()
    assert lake.current_hash(home) == "good"
    assert sorted(p.name for p in home.lake.iterdir()) == [lake.CURRENT, "good"]


def test_promote_rolls_back_on_failure(home, tables):
    lake.write_snapshot(home, tables, "old")
    lake.write_snapshot(home, tables, "new", make_current=False)
    assert lake.current_hash(home) == "old"

    def boom():
        raise RuntimeError("rebuild failed")

    with pytest.raises(RuntimeError):
        lake.promote(home, "new", boom)
    assert lake.current_hash(home) == "old"
    assert lake.promote(home, "new", lambda: 42) == 42 and lake.current_hash(home) == "new"


def test_set_current_refuses_incomplete_snapshot(home):
    (home.lake / "half").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        lake.set_current(home, "half")
