"""Atomic writes and the sweep of temporaries a killed writer leaves behind."""

from __future__ import annotations

import os
import time

from tasks.core import durable
from tasks.core.settings import Paths


def test_write_text_atomic_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "CURRENT"
    durable.write_text_atomic(target, "a\n")
    durable.write_text_atomic(target, "b\n")
    assert target.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def _age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_sweep_removes_old_leftovers_and_keeps_live_files_and_fresh_temporaries(tmp_path):
    paths = Paths(tmp_path)
    for folder in (paths.lake, paths.splits, paths.publications, paths.warehouse.parent, paths.mlflow_db.parent):
        folder.mkdir(parents=True)
    live = [paths.lake / "abc123", paths.lake / "CURRENT", paths.publications / "20261123T000000000Z-aaaaaa",
            paths.warehouse, paths.mlflow_db, paths.splits / "random-1"]
    for p in live:
        p.mkdir() if "." not in p.name and p.name != "CURRENT" else p.write_text("x")
    old = [paths.lake / ".tmp-abc-1", paths.splits / ".tmp-random-2-ff", paths.publications / ".staging-x",
           paths.publications / ".deleting-y", paths.warehouse.parent / "lensflow.duckdb.tmp-9",
           paths.mlflow_db.parent / ".mlflow.db.tmp-3", paths.lake / ".CURRENT.tmp-4"]
    for p in old:
        p.mkdir() if p.name.startswith((".tmp-", ".staging-", ".deleting-")) else p.write_text("partial")
        _age(p, 2 * 3600)
    fresh = paths.warehouse.parent / "lensflow.duckdb.tmp-being-written"
    fresh.write_text("in progress")

    removed = durable.sweep(paths)

    assert sorted(removed) == sorted(p.name for p in old)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in live) and fresh.exists()
    assert durable.sweep(paths) == []
