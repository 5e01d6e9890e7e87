"""Publish: score the tables from the serving models, stage a checked snapshot, make it live.

`publish` scores top-n per user and top-k similar items, tags every row with its model version and
publication id, stages the snapshot (tasks.stores.publications), checks it against the declared rules
(tasks.stores.checks, AT_PUBLISH: against the ratings it was scored from), and promotes it with a warehouse
rebuild, so a reader sees the old tables or the new ones, never a mix.

Which model feeds what (tasks.registry.serving.Roles): the ranking model orders the lists; the rating model's serving
fit says what each user would rate each listed movie (`predicted_rating`, null when no rating model earned
champion); similar items come from co-ratings blended with the dot-bias model's item vectors (the space its
dot product ranks in), with metadata for items too rarely co-rated (tasks/publishing/item_similarity.py).
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from tasks.stores import checks
from tasks.publishing import publication_metrics as health
from tasks.publishing import narrowing
from tasks.stores import metrics_history
from tasks.core import contract as c
from tasks.stores import publications as store
from tasks.publishing import score_tables
from tasks.core import sql
from tasks.stores import warehouse
from tasks.core.faults import maybe_crash
from tasks.registry.model_ref import ModelRef, ServingModel
from tasks.registry.serving import Roles
from tasks.core.settings import Paths

PUBLISHED = (c.RECOMMENDATIONS, c.SIMILAR_ITEMS)


class PublicationCheckError(RuntimeError):
    """A staged publication broke a check; the previous publication stays live."""

    def __init__(self, publication_id: str, check: checks.Check, sample: list[dict], live: str | None):
        self.publication_id, self.check, self.sample, self.live = publication_id, check.name, sample, live
        super().__init__(
            f"publication {publication_id}: check {check.name} ({check.sql_file}) failed, "
            f"{len(sample)} offending row(s) shown, e.g. {sample[0] if sample else {}}; "
            f"nothing published, live publication stays {live}")


@dataclass(frozen=True)
class PublicationResult:
    """What one publish produced: id, row counts, its own health figures and narrowing warnings, timings."""

    publication_id: str
    snapshot: Path
    recommendation_rows: int
    similar_item_rows: int
    rows_by_source: dict
    seconds: dict
    health: dict = field(default_factory=dict)          # tasks.publishing.publication_metrics.measure
    previous_health: dict | None = None                 # the previous live publication's figures
    warnings: list = field(default_factory=list)         # [publication_metrics.NarrowingWarning]


def tag(df: pd.DataFrame, ref: ModelRef, publication_id: str, columns: tuple) -> pd.DataFrame:
    """Add model name/version and publication id; columns in contract order."""
    df = df.copy()
    df[c.MODEL_NAME] = ref.name
    df[c.MODEL_VERSION] = ref.version
    df[c.PUBLICATION_ID] = publication_id
    return df[list(columns)]


def new_publication_id() -> str:
    """Sortable, unique id: UTC time to the millisecond plus 6 random hex digits."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


def load_tables(con, snapshot: Path) -> None:
    """Create `recommendations` and `similar_items` in `con` from a snapshot folder (the warehouse's SQL)."""
    sql.run(con, c.RECOMMENDATIONS, {"path": str(snapshot / store.RECOMMENDATIONS_FILE)})
    sql.run(con, c.SIMILAR_ITEMS, {"path": str(snapshot / store.SIMILAR_ITEMS_FILE)})


def run_checks(staged: Path, publication_id: str, ratings: pd.DataFrame, movies: pd.DataFrame,
               users: pd.DataFrame) -> list[tuple[checks.Check, list[dict]]]:
    """Every publish-time check on a staged snapshot, in an in-memory DuckDB: [(check, offending rows)]."""
    con = duckdb.connect()
    try:
        con.register(c.RATINGS, ratings[[c.USER_ID, c.ITEM_ID]])
        con.register(c.MOVIES, movies[[c.ITEM_ID]])
        con.register(c.USERS, users[[c.USER_ID]])
        load_tables(con, staged)  # the same SQL that builds the warehouse tables: checks see what readers see
        return checks.failures(con, PUBLISHED, checks.AT_PUBLISH, {c.PUBLICATION_ID: publication_id})
    finally:
        con.close()


def publish_tables(paths: Paths, publication_id: str, recommendations: pd.DataFrame,
                   similar_items: pd.DataFrame, record: dict, ratings: pd.DataFrame, movies: pd.DataFrame,
                   users: pd.DataFrame, *, retain: int = 5, figures: dict | None = None) -> dict:
    """Stage, check, make live with a warehouse rebuild, prune; returns seconds per step.

    On a failed check the staged folder is removed and PublicationCheckError names the check.
    `figures` (the publication's health) join the history as it goes live, and leave it if that fails.
    """
    seconds = {}
    t = time.perf_counter()
    staged = store.stage(paths, publication_id, recommendations, similar_items, record)
    maybe_crash("publish-after-stage")
    seconds["write"] = time.perf_counter() - t
    t = time.perf_counter()
    failures = run_checks(staged, publication_id, ratings, movies, users)
    seconds["check"] = time.perf_counter() - t
    if failures:
        shutil.rmtree(staged)
        check, sample = failures[0]
        raise PublicationCheckError(publication_id, check, sample, store.current(paths))
    t = time.perf_counter()
    def go_live():
        if figures is not None:
            metrics_history.write(paths, publication_id, figures)
        try:
            return warehouse.rebuild(paths)
        except BaseException:
            metrics_history.discard(paths, publication_id)
            raise

    store.promote(paths, staged, publication_id, then=go_live, retain=retain)
    seconds["swap"] = time.perf_counter() - t
    return seconds


def publish(paths: Paths, roles: Roles, ratings_df: pd.DataFrame, movies_df: pd.DataFrame,
            users_df: pd.DataFrame, *, n: int = 50, k: int = 20, retain: int = 5, split_id: str | None = None,
            data_hash: str | None = None, device=None, scored: pd.DataFrame | None = None,
            thresholds: narrowing.Thresholds | None = None, refuse_narrowing: bool = False) -> PublicationResult:
    """Score top-n per user and top-k similar items, write a checked snapshot and make it live.

    roles: the served models and their jobs (tasks.registry.serving.roles); the ranking model's run metrics go in the
    record. ratings_df: every rating known now (rated items are excluded); users_df: every user to publish for.
    scored: recommendations already scored elsewhere (sharded scoring: `score_recommendations` rows of
    the first model); the same checks apply to them.
    The publication's own reach and bias are measured and compared with the previous live publication;
    `refuse_narrowing` turns a narrowing past `thresholds` into NarrowingError (nothing changes).
    """
    started = time.perf_counter()
    serving, similar, rating = roles.ranking, roles.similar, roles.rating
    publication_id = new_publication_id()
    t = time.perf_counter()
    users = users_df[c.USER_ID].to_numpy()
    recs = (score_tables.score_recommendations(serving.recommender, ratings_df, users, n, users_df=users_df,
                                               movies_df=movies_df)
            if scored is None else scored)
    seconds = {"score_recommendations": time.perf_counter() - t}
    t = time.perf_counter()
    recs = score_tables.with_predicted_ratings(recs, None if rating is None else rating.recommender, users_df,
                                               movies_df)
    seconds["predict_ratings"] = time.perf_counter() - t
    t = time.perf_counter()
    sims = score_tables.score_similar_items(similar.recommender, k, catalogue=movies_df[c.ITEM_ID].to_numpy(),
                                            device=device, ratings=ratings_df, movies=movies_df)
    seconds["score_similar_items"] = time.perf_counter() - t
    recs = tag(recs, serving.ref, publication_id, c.RECOMMENDATIONS_COLUMNS)
    sims = tag(sims, similar.ref, publication_id, c.SIMILAR_ITEMS_COLUMNS)
    t = time.perf_counter()
    boost = serving.recommender.config.popularity_boost if serving.kind == c.MODEL_KIND_DOT else None
    figures = health.measure(recs, sims, ratings_df, movies_df, users_df, popularity_boost=boost)
    live = store.current(paths)
    previous = metrics_history.read(paths, live)
    warnings = narrowing.check_narrowing(figures, previous, thresholds, refuse=refuse_narrowing, previous_id=live)
    seconds["measure"] = time.perf_counter() - t
    record = {
        c.PUBLICATION_ID: publication_id,
        c.CREATED_AT: datetime.now(timezone.utc).isoformat(),
        c.MODEL_NAME: serving.ref.name, c.MODEL_VERSION: serving.ref.version, c.MODEL_URI: serving.ref.uri,
        c.SIMILARITY_MODEL_NAME: similar.ref.name, c.SIMILARITY_MODEL_VERSION: similar.ref.version,
        c.SIMILARITY_MODEL_URI: similar.ref.uri,
        c.SPLIT_ID: split_id or serving.ref.split_id or None, c.DATA_HASH: data_hash or serving.ref.data_hash or None,
        c.METRICS_JSON: json.dumps(serving.metrics, sort_keys=True),
        c.SNAPSHOT_PATH: str((paths.publications / publication_id).resolve()),
        c.RECOMMENDATION_ROWS: len(recs), c.SIMILAR_ITEM_ROWS: len(sims),
        c.HEALTH_JSON: json.dumps({k: v if math.isfinite(v) else None for k, v in figures.items()}, sort_keys=True),
        c.EVALUATED_MODEL_VERSION: serving.evaluated_ref.version,
        c.SIMILARITY_EVALUATED_MODEL_VERSION: similar.evaluated_ref.version,
        c.SERVED_ALIAS: serving.alias or None,
        c.RATING_MODEL_NAME: rating and rating.ref.name, c.RATING_MODEL_VERSION: rating and rating.ref.version,
        c.RATING_MODEL_URI: rating and rating.ref.uri,
        c.RATING_EVALUATED_MODEL_VERSION: rating and rating.evaluated_ref.version,
    }
    seconds.update(publish_tables(paths, publication_id, recs, sims, record, ratings_df, movies_df,
                                  users_df, retain=retain, figures=figures))
    seconds["total"] = time.perf_counter() - started
    by_source = recs[c.SOURCE].value_counts().to_dict()
    return PublicationResult(publication_id, paths.publications / publication_id, len(recs), len(sims),
                             {str(key): int(v) for key, v in by_source.items()}, seconds, figures, previous,
                             warnings)


def summary(roles: Roles, data_hash: str, result: PublicationResult | None = None,
            kept: str | None = None) -> dict:
    """JSON-friendly account of a publish: the new publication (`result`) or the live one `kept` as it was."""
    refs = [m.ref for m in roles.models]

    def job(m: ServingModel) -> list[str]:
        return [name for name, r in (("ranking", roles.ranking), ("similar items", roles.similar),
                                     ("rating", roles.rating)) if r is not None and r.ref == m.ref]

    out = {"publication_id": kept if result is None else result.publication_id, "skipped": result is None,
           "models": [{"name": m.ref.name, "version": m.ref.version, "uri": m.ref.uri, "run_id": m.ref.run_id,
                       "evaluated_version": m.evaluated_ref.version, "alias": m.alias, "jobs": job(m)}
                      for m in roles.models],
           "no_rating": roles.no_rating, "data_hash": data_hash}
    if result is not None:
        out.update({"split_id": refs[0].split_id, "recommendation_rows": result.recommendation_rows,
                    "similar_item_rows": result.similar_item_rows, "rows_by_source": result.rows_by_source,
                    "seconds": result.seconds, "snapshot": str(result.snapshot), "health": result.health,
                    "previous_health": result.previous_health,
                    "warnings": [w.message for w in result.warnings]})
    return out
