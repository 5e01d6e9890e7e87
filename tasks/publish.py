"""Publish: top-N per user and similar items as a checked Parquet snapshot, swapped live atomically.

Layout: `<home>/publications/<publication_id>/{recommendations,similar_items}.parquet + publication.json`,
made live by replacing `<home>/publications/CURRENT`; the DuckDB warehouse then loads it through
`warehouse_section` and is swapped by rename (tasks.warehouse), so readers never block a publish.

Which model feeds what: recommendations come from the first model given (the flow passes the champion
with the best ranking metric first); similar items from the first dot-bias model (its item factors are
the space the dot product ranks in, so cosine on them is meaningful), else the first model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from models import scoring
from models.train import pick_device
from tasks import contract as c
from tasks import durable
from tasks import popularity
from tasks import sql
from tasks.faults import maybe_crash
from tasks.settings import Paths

SOURCE_MODEL, SOURCE_SIDE_INFO, SOURCE_POPULARITY = c.SOURCES
CURRENT = "CURRENT"
RECOMMENDATIONS_FILE = f"{c.RECOMMENDATIONS}.parquet"
SIMILAR_ITEMS_FILE = f"{c.SIMILAR_ITEMS}.parquet"
RECORD_FILE = "publication.json"
STAGING_PREFIX = ".staging-"
RECORD_COLUMNS = (c.PUBLICATION_ID, c.CREATED_AT, c.MODEL_NAME, c.MODEL_VERSION, c.MODEL_URI,
                  c.SIMILARITY_MODEL_NAME, c.SIMILARITY_MODEL_VERSION, c.SIMILARITY_MODEL_URI,
                  c.SPLIT_ID, c.DATA_HASH, c.METRICS_JSON, c.SNAPSHOT_PATH, c.RECOMMENDATION_ROWS,
                  c.SIMILAR_ITEM_ROWS)
# Checks run on every staged publication, in this order; each SQL file returns offending rows.
CHECKS = (
    "check_publication_rows",
    "check_recommendations_unique", "check_recommendations_ranks", "check_recommendations_sorted",
    "check_recommendations_source", "check_recommendations_not_rated", "check_recommendations_known_ids",
    "check_similar_items_unique", "check_similar_items_ranks", "check_similar_items_sorted",
    "check_similar_items_not_self", "check_similar_items_known_ids",
)


class PublicationCheckError(RuntimeError):
    """A staged publication broke a check; the previous publication stays live."""

    def __init__(self, publication_id: str, check: str, sample: list[dict], live: str | None):
        self.publication_id, self.check, self.sample, self.live = publication_id, check, sample, live
        super().__init__(
            f"publication {publication_id}: check '{check}' (sql/{check}.sql) failed, "
            f"{len(sample)} offending row(s) shown, e.g. {sample[0] if sample else {}}; "
            f"nothing published, live publication stays {live}")


@dataclass(frozen=True)
class ModelMeta:
    """Where a published model comes from: registry name, version, URI (and kind, metrics)."""

    name: str
    version: str
    uri: str = ""
    kind: str = ""
    metrics: dict = field(default_factory=dict)
    split_id: str = ""
    data_hash: str = ""


def model_meta(ref) -> ModelMeta:
    """A ModelMeta from a ModelMeta, a dict or any ModelRef-like object (name/version/uri attributes)."""
    if isinstance(ref, ModelMeta):
        return ref
    get = ref.get if isinstance(ref, dict) else (lambda key, default=None: getattr(ref, key, default))
    name = get("name") or get("model_name") or get("registered_name") or ""
    version = get("version") or get("model_version") or ""
    uri = get("uri") or get("model_uri") or ""
    kind = get("kind") or ""
    if not name or version in ("", None):
        raise ValueError(f"model metadata needs a name and a version, got {ref!r}")
    return ModelMeta(str(name), str(version), str(uri), str(kind), dict(get("metrics") or {}),
                     str(get("split_id") or ""), str(get("data_hash") or ""))


@dataclass(frozen=True)
class PublicationResult:
    """What one publish produced: id, row counts, where, how long each step took (seconds)."""

    publication_id: str
    snapshot: Path
    recommendation_rows: int
    similar_item_rows: int
    rows_by_source: dict
    seconds: dict


# --- scoring (plain functions on in-memory models and frames) ---------------------------------------

def choose_models(models: list) -> tuple[tuple, tuple]:
    """((recommender, meta) for recommendations, (recommender, meta) for similar items)."""
    if not models:
        raise ValueError("publish needs at least one (Recommender, metadata) pair")
    pairs = [(rec, model_meta(meta)) for rec, meta in models]
    dot = [p for p in pairs if _kind(*p) == c.MODEL_KIND_DOT]
    return pairs[0], (dot or pairs)[0]


def _kind(rec, meta: ModelMeta) -> str:
    return meta.kind or getattr(getattr(rec, "config", None), "kind", "") or ""


def supports_side_info(rec) -> bool:
    """Whether the model scores unseen users from their features (trained with use_side_info and user features)."""
    return bool(getattr(rec.config, "use_side_info", False)) and "user_rows" in getattr(rec, "side", {})


def _frame(users, items, scores, source: str) -> pd.DataFrame:
    """Long rows (user, rank, item, score, source) from [u, n] arrays, dropping -inf padding."""
    n = items.shape[1]
    df = pd.DataFrame({
        c.USER_ID: np.repeat(np.asarray(users, dtype=np.int64), n),
        c.RANK: np.tile(np.arange(1, n + 1, dtype=np.int32), len(users)),
        c.ITEM_ID: items.reshape(-1).astype(np.int64),
        c.SCORE: scores.reshape(-1).astype(np.float32),
    })
    df = df[np.isfinite(df[c.SCORE].to_numpy())]
    df[c.SOURCE] = source
    return df


def score_recommendations(rec, ratings: pd.DataFrame, users: np.ndarray, n: int = 50,
                          users_df: pd.DataFrame | None = None,
                          popular: pd.Series | None = None) -> pd.DataFrame:
    """Top-n unrated items per user: model for known users, side info or popularity for the rest.

    Returns columns (user_id, rank, item_id, score, source) sorted by (user_id, rank).
    """
    users = np.unique(np.asarray(users, dtype=np.int64))
    exclude = (ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy())
    known = rec.known_users(users)
    parts = []
    if known.any():
        items, scores = rec.recommend(users[known], n, exclude=exclude)
        parts.append(_frame(users[known], items, scores, SOURCE_MODEL))
    cold = users[~known]
    if len(cold) and supports_side_info(rec) and users_df is not None:
        features = users_df[users_df[c.USER_ID].isin(cold)]
        items, scores = rec.recommend(cold, n, exclude=exclude, user_features=_user_features(features))
        parts.append(_frame(cold, items, scores, SOURCE_SIDE_INFO))
    elif len(cold):
        popular = popularity.bayesian_average(ratings) if popular is None else popular
        items, scores = popularity.recommend(popular, cold, ratings, n)
        parts.append(_frame(cold, items, scores, SOURCE_POPULARITY))
    df = pd.concat(parts, ignore_index=True)
    # -inf padding was dropped per user from the end, so ranks stay 1..m; re-sort once for the table.
    return df.sort_values([c.USER_ID, c.RANK], kind="stable", ignore_index=True)


def _user_features(users_df: pd.DataFrame) -> dict:
    """The feature dict models.features expects, from a users frame."""
    return {col: users_df[col].to_numpy() for col in (c.USER_ID, c.AGE, c.GENDER, c.OCCUPATION)
            if col in users_df.columns}


def cosine_neighbours(item_ids: np.ndarray, vectors, k: int = 20, device=None,
                      chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k cosine neighbours per item, itself excluded: (item_ids, neighbour_ids[I, k], sims[I, k])."""
    dev = pick_device(device)  # CUDA when present, else CPU
    v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32).to(dev)      # [I, d]
    v = torch.nn.functional.normalize(v, dim=1)  # zero rows stay zero: similarity 0, never NaN
    n_items = len(item_ids)
    diagonal = np.arange(n_items)
    exclude = scoring.csr_from_pairs(diagonal, diagonal, n_items)             # each item excludes itself
    cols, sims = scoring.topk(lambda a, b: v[a:b] @ v.T, n_items, n_items, k, exclude=exclude,
                              chunk_size=chunk_size, device=dev)               # [I, k]
    item_ids = np.asarray(item_ids, dtype=np.int64)
    return item_ids, item_ids[cols], np.clip(sims, -1.0, 1.0)


def score_similar_items(rec, k: int = 20, catalogue: np.ndarray | None = None, device=None) -> pd.DataFrame:
    """Top-k similar items per item (cosine of item embeddings): (item_id, rank, similar_item_id, similarity)."""
    ids, vectors = rec.item_embeddings()
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors)
    if catalogue is not None:  # only catalogue items may appear on either side
        keep = np.isin(ids, catalogue)
        ids, vectors = ids[keep], vectors[keep]
    ids, nbrs, sims = cosine_neighbours(ids, vectors, k, device=device)
    df = pd.DataFrame({
        c.ITEM_ID: np.repeat(ids, nbrs.shape[1]),
        c.RANK: np.tile(np.arange(1, nbrs.shape[1] + 1, dtype=np.int32), len(ids)),
        c.SIMILAR_ITEM_ID: nbrs.reshape(-1),
        c.SIMILARITY: sims.reshape(-1).astype(np.float32),
    })
    df = df[np.isfinite(df[c.SIMILARITY].to_numpy())]
    return df.sort_values([c.ITEM_ID, c.RANK], kind="stable", ignore_index=True)


def _tag(df: pd.DataFrame, meta: ModelMeta, publication_id: str, columns: tuple) -> pd.DataFrame:
    """Add model name/version and publication id; columns in contract order."""
    df = df.copy()
    df[c.MODEL_NAME] = meta.name
    df[c.MODEL_VERSION] = meta.version
    df[c.PUBLICATION_ID] = publication_id
    return df[list(columns)]


# --- snapshot files ---------------------------------------------------------------------------------

def new_publication_id() -> str:
    """Sortable, unique id: UTC time to the millisecond plus 6 random hex digits."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


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


def run_checks(staged: Path, publication_id: str, ratings: pd.DataFrame, movies: pd.DataFrame,
               users: pd.DataFrame) -> list[tuple[str, list[dict]]]:
    """Run every check on a staged snapshot in an in-memory DuckDB; returns [(check, offending rows)]."""
    con = duckdb.connect()
    try:
        con.register(c.RATINGS, ratings[[c.USER_ID, c.ITEM_ID]])
        con.register(c.MOVIES, movies[[c.ITEM_ID]])
        con.register(c.USERS, users[[c.USER_ID]])
        # The same SQL that builds the warehouse tables, so the checks see what readers will see.
        sql.run(con, c.RECOMMENDATIONS, {"path": str(staged / RECOMMENDATIONS_FILE)})
        sql.run(con, c.SIMILAR_ITEMS, {"path": str(staged / SIMILAR_ITEMS_FILE)})
        failures = []
        for check in CHECKS:
            cur = sql.run(con, check, _check_params(check, publication_id))
            names = [d[0] for d in cur.description]
            bad = [dict(zip(names, row)) for row in cur.fetchall()]
            if bad:
                failures.append((check, bad))
        return failures
    finally:
        con.close()


def _check_params(check: str, publication_id: str) -> dict | None:
    """Bound parameters for a check file: the publication id where it asks for one."""
    return {c.PUBLICATION_ID: publication_id} if f"${c.PUBLICATION_ID}" in sql.load(check) else None


def current(paths: Paths) -> str | None:
    """The live publication id (publications/CURRENT), or None before the first publish."""
    pointer = paths.publications / CURRENT
    return pointer.read_text().strip() if pointer.is_file() else None


def _set_current(paths: Paths, publication_id: str) -> None:
    """Replace publications/CURRENT atomically (temp sibling, fsync, os.replace, fsync dir)."""
    durable.write_text_atomic(paths.publications / CURRENT, publication_id + "\n")


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
        # Rename first so a half-deleted folder is never listed as a publication.
        trash = p.with_name(f".deleting-{p.name}")
        os.replace(p, trash)
        shutil.rmtree(trash)
    return [p.name for p in doomed]


def rebuild_warehouse(paths: Paths) -> None:
    """Rebuild and swap the DuckDB warehouse with all its sections (sources, split, this publication)."""
    from tasks import warehouse

    warehouse.rebuild(paths)


def publish_tables(paths: Paths, publication_id: str, recommendations: pd.DataFrame,
                   similar_items: pd.DataFrame, record: dict, ratings: pd.DataFrame, movies: pd.DataFrame,
                   users: pd.DataFrame, *, retain: int = 5) -> dict:
    """Stage, check, make live, rebuild the warehouse, prune; returns seconds per step.

    On a failed check the staged folder is removed and PublicationCheckError names the check.
    """
    seconds = {}
    t = time.perf_counter()
    staged = stage(paths, publication_id, recommendations, similar_items, record)
    maybe_crash("publish-after-stage")
    seconds["write"] = time.perf_counter() - t
    t = time.perf_counter()
    failures = run_checks(staged, publication_id, ratings, movies, users)
    seconds["check"] = time.perf_counter() - t
    if failures:
        shutil.rmtree(staged)
        check, sample = failures[0]
        raise PublicationCheckError(publication_id, check, sample, current(paths))
    t = time.perf_counter()
    before = current(paths)
    os.replace(staged, paths.publications / publication_id)
    durable.fsync_dir(paths.publications)
    maybe_crash("publish-after-rename")
    _set_current(paths, publication_id)
    maybe_crash("publish-after-current")
    # Pruned before the rebuild so the publications table lists only kept snapshots; the previous
    # publication is always kept, it is what CURRENT goes back to if the rebuild fails.
    prune(paths, retain, keep=(before,) if before else ())
    try:
        rebuild_warehouse(paths)
    except BaseException:
        if before:
            _set_current(paths, before)
        else:
            (paths.publications / CURRENT).unlink(missing_ok=True)
        failed = paths.publications / publication_id
        os.replace(failed, failed.with_name(f".deleting-{publication_id}"))
        shutil.rmtree(failed.with_name(f".deleting-{publication_id}"))
        raise
    seconds["swap"] = time.perf_counter() - t
    return seconds


def publish(paths: Paths, recommenders: list, ratings_df: pd.DataFrame, movies_df: pd.DataFrame,
            users_df: pd.DataFrame, *, n: int = 50, k: int = 20, retain: int = 5, split_id: str | None = None,
            data_hash: str | None = None, metrics: dict | None = None, device=None,
            scored: pd.DataFrame | None = None) -> PublicationResult:
    """Score top-n per user and top-k similar items, write a checked snapshot and make it live.

    recommenders: [(Recommender, ModelRef-like metadata)], the recommendations model first.
    ratings_df: every rating known now (rated items are excluded); users_df: every user to publish for.
    scored: recommendations already scored elsewhere (sharded scoring, `score_recommendations` rows of
    the first model); the same checks apply to them.
    """
    started = time.perf_counter()
    (rec_model, rec_meta), (sim_model, sim_meta) = choose_models(recommenders)
    publication_id = new_publication_id()
    t = time.perf_counter()
    users = users_df[c.USER_ID].to_numpy()
    recs = score_recommendations(rec_model, ratings_df, users, n, users_df=users_df) if scored is None else scored
    seconds = {"score_recommendations": time.perf_counter() - t}
    t = time.perf_counter()
    sims = score_similar_items(sim_model, k, catalogue=movies_df[c.ITEM_ID].to_numpy(), device=device)
    seconds["score_similar_items"] = time.perf_counter() - t
    recs = _tag(recs, rec_meta, publication_id, c.RECOMMENDATIONS_COLUMNS)
    sims = _tag(sims, sim_meta, publication_id, c.SIMILAR_ITEMS_COLUMNS)
    record = {
        c.PUBLICATION_ID: publication_id,
        c.CREATED_AT: datetime.now(timezone.utc).isoformat(),
        c.MODEL_NAME: rec_meta.name, c.MODEL_VERSION: rec_meta.version, c.MODEL_URI: rec_meta.uri,
        c.SIMILARITY_MODEL_NAME: sim_meta.name, c.SIMILARITY_MODEL_VERSION: sim_meta.version,
        c.SIMILARITY_MODEL_URI: sim_meta.uri,
        c.SPLIT_ID: split_id or rec_meta.split_id or None, c.DATA_HASH: data_hash or rec_meta.data_hash or None,
        c.METRICS_JSON: json.dumps(metrics if metrics is not None else rec_meta.metrics, sort_keys=True),
        c.SNAPSHOT_PATH: str((paths.publications / publication_id).resolve()),
        c.RECOMMENDATION_ROWS: len(recs), c.SIMILAR_ITEM_ROWS: len(sims),
    }
    seconds.update(publish_tables(paths, publication_id, recs, sims, record, ratings_df, movies_df,
                                  users_df, retain=retain))
    seconds["total"] = time.perf_counter() - started
    by_source = recs[c.SOURCE].value_counts().to_dict()
    return PublicationResult(publication_id, paths.publications / publication_id, len(recs), len(sims),
                             {str(key): int(v) for key, v in by_source.items()}, seconds)


# --- warehouse section --------------------------------------------------------------------------------

# Re-run in the warehouse: checks that depend only on the published rows (the full set, including
# rated-item and catalogue checks, ran before the snapshot went live; ratings may grow since: then the
# rated items are filtered out and the rated-item check runs again, see warehouse_section).
WAREHOUSE_CHECKS = tuple(name for name in CHECKS if not name.endswith(("_not_rated", "_known_ids")))
STALE_CHECKS = tuple(name for name in CHECKS if name.endswith("_not_rated"))


def warehouse_section(con, paths: Paths) -> None:
    """Load the live publication's tables, the publications history and the title views into `con`.

    Creates nothing before the first publish. Needs the `ratings` and `movies` tables (the ingest section
    runs first): items rated since the publish are left out, and the publication is marked stale.
    """
    from tasks import lake, warehouse

    live = current(paths)
    if live is None:
        return
    snapshot = paths.publications / live
    data = lake.current(paths)
    data_hash = data.data_hash if data else None
    stale = json.loads((snapshot / RECORD_FILE).read_text()).get(c.DATA_HASH) != data_hash
    sql.run(con, c.RECOMMENDATIONS, {"path": str(snapshot / RECOMMENDATIONS_FILE)})
    if stale:  # scored on other ratings than the warehouse holds: drop what the users have rated since
        sql.run(con, "recommendations_drop_rated")
    sql.run(con, c.SIMILAR_ITEMS, {"path": str(snapshot / SIMILAR_ITEMS_FILE)})
    sql.run(con, c.PUBLICATIONS, {"files": [str(p / RECORD_FILE) for p in retained(paths)],
                                  c.DATA_HASH: data_hash})
    sql.run(con, c.USER_RECOMMENDATIONS)
    sql.run(con, c.ITEM_NEIGHBORS)
    for check in WAREHOUSE_CHECKS + (STALE_CHECKS if stale else ()):
        warehouse.check(con, check, _check_params(check, live))


def _publish_task():
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    # No retries: scoring is not I/O, and a failed check must not be retried into a publish.
    # No cache: every call is a new publication (and inputs are models and DataFrames, never cache keys).
    return task(name="publish", cache_policy=NO_CACHE)(publish)


publish_task = _publish_task()
