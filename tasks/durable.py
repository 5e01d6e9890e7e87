"""Durable, atomic file writes: fsync the data, rename into place, fsync the directory."""

from __future__ import annotations

import os
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
