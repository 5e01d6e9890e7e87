"""Durable, atomic file writes: fsync the data, rename into place, fsync the directory."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_file(path: Path, write) -> None:
    """Write with `write(path)` (e.g. a DataFrame's to_parquet), then fsync the file."""
    write(path)
    fsync_file(path)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace a small file (a pointer) atomically: temporary sibling, fsync, os.replace, fsync dir."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    write_file(tmp, lambda p: p.write_text(text))
    os.replace(tmp, path)
    fsync_dir(path.parent)


# Temporary names every writer here uses: they never become live, and one left behind means its
# writer was killed. Pointer files' temporaries (`.CURRENT.tmp-*`) match `.*.tmp-*`.
LEFTOVER_PATTERNS = (".tmp-*", ".*.tmp-*", "*.tmp-*", ".staging-*", ".deleting-*")


def scratch_dir(paths, prefix: str):
    """A temporary folder under `<home>/tmp` (removed on exit; `sweep` removes one a killed run left)."""
    paths.tmp.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=paths.tmp)


def remove_leftovers(folder: Path, older_than_s: float = 3600.0, patterns=LEFTOVER_PATTERNS) -> list[str]:
    """Delete temporary files and folders a killed writer left in `folder`; returns their names.

    Only entries untouched for `older_than_s` go, so a writer still running in another process keeps
    its temporary file (no writer here takes an hour between creating and renaming one).
    """
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    seen: set[Path] = set()
    for pattern in patterns:
        for entry in folder.glob(pattern):
            if entry in seen:
                continue
            seen.add(entry)
            try:
                if entry.lstat().st_mtime > cutoff:
                    continue
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed.append(entry.name)
            except FileNotFoundError:
                continue  # another process cleaned it first
    return sorted(removed)


def sweep(paths, older_than_s: float = 3600.0) -> list[str]:
    """remove_leftovers in every folder of the data home that writers use, and anything in `<home>/tmp`."""
    folders = (paths.lake, paths.splits, paths.publications, paths.publication_metrics, paths.warehouse.parent,
               paths.mlflow_db.parent)
    names = [name for folder in folders for name in remove_leftovers(folder, older_than_s)]
    return names + [f"tmp/{name}" for name in remove_leftovers(paths.tmp, older_than_s, ("*", ".*"))]
