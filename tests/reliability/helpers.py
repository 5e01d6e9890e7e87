"""Shared pieces of the reliability tests: a good published home, state fingerprints, consistency checks,
and the plain-function pipeline steps that a crash-test child process runs.

Child process use: `python -m tests.reliability.helpers ingest|train|publish HOME [SOURCE] [SEED]`
(with `LENSFLOW_CRASH_AT=<label>` to die at a labelled point; see tasks/core/faults.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from tasks.core import contract as c
from tasks.core.settings import Paths

REPO = Path(__file__).resolve().parents[2]
TINY_DOT = {"n_factors": 8, "epochs": 2}


# --- the plain pipeline steps (no Prefect flow, same functions the flows wire) --------------------

def ingest(paths: Paths, source) -> str:
    """acquire -> hash -> validate -> lake snapshot -> warehouse, as flows.ingest does; returns the hash."""
    from tasks.sources import acquire
    from tasks.stores import lake
    from tasks.sources import movielens
    from tasks.stores import warehouse

    folder = acquire.resolve_source(str(source), paths, progress=False)
    data_hash = movielens.content_hash(folder)
    if not warehouse.up_to_date(paths, data_hash):
        tables = movielens.read_sources(folder)
        lake.write_snapshot(paths, tables, data_hash, make_current=False)
        warehouse.publish_snapshot(paths, data_hash)
    return data_hash


def tiny_model(ratings):
    """A dot-bias model trained in about a second on CPU."""
    from models.recipes import for_kind
    from models.recommender import Recommender

    config = for_kind(c.MODEL_KIND_DOT, **TINY_DOT)
    return Recommender.fit(ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy(),
                           ratings[c.RATING].to_numpy(), config, device="cpu")


def publish(paths: Paths, model=None, version: str = "1"):
    """Publish a tiny model (trained now unless given) on the live lake tables; returns PublicationResult."""
    from tasks.stores import lake
    from tasks.publishing import publish as pub
    from tasks.registry.model_ref import ModelRef, ServingModel
    from tasks.registry.serving import roles

    ratings, movies, users = (lake.read(paths, t) for t in (c.RATINGS, c.MOVIES, c.USERS))
    model = model if model is not None else tiny_model(ratings)
    ref = ModelRef(c.registered_model_name(c.MODEL_KIND_DOT), version,
                   f"models:/{c.registered_model_name(c.MODEL_KIND_DOT)}/{version}", "",
                   "split-reliability", lake.current_hash(paths))
    return pub.publish(paths, roles([ServingModel(model, ref, {"ndcg_at_10": 0.0})]), ratings, movies, users,
                       n=10, k=10, device="cpu")


def train(paths: Paths, seed: int = 42):
    """Split (stored), train a tiny dot-bias model, log/register/promote it in MLflow; returns Recorded."""
    from tasks.stores import lake
    from tasks.learning import split as splits
    from tasks.stores import split_store
    from tasks.learning import training
    from tasks.learning import kind_config
    from tasks.registry import trainings

    snap = lake.current(paths)
    ratings = lake.read(paths, c.RATINGS)
    split = splits.get_or_create(paths, ratings, split_store.SplitSpec(seed=seed), snap.data_hash)
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, TINY_DOT)
    if trainings.find_trained(paths, cfg, split.split_id, split.data_hash) is not None:
        return None
    result = training.train_and_evaluate(split, cfg, lake.read(paths, c.USERS), lake.read(paths, c.MOVIES),
                                         device="cpu")
    split_store.set_current(paths, split.split_id)
    return trainings.record(paths, result, split, None, "ndcg_at_10")


def make_source(out: Path, seed: int, users: int = 60, items: int = 80, ratings: int = 1500) -> Path:
    """A small synthetic MovieLens folder (deterministic per seed)."""
    from tasks.sources.synthetic import generate

    return generate(out, n_users=users, n_items=items, n_ratings=ratings, seed=seed)


def build_published_home(root: Path, source: Path) -> Paths:
    """A data home with source ingested and one publication live."""
    paths = Paths(root)
    ingest(paths, source)
    publish(paths)
    return paths


def copy_home(paths: Paths, root: Path) -> Paths:
    """A copy of a data home (each destructive test gets its own)."""
    shutil.copytree(paths.home, root, symlinks=True)
    return Paths(root)


# --- what "unchanged" and "consistent" mean -------------------------------------------------------

def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (CURRENT pointers included)."""
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def served(paths: Paths) -> dict:
    """What a reader of the live warehouse sees: per-table publication ids/counts and the publications rows."""
    from tasks.core import sql
    from tasks.stores import warehouse

    con = warehouse.connect_readonly(paths)
    try:
        live = sql.rows(con, "query_live_publication")
        cur = sql.run(con, "query_publications")
        names = [d[0] for d in cur.description]
        history = [dict(zip(names, row)) for row in cur.fetchall()]
        build = sql.rows(con, "query_warehouse_build")
        # every published row of every served user, in the table's stable order (row-for-row comparison)
        recs = [sql.rows(con, "query_top10_for_user", {c.USER_ID: int(u)})
                for u in sorted({row[0] for row in sql.rows(con, "query_published_users")})]
    finally:
        con.close()
    return {"live": live,
            "history": [(h[c.PUBLICATION_ID], h[c.RECOMMENDATION_ROWS], h[c.SIMILAR_ITEM_ROWS]) for h in history],
            "recs_sha": hashlib.sha256(repr(recs).encode()).hexdigest(), "n_users": len(recs), "build": build}


def state(paths: Paths) -> dict:
    """Everything a bad input must leave alone: lake and publication files, warehouse bytes and rows."""
    return {
        "lake": tree_digest(paths.lake),
        "publications": tree_digest(paths.publications),
        "warehouse_sha256": sha256(paths.warehouse) if paths.warehouse.is_file() else None,
        "served": served(paths) if paths.warehouse.is_file() else None,
    }


def check_consistent(paths: Paths) -> dict:
    """Assert the live warehouse opens and serves one complete, listed publication; returns a summary.

    Recommendations and similar items name one publication id, it is a `publications` row whose row
    counts match, its snapshot folder is complete on disk, and publications/CURRENT names a complete
    snapshot. Whether CURRENT equals the served id is returned (a crash between the pointer flip and
    the warehouse swap leaves them apart until the next run repairs it), not asserted.
    """
    import pyarrow.parquet as pq

    from tasks.stores import lake
    from tasks.stores import publications as store

    seen = served(paths)
    ids = {row[1] for row in seen["live"]}
    assert len(ids) == 1 and len(seen["live"]) == 2, f"mixed or missing publication: {seen['live']}"
    (served_id,) = ids
    assert all(row[3] for row in seen["live"]), f"publication {served_id} not listed in publications"
    counts = {row[0]: row[2] for row in seen["live"]}
    history = {row[0]: row[1:] for row in seen["history"]}
    stale = {row[4] for row in seen["live"]}
    assert len(stale) == 1, seen["live"]
    recorded = history[served_id]
    if stale == {True}:  # ratings ingested since the publish: rated items were filtered out, only fewer rows
        assert counts[c.RECOMMENDATIONS] <= recorded[0] and counts[c.SIMILAR_ITEMS] == recorded[1], (history, counts)
    else:
        assert recorded == (counts[c.RECOMMENDATIONS], counts[c.SIMILAR_ITEMS]), (history, counts)
    folder = paths.publications / served_id
    assert pq.read_metadata(folder / store.RECOMMENDATIONS_FILE).num_rows == recorded[0]
    assert pq.read_metadata(folder / store.SIMILAR_ITEMS_FILE).num_rows == counts[c.SIMILAR_ITEMS]
    pointer = store.current(paths)
    assert pointer is not None and (paths.publications / pointer / store.RECORD_FILE).is_file(), pointer
    record = json.loads((paths.publications / pointer / store.RECORD_FILE).read_text())
    assert pq.read_metadata(paths.publications / pointer / store.RECOMMENDATIONS_FILE).num_rows == \
        record[c.RECOMMENDATION_ROWS]
    snap = lake.current(paths)
    assert snap is not None and all(snap.table_path(t).is_file() for t in c.SOURCE_TABLES)
    return {"served": served_id, "current": pointer, "agree": pointer == served_id, "stale": stale == {True},
            "lake": snap.data_hash, "warehouse_data_hash": seen["build"][0][2] if seen["build"] else None}


def warehouse_up_to_date(paths: Paths, data_hash: str) -> bool:
    """What the ingest's no-op check answers (tasks.stores.warehouse.up_to_date)."""
    from tasks.stores import warehouse

    return warehouse.up_to_date(paths, data_hash)


def leftovers(paths: Paths) -> list[str]:
    """Temporary files and folders a killed process left behind (harmless, reported)."""
    found = []
    for root in (paths.lake, paths.publications, paths.splits, paths.warehouse.parent):
        if root.is_dir():
            found += [str(p.relative_to(paths.home)) for p in root.iterdir()
                      if p.name.startswith(".") or ".tmp-" in p.name]
    return sorted(found)


def save_results(name: str, results) -> None:
    """Write a test module's figures to $LENSFLOW_RELIABILITY_OUT/<name>.json when that folder is set."""
    import os

    folder = os.environ.get("LENSFLOW_RELIABILITY_OUT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))


# --- child process entry point --------------------------------------------------------------------

def main(argv: list[str]) -> int:
    step, home = argv[0], Paths(Path(argv[1]))
    if step == "ingest":
        print(ingest(home, argv[2]))
    elif step == "publish":
        print(publish(home).publication_id)
    elif step == "train":
        print(train(home, int(argv[2]) if len(argv) > 2 else 42))
    elif step == "mlflow-store":  # open (create and migrate) the MLflow store; the parent kills us meanwhile
        from tasks.registry import mlflow_store

        print("ready", flush=True)
        mlflow_store.client(home)
        print("created", flush=True)
    else:
        raise SystemExit(f"unknown step {step!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
