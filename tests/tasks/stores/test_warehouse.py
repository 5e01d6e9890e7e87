"""Warehouse rebuild: materialised tables, checks, swap by rename, readers never blocked."""

from __future__ import annotations

import duckdb
import pytest

from tasks.core import contract as c
from tasks.stores import checks
from tasks.stores import lake
from tasks.stores import warehouse
from tasks.sources import movielens as ml


@pytest.fixture(scope="module")
def tables(synthetic_small):
    return ml.read_sources(synthetic_small)


def test_rebuild_materialises_source_tables(home, tables):
    lake.write_snapshot(home, tables, "h1")
    record = warehouse.rebuild(home)
    assert record[c.DATA_HASH] == "h1"
    con = warehouse.connect_readonly(home)
    try:
        kinds = dict(con.sql("select table_name, table_type from information_schema.tables").fetchall())
        assert {kinds[t] for t in c.SOURCE_TABLES} == {"BASE TABLE"}
        assert con.sql(f"select count(*) from {c.RATINGS}").fetchall() == [(6000,)]
        cols = [r[0] for r in con.sql(f"describe {c.MOVIES}").fetchall()]
        assert cols == list(c.MOVIES_COLUMNS)
        types = dict((r[0], r[1]) for r in con.sql(f"describe {c.RATINGS}").fetchall())
        assert types == {c.USER_ID: "INTEGER", c.ITEM_ID: "INTEGER", c.RATING: "TINYINT",
                         c.RATED_AT: "TIMESTAMP"}
    finally:
        con.close()
    info = warehouse.build_info(home)
    assert info[c.BUILD_ID] == record[c.BUILD_ID] == warehouse.build_id(home)
    assert [p.name for p in home.warehouse.parent.iterdir()] == [home.warehouse.name]


def test_reader_keeps_old_file_while_new_one_is_swapped_in(home, tables):
    lake.write_snapshot(home, tables, "h1")
    warehouse.rebuild(home)
    old_reader = warehouse.connect_readonly(home)
    small = tables.as_dict() | {c.RATINGS: tables.ratings.head(10)}
    lake.write_snapshot(home, small, "h2")
    warehouse.rebuild(home)                              # not blocked by the open reader
    new_reader = warehouse.connect_readonly(home)
    try:
        assert old_reader.sql(f"select count(*) from {c.RATINGS}").fetchall() == [(6000,)]
        assert new_reader.sql(f"select count(*) from {c.RATINGS}").fetchall() == [(10,)]
    finally:
        old_reader.close()
        new_reader.close()


def test_failed_check_keeps_live_warehouse(home, tables):
    lake.write_snapshot(home, tables, "h1")
    before = warehouse.rebuild(home)
    bad = tables.ratings.copy()
    bad.loc[0, c.RATING] = 9                             # slips past parsing only because we bypass it
    lake.write_snapshot(home, tables.as_dict() | {c.RATINGS: bad}, "bad", make_current=False)
    with pytest.raises(checks.CheckFailed, match=r"ratings\.in_range\(rating\)"):
        warehouse.publish_snapshot(home, "bad")
    assert lake.current_hash(home) == "h1"
    assert warehouse.build_id(home) == before[c.BUILD_ID]
    assert [p.name for p in home.warehouse.parent.iterdir()] == [home.warehouse.name]   # temp removed


def test_sections_are_a_parameter(home, tables):
    lake.write_snapshot(home, tables, "h1")

    def extra(con, paths):
        con.execute("create table extra as select 1 as x")

    warehouse.rebuild(home, sections=(warehouse.load_sources, extra))
    con = warehouse.connect_readonly(home)
    try:
        assert con.sql("select x from extra").fetchall() == [(1,)]
        assert con.sql(f"select count(*) from {c.USERS}").fetchall() == [(120,)]
    finally:
        con.close()


def test_empty_lake_builds_empty_warehouse(home):
    record = warehouse.rebuild(home)
    assert record[c.DATA_HASH] is None
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.sql("select count(*) from information_schema.tables where table_name = 'ratings'"
                       ).fetchall() == [(0,)]
    finally:
        con.close()


def test_source_checks_catch_bad_rows():
    con = duckdb.connect()
    try:
        con.execute(f"create table {c.RATINGS} as select * from (values (1, 2, 5), (1, 3, 4), (2, 2, 3), (1, 2, 1)) "
                    f"t({c.USER_ID}, {c.ITEM_ID}, {c.RATING})")
        con.execute(f"create table {c.USERS} as select 1 as {c.USER_ID}")
        con.execute(f"create table {c.MOVIES} as select * from (values (2), (3)) t({c.ITEM_ID})")
        assert checks.unique(c.RATINGS, c.USER_ID, c.ITEM_ID).offending_rows(con) == [
            {c.USER_ID: 1, c.ITEM_ID: 2}]
        assert checks.known_ids(c.RATINGS, c.USER_ID, c.USERS).offending_rows(con) == [
            {c.USER_ID: 2, c.ITEM_ID: 2, c.RATING: 3}]
        assert checks.known_ids(c.RATINGS, c.ITEM_ID, c.MOVIES).offending_rows(con) == []
        with pytest.raises(checks.CheckFailed, match=r"ratings\.unique\(user_id, item_id\)") as e:
            checks.enforce(con, [c.RATINGS])
        assert e.value.sample == [{c.USER_ID: 1, c.ITEM_ID: 2}]
    finally:
        con.close()
