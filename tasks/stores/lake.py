"""The lake: one immutable Parquet snapshot of the source tables per data hash.

Layout: `<home>/lake/<data_hash>/<table>.parquet` plus `manifest.json`, written under a temporary
directory name and renamed into place; `<home>/lake/CURRENT` (replaced atomically) names the live
snapshot. A reader therefore sees either the old snapshot or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core import contract as c
from tasks.core.durable import fsync_dir, write_text_atomic
from tasks.core.faults import maybe_crash
from tasks.core.settings import Paths
from tasks.sources.movielens import SCHEMAS, to_arrow

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
T = TypeVar("T")


@dataclass(frozen=True)
class LakeSnapshot:
    """A complete snapshot: its data hash, folder and manifest (row counts, creation time, encodings)."""

    data_hash: str
    path: Path
    manifest: dict

    def table_path(self, table_name: str) -> Path:
        """The Parquet file of one table in this snapshot."""
        return self.path / f"{table_name}.parquet"

    @property
    def row_counts(self) -> dict[str, int]:
        return dict(self.manifest.get("row_counts", {}))

    @property
    def encodings(self) -> dict[str, str]:
        """The text encoding each source file was read in (empty for snapshots written without one)."""
        return dict(self.manifest.get("encodings", {}))


def _to_arrow(name: str, table) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    return to_arrow(name, table) if name in SCHEMAS else pa.Table.from_pandas(table, preserve_index=False)


def snapshot(paths: Paths, data_hash: str) -> LakeSnapshot | None:
    """The complete snapshot for a data hash, or None (an unfinished temporary folder never counts)."""
    path = paths.lake / data_hash
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    return LakeSnapshot(data_hash, path, json.loads(manifest.read_text()))


def write_snapshot(paths: Paths, tables, data_hash: str, *, make_current: bool = True) -> Path:
    """Write the tables (SourceTables or {name: DataFrame/Table}) as snapshot `data_hash`; returns its folder.

    A snapshot that already exists is reused as is (same hash, same content). With make_current the
    snapshot also becomes the live one.
    """
    if not data_hash or any(ch in data_hash for ch in "/\\.") :
        raise ValueError(f"bad data hash {data_hash!r}")
    existing = snapshot(paths, data_hash)
    if existing is None:
        items: Mapping = tables.as_dict() if hasattr(tables, "as_dict") else tables
        paths.lake.mkdir(parents=True, exist_ok=True)
        tmp = paths.lake / f".tmp-{data_hash}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            counts = {}
            for name, table in items.items():
                at = _to_arrow(name, table)
                target = tmp / f"{name}.parquet"
                pq.write_table(at, target, compression="zstd")
                with open(target, "rb+") as f:
                    os.fsync(f.fileno())
                counts[name] = at.num_rows
            manifest = {c.DATA_HASH: data_hash, "row_counts": counts,
                        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            if getattr(tables, "encodings", None):
                manifest["encodings"] = dict(tables.encodings)   # per source file: ascii, utf-8 or latin-1
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            fsync_dir(tmp)
            maybe_crash("lake-before-rename")
            try:
                os.rename(tmp, paths.lake / data_hash)     # atomic; fails if a twin writer got there first
            except OSError:
                if snapshot(paths, data_hash) is None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            fsync_dir(paths.lake)
            maybe_crash("lake-after-rename")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if make_current:
        set_current(paths, data_hash)
    return paths.lake / data_hash


def current_hash(paths: Paths) -> str | None:
    """The data hash named by lake/CURRENT, or None."""
    pointer = paths.lake / CURRENT
    return pointer.read_text().strip() or None if pointer.is_file() else None


def current(paths: Paths) -> LakeSnapshot | None:
    """The live snapshot, or None before the first ingest."""
    h = current_hash(paths)
    return snapshot(paths, h) if h else None


def set_current(paths: Paths, data_hash: str | None) -> None:
    """Make a complete snapshot live (None removes the pointer: no live snapshot)."""
    pointer = paths.lake / CURRENT
    if data_hash is None:
        pointer.unlink(missing_ok=True)
        return
    if snapshot(paths, data_hash) is None:
        raise FileNotFoundError(f"no complete lake snapshot {data_hash} under {paths.lake}")
    write_text_atomic(pointer, data_hash + "\n")


def promote(paths: Paths, data_hash: str, then: Callable[[], T]) -> T:
    """Make `data_hash` live, run `then` (the warehouse rebuild); if it fails, put the old pointer back."""
    before = current_hash(paths)
    set_current(paths, data_hash)
    maybe_crash("lake-after-current")
    try:
        return then()
    except BaseException:
        set_current(paths, before)
        raise


def read(paths: Paths, table_name: str, columns: list[str] | None = None, *,
         user_range: tuple[int, int] | None = None, data_hash: str | None = None) -> pd.DataFrame:
    """One table of the live snapshot (or of snapshot `data_hash`) as a DataFrame.

    user_range=(lo, hi): only the rows with lo <= user_id <= hi, filtered while the Parquet file is read
    (row groups outside the range are skipped by their statistics; other rows never become a DataFrame).
    """
    snap = current(paths) if data_hash is None else snapshot(paths, data_hash)
    if snap is None:
        what = "live lake snapshot" if data_hash is None else f"complete lake snapshot {data_hash}"
        raise FileNotFoundError(f"no {what} under {paths.lake}: run the ingest first")
    filters = None
    if user_range is not None:
        lo, hi = (int(v) for v in user_range)
        filters = [(c.USER_ID, ">=", lo), (c.USER_ID, "<=", hi)]
    return pq.read_table(snap.table_path(table_name), columns=columns, filters=filters).to_pandas()
