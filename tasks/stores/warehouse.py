"""The DuckDB warehouse: an immutable file, rebuilt beside the live one and swapped in by rename.

DuckDB locks its file (a writer locks out readers in other processes), so `lensflow.duckdb` is never
opened for writing. `rebuild` writes `lensflow.duckdb.tmp-<uuid>`, runs each section (which loads its
tables and runs its checks), records a `warehouse_build` row, CHECKPOINTs, closes, fsyncs and
`os.replace`s it over the live file. Readers holding the old file keep it; new readers see the new one.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import duckdb

from tasks.stores import checks
from tasks.core import contract as c
from tasks.core import durable
from tasks.stores import lake
from tasks.stores import metrics_history
from tasks.stores import publications
from tasks.stores import split_store
from tasks.core import sql
from tasks.core.faults import maybe_crash
from tasks.core.settings import Paths

Section = Callable[[duckdb.DuckDBPyConnection, Paths], None]
# Write the file in DuckDB's v1.0 storage format (DuckDB 2.0 writes v2.0 by default): every DuckDB 1.x
# client (the pinned duckdb-cli, BI tools on 1.x) and 2.x opens it; reads measured no slower
# (bench/results/storage_compat.md).
STORAGE_COMPATIBILITY = "v1.0.0"


def check(con, name: str, table: str, params: dict | None = None) -> None:
    """Run the table-specific rule `sql/check_<name>.sql`; raise CheckFailed if it returns rows."""
    rule = checks.singular(name, table)
    broken = rule.offending_rows(con, params)
    if broken:
        raise checks.CheckFailed(rule, broken, "warehouse: ")


def load_sources(con, paths: Paths) -> None:
    """Section: materialise ratings, movies, users, genres from the live lake snapshot and check them."""
    snap = lake.current(paths)
    if snap is None:
        return  # nothing ingested yet: the section creates nothing
    for table in c.SOURCE_TABLES:
        sql.run(con, table, {"path": str(snap.table_path(table))})
    checks.enforce(con, c.SOURCE_TABLES, context="warehouse: ")
    counts = snap.row_counts
    check(con, "source_row_counts", c.RATINGS, {f"{t}_rows": int(counts[t]) for t in c.SOURCE_TABLES})


def split_tables(con, paths: Paths) -> None:
    """Section: `splits` (every stored split) and `split_ratings` (the CURRENT split), checked."""
    ids = split_store.stored_ids(paths)
    if not ids:
        return  # nothing stored yet: the section creates nothing
    files = [str(paths.splits / sid / split_store.SPLIT_FILE) for sid in ids]
    sid = split_store.current(paths)
    sql.run(con, c.SPLITS, {"files": files, "current": sid or ""})
    check(con, "splits", c.SPLITS)
    if sid is None:
        return
    folder = paths.splits / sid
    sql.run(con, c.SPLIT_RATINGS, {
        "split_id": sid,
        "train_file": str(folder / f"{c.PART_TRAIN}.parquet"), "train": c.PART_TRAIN,
        "valid_file": str(folder / f"{c.PART_VALID}.parquet"), "valid": c.PART_VALID,
        "test_file": str(folder / f"{c.PART_TEST}.parquet"), "test": c.PART_TEST,
    })
    check(con, "split_ratings", c.SPLIT_RATINGS, {"split_id": sid, "parts": list(c.PARTS)})


def publication_tables(con, paths: Paths) -> None:
    """Section: the live publication's tables, the publications history and the title views, checked.

    Creates nothing before the first publish. Needs the `movies` table (load_sources runs first).
    """
    live = publications.current(paths)
    if live is None:
        return
    snapshot = paths.publications / live
    data = lake.current(paths)
    data_hash = data.data_hash if data else None
    # Scored from other ratings than the warehouse now holds (an ingest since the publish): the items
    # users have rated since are left out, and `publications.stale` says so.
    stale = (publications.record(paths, live) or {}).get(c.DATA_HASH) != data_hash
    sql.run(con, c.RECOMMENDATIONS, {"path": str(snapshot / publications.RECOMMENDATIONS_FILE)})
    if stale:
        sql.run(con, "recommendations_drop_rated")
    sql.run(con, c.SIMILAR_ITEMS, {"path": str(snapshot / publications.SIMILAR_ITEMS_FILE)})
    sql.run(con, c.PUBLICATIONS, {"files": [str(p / publications.RECORD_FILE) for p in publications.retained(paths)],
                                  c.DATA_HASH: data_hash})
    sql.run(con, c.USER_RECOMMENDATIONS)
    sql.run(con, c.ITEM_NEIGHBORS)
    metrics_history.warehouse_section(con, paths)
    # The rules that depend only on the published rows; the rated-item and catalogue rules ran on the
    # staged snapshot against the ratings it was scored from. A stale publication was filtered against
    # today's ratings: its rated-item rule runs again.
    params = {c.PUBLICATION_ID: live}
    checks.enforce(con, (c.RECOMMENDATIONS, c.SIMILAR_ITEMS), params=params, context="warehouse: ")
    if stale:
        for rule in checks.checks_for([c.RECOMMENDATIONS], checks.AT_PUBLISH):
            if rule.rule == "not_in" and (bad := rule.offending_rows(con, params)):
                raise checks.CheckFailed(rule, bad, "warehouse: ")


# Every rebuild builds the whole warehouse, whoever asks (ingest, split, publish): a swap never drops
# another step's tables. Order matters: later sections join on the source tables.
SECTIONS: tuple[Section, ...] = (load_sources, split_tables, publication_tables)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def rebuild(paths: Paths, sections: Sequence[Section] | None = None) -> dict:
    """Build a complete new warehouse from the sections, check it and swap it live; returns its build record."""
    sections = SECTIONS if sections is None else tuple(sections)
    live = paths.warehouse
    live.parent.mkdir(parents=True, exist_ok=True)
    tmp = live.with_name(f"{live.name}.tmp-{uuid.uuid4().hex}")
    snap = lake.current(paths)
    record = {
        c.BUILD_ID: uuid.uuid4().hex,
        c.BUILT_AT: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        c.DATA_HASH: snap.data_hash if snap else None,
        c.BUILD_SECTIONS: json.dumps([getattr(s, "__qualname__", repr(s)) for s in sections]),
    }
    try:
        con = duckdb.connect(str(tmp), config={"storage_compatibility_version": STORAGE_COMPATIBILITY})
        try:
            for section in sections:
                section(con, paths)
            sql.run(con, c.WAREHOUSE_BUILD, dict(record))
            con.execute("checkpoint")
        finally:
            con.close()
        durable.fsync_file(tmp)
        maybe_crash("warehouse-before-replace")
        os.replace(tmp, live)
        durable.fsync_dir(live.parent)
    except BaseException:
        _remove(tmp)
        raise
    return record


def connect_readonly(paths: Paths) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the live warehouse file as it is now (a rebuild swaps the file, never blocks)."""
    if not paths.warehouse.is_file():
        raise FileNotFoundError(f"no warehouse at {paths.warehouse}: run the ingest first")
    # ATTACH into a fresh in-memory instance rather than duckdb.connect(path): DuckDB caches one
    # instance per path inside a process, so a second connect would keep seeing the swapped-out file.
    con = duckdb.connect()
    try:
        sql.run(con, "attach_warehouse", {"path": str(paths.warehouse)})
        sql.run(con, "use_warehouse")
    except BaseException:
        con.close()
        raise
    return con


def build_info(paths: Paths) -> dict | None:
    """The live warehouse's build record (build_id, built_at, data_hash, sections), or None."""
    if not paths.warehouse.is_file():
        return None
    con = connect_readonly(paths)
    try:
        cur = sql.run(con, "query_warehouse_build")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    return dict(zip(names, rows[0])) if rows else None


def build_id(paths: Paths) -> str | None:
    """Id of the live warehouse build, or None when there is no warehouse."""
    info = build_info(paths)
    return info[c.BUILD_ID] if info else None


def served_publication(paths: Paths) -> str | None:
    """The publication id the live warehouse file serves (one id in both tables), or None."""
    if not paths.warehouse.is_file():
        return None
    con = connect_readonly(paths)
    try:
        rows = sql.rows(con, "query_live_publication")
    except duckdb.CatalogException:  # built before the first publish: no published tables
        return None
    finally:
        con.close()
    ids = {row[1] for row in rows}
    return ids.pop() if len(ids) == 1 else None


def live_publication_matches(paths: Paths, refs, data_hash: str) -> str | None:
    """The live publication id if the warehouse serves it and it comes from these model versions and data."""
    return publications.matches(paths, refs, data_hash, served=served_publication(paths))


def up_to_date(paths: Paths, data_hash: str) -> bool:
    """True when the live lake snapshot and the live warehouse are both built from data_hash."""
    if lake.current_hash(paths) != data_hash:
        return False
    info = build_info(paths)
    return bool(info) and info[c.DATA_HASH] == data_hash


def publish_snapshot(paths: Paths, data_hash: str, sections: Sequence[Section] | None = None) -> dict:
    """Make lake snapshot data_hash live and rebuild the warehouse from it, as one unit.

    If the rebuild fails (a check, a crash), lake/CURRENT goes back to what it named before and the
    live warehouse file was never touched.
    """
    return lake.promote(paths, data_hash, lambda: rebuild(paths, sections))
