"""The publication store: snapshot folders under `<home>/publications/`, one live at a time.

Layout: `<publication_id>/{recommendations,similar_items}.parquet + publication.json`, staged under
`.staging-<id>/`, renamed into place, and made live by replacing the pointer file `CURRENT` atomically.
`promote(paths, id, then=rebuild)` flips the pointer and runs `then`; if `then` fails the pointer goes
back and the new folder is removed, the same way a lake snapshot is promoted (tasks.stores.lake.promote).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd

from tasks.core import contract as c
from tasks.core import durable
from tasks.core.faults import maybe_crash
from tasks.core.settings import Paths

T = TypeVar("T")
CURRENT = "CURRENT"
RECOMMENDATIONS_FILE = f"{c.RECOMMENDATIONS}.parquet"
SIMILAR_ITEMS_FILE = f"{c.SIMILAR_ITEMS}.parquet"
RECORD_FILE = "publication.json"
STAGING_PREFIX = ".staging-"
RECORD_COLUMNS = (c.PUBLICATION_ID, c.CREATED_AT, c.MODEL_NAME, c.MODEL_VERSION, c.MODEL_URI,
                  c.SIMILARITY_MODEL_NAME, c.SIMILARITY_MODEL_VERSION, c.SIMILARITY_MODEL_URI,
                  c.SPLIT_ID, c.DATA_HASH, c.METRICS_JSON, c.SNAPSHOT_PATH, c.RECOMMENDATION_ROWS,
                  c.SIMILAR_ITEM_ROWS, c.HEALTH_JSON, c.EVALUATED_MODEL_VERSION,
                  c.SIMILARITY_EVALUATED_MODEL_VERSION, c.SERVED_ALIAS, c.RATING_MODEL_NAME, c.RATING_MODEL_VERSION,
                  c.RATING_MODEL_URI, c.RATING_EVALUATED_MODEL_VERSION)


def stage(paths: Paths, publication_id: str, recommendations: pd.DataFrame, similar_items: pd.DataFrame,
          record: dict) -> Path:
    """Write a publication into `publications/.staging-<id>/` (not yet visible); returns that folder."""
    paths.publications.mkdir(parents=True, exist_ok=True)
    staged = paths.publications / f"{STAGING_PREFIX}{publication_id}"
    staged.mkdir()
    try:
        durable.write_file(staged / RECOMMENDATIONS_FILE, lambda p: recommendations.to_parquet(p, index=False))
        durable.write_file(staged / SIMILAR_ITEMS_FILE, lambda p: similar_items.to_parquet(p, index=False))
        line = json.dumps({key: record[key] for key in RECORD_COLUMNS}) + "\n"
        durable.write_file(staged / RECORD_FILE, lambda p: p.write_text(line))
        durable.fsync_dir(staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def discard(folder: Path) -> None:
    """Remove a snapshot folder; renamed first so a half-deleted folder is never listed as a publication."""
    trash = folder.with_name(f".deleting-{folder.name.removeprefix(STAGING_PREFIX)}")
    os.replace(folder, trash)
    shutil.rmtree(trash)


def current(paths: Paths) -> str | None:
    """The live publication id (publications/CURRENT), or None before the first publish."""
    pointer = paths.publications / CURRENT
    return pointer.read_text().strip() if pointer.is_file() else None


def set_current(paths: Paths, publication_id: str | None) -> None:
    """Replace publications/CURRENT atomically (None removes it: no publication is live)."""
    if publication_id is None:
        (paths.publications / CURRENT).unlink(missing_ok=True)
    else:
        durable.write_text_atomic(paths.publications / CURRENT, publication_id + "\n")


def record(paths: Paths, publication_id: str) -> dict | None:
    """The publication.json of a published snapshot, or None when there is none."""
    path = paths.publications / publication_id / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def retained(paths: Paths) -> list[Path]:
    """Published snapshot folders (with a publication.json), oldest first by id (ids sort by time)."""
    if not paths.publications.is_dir():
        return []
    found = [p for p in paths.publications.iterdir()
             if p.is_dir() and not p.name.startswith(".") and (p / RECORD_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(paths: Paths, retain: int, keep: tuple = ()) -> list[str]:
    """Delete the oldest snapshots beyond `retain` (never the live one nor `keep`); returns the removed ids."""
    spare = {current(paths), *keep}
    snapshots = [p for p in retained(paths) if p.name not in spare]
    doomed = snapshots[:max(0, len(snapshots) - (max(1, retain) - len(spare)))]
    for p in doomed:
        discard(p)
    return [p.name for p in doomed]


def promote(paths: Paths, staged: Path, publication_id: str, then: Callable[[], T], *, retain: int = 5) -> T:
    """Move a staged snapshot into place, make it live, prune, then run `then` (the warehouse rebuild).

    If `then` fails, CURRENT goes back to the previous publication and the new snapshot is removed.
    The previous publication is never pruned here: it is what CURRENT goes back to.
    """
    before = current(paths)
    final = paths.publications / publication_id
    os.replace(staged, final)
    durable.fsync_dir(paths.publications)
    maybe_crash("publish-after-rename")
    set_current(paths, publication_id)
    maybe_crash("publish-after-current")
    # Pruned before `then` so the rebuilt publications table lists only the kept snapshots.
    prune(paths, retain, keep=(before,) if before else ())
    try:
        return then()
    except BaseException:
        set_current(paths, before)
        discard(final)
        raise


def matches(paths: Paths, refs, data_hash: str, served: str | None) -> str | None:
    """The live publication id if it was made from exactly these model versions (lists first, then similar items
    and predicted ratings) and this data, else None.

    `served` is the id the live warehouse serves: a crash that flipped CURRENT without a rebuild must
    publish again.
    """
    live = current(paths)
    if live is None or served != live:
        return None
    rec = record(paths, live)
    if rec is None:
        return None
    wanted = {(r.name, str(r.version)) for r in refs}
    have = {(rec.get(c.MODEL_NAME), str(rec.get(c.MODEL_VERSION))),
            (rec.get(c.SIMILARITY_MODEL_NAME), str(rec.get(c.SIMILARITY_MODEL_VERSION)))}
    if rec.get(c.RATING_MODEL_NAME):
        have.add((rec[c.RATING_MODEL_NAME], str(rec.get(c.RATING_MODEL_VERSION))))
    first = (refs[0].name, str(refs[0].version)) if refs else None
    same_models = have == wanted and first == (rec.get(c.MODEL_NAME), str(rec.get(c.MODEL_VERSION)))
    return live if same_models and rec.get(c.DATA_HASH) == data_hash else None
