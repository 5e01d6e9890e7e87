"""Publish time on MovieLens 100k: scoring both tables, writing, checking and swapping the warehouse.

python bench/bench_publish.py [--data DIR] [--home DIR] [--n 50] [--k 20]
--data defaults to ../shared/data/ml-100k beside the checkout, else a synthetic set of the same size.
Trains a dot-bias and an embedding-NN model (defaults from models.config), then publishes twice:
recommendations from dot-bias, and recommendations from the NN (similar items from dot-bias both
times). Prints one JSON line per publish with seconds per step. --home keeps the data home (for
bench_query.py); without it a temporary one is used and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REAL = REPO.parent / "shared" / "data" / "ml-100k"


def build(home: Path, data: Path | None = None, n: int = 50, k: int = 20, epochs: int | None = None) -> list[dict]:
    """Ingest, train both models, publish with each as the recommendations model; returns the timings."""
    from models.recipes import for_kind
    from models.recommender import Recommender
    from tasks.core import contract as c
    from tasks.stores import lake
    from tasks.sources import movielens
    from tasks.sources import synthetic
    from tasks.publishing import publish as pub
    from tasks.registry.model_ref import ModelRef, ServingModel
    from tasks.registry.serving import roles
    from tasks.core.settings import Paths
    from tasks.learning.split import unix_seconds

    paths = Paths(home)
    if data is None:
        data = REAL if (REAL / "u.data").is_file() else synthetic.generate(
            home / "synthetic-ml100k", n_users=943, n_items=1682, n_ratings=100_000, seed=0)
    tables = movielens.read_sources(data)
    data_hash = movielens.content_hash(data)
    lake.write_snapshot(paths, tables, data_hash)
    r = tables.ratings
    results = []
    models = {}
    for kind in (c.MODEL_KIND_DOT, c.MODEL_KIND_NN):
        config = for_kind(kind, **({"epochs": epochs} if epochs else {}))
        t0 = time.perf_counter()
        models[kind] = Recommender.fit(r[c.USER_ID].to_numpy(), r[c.ITEM_ID].to_numpy(),
                                       r[c.RATING].to_numpy(), config, times=unix_seconds(r[c.RATED_AT]))
        results.append({"bench": "train", "kind": kind, "seconds": round(time.perf_counter() - t0, 3)})
    served = {kind: ServingModel(models[kind], ModelRef(c.registered_model_name(kind), "1",
                                                         f"models:/{c.registered_model_name(kind)}/1"))
              for kind in models}
    for first in (c.MODEL_KIND_DOT, c.MODEL_KIND_NN):   # the lists from each kind; predicted ratings from the NN
        res = pub.publish(paths, roles(list(served.values()), prefer=first), tables.ratings, tables.movies, tables.users, n=n, k=k,
                          data_hash=data_hash)
        s = res.seconds
        results.append({
            "bench": "publish", "data": "ml-100k" if data == REAL else str(data), "recommendations_model": first,
            "users": int(len(tables.users)), "items": int(len(tables.movies)), "n": n, "k": k,
            "recommendation_rows": res.recommendation_rows, "similar_item_rows": res.similar_item_rows,
            "scoring_both_tables_s": round(s["score_recommendations"] + s["score_similar_items"], 3),
            **{f"{key}_s": round(v, 3) for key, v in s.items()},
        })
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--home", type=Path, default=None, help="keep the data home here (else a temp dir)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-publish-") as tmp:
        home = (args.home or Path(tmp) / "home").resolve()
        for row in build(home, args.data, args.n, args.k, args.epochs):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
