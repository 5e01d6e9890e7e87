"""The figures of every publication ever made (tasks/publishing/publication_metrics.py measures them):
one file per publication under `<data>/publications/metrics/<publication_id>.json` (one JSON line per
metric, never pruned), which `sql/publication_metrics.sql` loads into the warehouse table
`publication_metrics`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from tasks.core import contract as c
from tasks.core import durable, sql
from tasks.core.settings import Paths


def folder(paths: Paths) -> Path:
    """`<home>/publications/metrics`: one file per publication ever made, never pruned."""
    return paths.publication_metrics


def metrics_path(paths: Paths, publication_id: str) -> Path:
    return folder(paths) / f"{publication_id}.json"


def _lines(publication_id: str, metrics: dict) -> str:
    rows = []
    for name, value in metrics.items():
        value = float(value)
        rows.append(json.dumps({c.PUBLICATION_ID: publication_id, c.METRIC: name,
                                c.VALUE: value if math.isfinite(value) else None}))
    return "".join(row + "\n" for row in rows)


def write(paths: Paths, publication_id: str, metrics: dict) -> Path:
    """Write a publication's figures atomically (one JSON line per metric, NaN as null); returns the file.

    Append-only: a publication's file is written once; writing different figures for an id that already
    has a file raises FileExistsError (the same figures again are a no-op).
    """
    path = metrics_path(paths, publication_id)
    text = _lines(publication_id, metrics)
    if path.is_file():
        if path.read_text() == text:
            return path
        raise FileExistsError(f"{path}: figures of publication {publication_id} are already recorded")
    path.parent.mkdir(parents=True, exist_ok=True)
    durable.write_text_atomic(path, text)
    return path


def discard(paths: Paths, publication_id: str) -> None:
    """Remove a publication's figures (for a publish rolled back before it ever went live)."""
    path = metrics_path(paths, publication_id)
    if path.is_file():
        path.unlink()
        durable.fsync_dir(path.parent)


def read(paths: Paths, publication_id: str | None) -> dict[str, float] | None:
    """The recorded figures of one publication (null read back as NaN), or None when none were recorded."""
    if not publication_id:
        return None
    path = metrics_path(paths, publication_id)
    if not path.is_file():
        return None
    out = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row[c.METRIC])] = math.nan if row[c.VALUE] is None else float(row[c.VALUE])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} line {line_no}: not a {{{c.METRIC}, {c.VALUE}}} JSON row ({e})") from None
    return out


def files(paths: Paths) -> list[Path]:
    """Every recorded publication's file, oldest first (publication ids sort by time)."""
    where = folder(paths)
    return sorted(where.glob("*.json"), key=lambda p: p.name) if where.is_dir() else []


def history(paths: Paths) -> pd.DataFrame:
    """All recorded figures as rows (publication_id, metric, value), oldest publication first."""
    rows = [(p.stem, name, value) for p in files(paths) for name, value in (read(paths, p.stem) or {}).items()]
    return pd.DataFrame(rows, columns=list(c.PUBLICATION_METRICS_COLUMNS))


def warehouse_section(con, paths: Paths) -> None:
    """Load every recorded publication's figures into the `publication_metrics` table (none: no table)."""
    recorded = files(paths)
    if recorded:
        sql.run(con, c.PUBLICATION_METRICS, {"files": [str(p) for p in recorded]})
