"""Quality of what is published, judged as a consumer would: hold out real ML-100k ratings, run `lensflow run`
on the rest, score the published tables against what was held out, and fit EASE and plain popularity on the
same remaining ratings in the same run.

    .venv/bin/python bench/bench_published_quality.py [--data ../shared/data/ml-100k] [--seeds 0 1 2]
        [--protocol random|temporal] [--holdout 0.2] [--cold-users 0.2] [--compare-champion]
        [--out bench/results/published_quality.json]

Protocols: `random` holds out every rating of a seeded `--cold-users` share of the users (sign-ups without
ratings: judged on their `side_info` lists against plain most-rated) and `--holdout` of every other user's
ratings; `temporal` is the daily run at time T (the 80 % quantile of the rating times) judged on what is
rated after T (users with nothing before T are the cold ones). Per seed the remaining ratings go to a
MovieLens folder outside the repository (the other files copied as they are) and
`python -m flows run --source DIR --home HOME` runs the real pipeline. Scored with tasks.learning.evaluate over the
users with held-out ratings (NDCG@10, recall@10; coverage = distinct recommended items / items in u.item):
the published `recommendations` top-10 for warm users (against EASE and popularity) and for cold users
(against most-rated), and item-kNN built from the published `similar_items` (summed similarity over the
user's items) against the same built from plain cosine co-occurrence with as many neighbours per item.
`--compare-champion` also publishes the evaluated champion (the split fit) and scores it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k"
K = 10

from ease import fit_ease, recommend_ease  # noqa: E402
from tasks.core import contract as c  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402
from tasks.learning.popularity import MostRated  # noqa: E402


def tuning_inputs_refused(script: str, data: Path, seeds) -> str | None:
    """Why a tuning script cannot run on (data, seeds), in one line, or None: the real u.data is needed,
    and seeds below 10 are this script's report seeds (settings are chosen on other holdouts)."""
    if not (data / "u.data").is_file():
        return f"{script}: {data / 'u.data'} not found (the real MovieLens 100k is needed)"
    if any(s < 10 for s in seeds):
        return f"{script}: seeds below 10 are the report seeds of bench_published_quality.py; tune on 10+"
    return None


def holdout(ratings: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held out): a random `share` of each user's ratings held out (at least one kept)."""
    rng = np.random.default_rng(seed)
    r = ratings.assign(_u=rng.random(len(ratings)))
    r["_rank"] = r.groupby("u")["_u"].rank(method="first")
    r["_n"] = r.groupby("u")["u"].transform("size")
    out = r["_rank"] <= np.floor(r["_n"] * share)
    return ratings[~out.to_numpy()], ratings[out.to_numpy()]


def scores(recs: np.ndarray, users: np.ndarray, held: pd.DataFrame, n_catalogue: int) -> dict:
    groups = held.groupby("u")["i"].apply(np.asarray)
    relevant = [groups.get(u, np.empty(0, np.int64)) for u in users]
    return {"ndcg_at_10": ev.ndcg_at_k(recs, relevant, K), "recall_at_10": ev.recall_at_k(recs, relevant, K),
            "coverage_at_10": ev.coverage(recs, n_catalogue)}


def published_top(home: Path, users: np.ndarray) -> np.ndarray:
    """The live `recommendations` top-10 per user, [n_users, 10], -1 where a user has fewer rows."""
    from tasks.stores import warehouse
    from tasks.core.settings import Paths

    con = warehouse.connect_readonly(Paths(home))
    try:
        rows = con.sql(f"select {c.USER_ID}, {c.RANK}, {c.ITEM_ID}, {c.SOURCE} from {c.RECOMMENDATIONS} "
                       f"where {c.RANK} <= {K}").df()
    finally:
        con.close()
    out = np.full((len(users), K), -1, dtype=np.int64)
    pos = pd.Series(np.arange(len(users)), index=users)
    rows = rows[rows[c.USER_ID].isin(users)]
    out[pos[rows[c.USER_ID]].to_numpy(), rows[c.RANK].to_numpy() - 1] = rows[c.ITEM_ID].to_numpy()
    return out, rows[c.SOURCE].value_counts().to_dict()


def cli(args: list[str], home: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LENSFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows", *args, "--home", str(home)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"lensflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


def split_protocol(ratings: pd.DataFrame, protocol: str, seed: int, share: float,
                   cold_share: float) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(kept, held out, cold users): what the pipeline sees, what it is judged on, users with nothing kept.

    random: all ratings of `cold_share` of the users (seeded) held out, and `share` of every other user's.
    temporal: the daily run at time T, T the (1 - share) quantile of the rating times; judged on what is rated
    after T (users with no rating before T are the cold ones).
    """
    if protocol == "temporal":
        cutoff = ratings["t"].quantile(1 - share)
        kept, held = ratings[ratings["t"] <= cutoff], ratings[ratings["t"] > cutoff]
    else:
        rng = np.random.default_rng(1000 + seed)
        every = np.sort(ratings["u"].unique())
        cold = rng.choice(every, size=int(round(len(every) * cold_share)), replace=False)
        warm = ratings[~ratings["u"].isin(cold)]
        kept, held_warm = holdout(warm, share, seed)
        held = pd.concat([held_warm, ratings[ratings["u"].isin(cold)]])
    cold_users = np.sort(np.setdiff1d(held["u"].unique(), kept["u"].unique()))
    return kept, held, cold_users


def published_neighbours(home: Path) -> pd.DataFrame:
    from tasks.stores import warehouse
    from tasks.core.settings import Paths

    con = warehouse.connect_readonly(Paths(home))
    try:
        return con.sql(f"select {c.ITEM_ID}, {c.SIMILAR_ITEM_ID}, {c.SIMILARITY}, {c.SOURCE} "
                       f"from {c.SIMILAR_ITEMS}").df()
    finally:
        con.close()


def knn_top(X: np.ndarray, S: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Item-kNN: for each user the K unrated items with the highest summed similarity from their items' lists."""
    scores = X[users] @ S                                   # [u, I]: sum over the user's items j of S[j, i]
    scores[X[users] > 0] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :K] + 1


def cosine_lists(X: np.ndarray, k: int) -> np.ndarray:
    """Plain cosine co-occurrence of the binary matrix, each item's top-k kept (the baseline)."""
    co = X.T @ X
    n = np.diag(co).copy()
    cos = co / np.sqrt(np.maximum(np.outer(n, n), 1e-12))
    np.fill_diagonal(cos, -np.inf)
    top = np.argpartition(-cos, k, axis=1)[:, :k]
    S = np.zeros_like(cos)
    rows = np.arange(len(cos))[:, None]
    S[rows, top] = np.where(np.isfinite(cos[rows, top]), cos[rows, top], 0)
    return S


def published_ratings(home: Path, kept: pd.DataFrame, held: pd.DataFrame, cold: np.ndarray) -> dict:
    """The rating model as consumers get it: its serving fit (read from the run's registry) on every held-out
    rating, warm and cold users apart, beside the bias baseline fitted on the same kept ratings; and the
    published `predicted_rating` itself on the held-out pairs that made a user's published list."""
    from tasks.core.settings import Paths
    from tasks.learning.baselines import BiasBaseline
    from tasks.registry import versions as registry

    frame = lambda df: df.rename(columns={"u": c.USER_ID, "i": c.ITEM_ID, "r": c.RATING})   # noqa: E731
    baseline = BiasBaseline(frame(kept))
    out: dict = {}
    try:
        model, ref = registry.load_for_scoring(Paths(home), c.MODEL_KIND_NN, c.ALIAS_SERVING, device="cpu")
    except LookupError:
        return {"rating_model": None}
    out["rating_model"] = f"{ref.name} v{ref.version}"
    for name, part in (("warm", held[~held["u"].isin(cold)]), ("cold", held[held["u"].isin(cold)])):
        if len(part):
            out[f"{name}_model"] = ev.rating_metrics(model, frame(part))
            out[f"{name}_bias_baseline"] = ev.rating_metrics(baseline, frame(part))
            out[f"{name}_ratings"] = len(part)
    con = duckdb.connect(str(home / "warehouse" / "lensflow.duckdb"), read_only=True)
    try:
        recs = con.sql(f"select {c.USER_ID}, {c.ITEM_ID}, {c.PREDICTED_RATING} from {c.RECOMMENDATIONS}").df()
    finally:
        con.close()
    out["rows_with_predicted_rating"] = float(recs[c.PREDICTED_RATING].notna().mean())
    listed = recs.merge(frame(held), on=[c.USER_ID, c.ITEM_ID])
    if len(listed):
        out["listed_pairs"] = len(listed)
        out["listed_rmse"] = ev.rmse(listed[c.RATING], listed[c.PREDICTED_RATING])
    return out


def one_seed(data: Path, seed: int, share: float, protocol: str = "random", cold_share: float = 0.1,
             compare_champion: bool = False) -> dict:
    ratings = pd.read_csv(data / "u.data", sep="\t", names=["u", "i", "r", "t"])
    n_catalogue = sum(1 for _ in open(data / "u.item", encoding="latin-1"))
    kept, held, cold = split_protocol(ratings, protocol, seed, share, cold_share)
    users = np.sort(np.setdiff1d(held["u"].unique(), cold))         # warm users with something to find
    cold_items = int(len(np.setdiff1d(np.arange(1, n_catalogue + 1), kept["i"].unique())))
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-quality-") as tmp:
        src, home = Path(tmp) / "ml", Path(tmp) / "home"
        src.mkdir()
        for name in ("u.item", "u.user", "u.genre", "u.occupation"):
            shutil.copyfile(data / name, src / name)
        kept.to_csv(src / "u.data", sep="\t", header=False, index=False)
        run_s = cli(["run", "--source", str(src)], home)
        served, served_sources = published_top(home, users)
        served_cold, cold_sources = published_top(home, cold)
        neighbours = published_neighbours(home)
        rated = published_ratings(home, kept, held, cold)
        champion, pub_s = None, None
        if compare_champion:
            pub_s = cli(["publish", "--version", "champion"], home)
            champion, _ = published_top(home, users)
        from tasks.registry import versions as registry
        from tasks.registry import promote
        from tasks.core.settings import Paths
        decisions = {}
        for kind in c.MODEL_KINDS:
            try:
                ref = registry.resolve(Paths(home), kind, c.ALIAS_CANDIDATE)
                tags = registry.version_tags(Paths(home), kind, ref.version)
                decisions[kind] = f"{tags.get(registry.TAG_DECISION)}: {tags.get(promote.TAG_REASON)}"
            except LookupError:
                decisions[kind] = "none"
    # EASE and popularity on the same kept ratings (every rating counts as an interaction)
    t = time.perf_counter()
    item_ids = np.arange(1, n_catalogue + 1)
    X = np.zeros((ratings["u"].max() + 1, n_catalogue), dtype=np.float32)
    X[kept["u"].to_numpy(), kept["i"].to_numpy() - 1] = 1.0
    ease_top = item_ids[recommend_ease(X, fit_ease(X), K)][users]
    ease_s = time.perf_counter() - t
    frame = kept.rename(columns={"u": c.USER_ID, "i": c.ITEM_ID, "r": c.RATING})
    pop_top, _ = MostRated(frame).recommend(users, K, exclude=(frame[c.USER_ID], frame[c.ITEM_ID]))
    pop_cold, _ = MostRated(frame).recommend(cold, K)
    # item-kNN from the published similar_items against the same from plain cosine co-occurrence (top-k each)
    S = np.zeros((n_catalogue, n_catalogue), dtype=np.float32)
    S[neighbours[c.ITEM_ID].to_numpy() - 1, neighbours[c.SIMILAR_ITEM_ID].to_numpy() - 1] = \
        neighbours[c.SIMILARITY].to_numpy()
    k_lists = int(neighbours.groupby(c.ITEM_ID).size().max())
    out = {"protocol": protocol, "seed": seed, "kept": len(kept), "held_out": len(held),
           "users_scored": len(users), "cold_users": len(cold), "cold_items": cold_items,
           "published_serving": scores(served, users, held, n_catalogue),
           "ease": scores(ease_top, users, held, n_catalogue),
           "popularity": scores(pop_top, users, held, n_catalogue),
           "cold_published": scores(served_cold, cold, held, n_catalogue) if len(cold) else None,
           "cold_popularity": scores(pop_cold, cold, held, n_catalogue) if len(cold) else None,
           "knn_published_similar_items": scores(knn_top(X, S, users), users, held, n_catalogue),
           "knn_plain_cosine": scores(knn_top(X, cosine_lists(X, k_lists), users), users, held, n_catalogue),
           "similar_items_rows_by_source": {str(k): int(v) for k, v in neighbours[c.SOURCE].value_counts().items()},
           "items_with_neighbours": int(neighbours[c.ITEM_ID].nunique()),
           "served_rows_by_source": {str(k): int(v) for k, v in served_sources.items()},
           "cold_rows_by_source": {str(k): int(v) for k, v in cold_sources.items()},
           "decisions": decisions, "predicted_ratings": rated,
           "seconds": {"lensflow_run": run_s, "publish_champion": pub_s, "ease": ease_s}}
    if champion is not None:
        out["published_champion"] = scores(champion, users, held, n_catalogue)
    e = out["ease"]["ndcg_at_10"]
    out["ndcg_vs_ease"] = {name: out[name]["ndcg_at_10"] / e for name in
                           ("published_serving", "published_champion", "popularity") if name in out}
    if len(cold):
        out["cold_vs_popularity"] = out["cold_published"]["ndcg_at_10"] / out["cold_popularity"]["ndcg_at_10"]
    out["knn_vs_plain_cosine"] = (out["knn_published_similar_items"]["ndcg_at_10"]
                                  / out["knn_plain_cosine"]["ndcg_at_10"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--protocol", choices=("random", "temporal"), default="random")
    ap.add_argument("--cold-users", type=float, default=0.1, help="random: share of users held out entirely")
    ap.add_argument("--compare-champion", action="store_true", help="also publish the split fit and score it")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "published_quality.json")
    a = ap.parse_args()
    if not (a.data / "u.data").is_file():
        print(f"no MovieLens 100k at {a.data}: pass --data", file=sys.stderr)
        return 2
    results = []
    for seed in a.seeds:
        r = one_seed(a.data, seed, a.holdout, a.protocol, a.cold_users, a.compare_champion)
        results.append(r)
        print(json.dumps({k: r.get(k) for k in ("protocol", "seed", "ndcg_vs_ease", "cold_vs_popularity",
                                                 "knn_vs_plain_cosine", "published_serving", "ease",
                                                 "served_rows_by_source", "cold_rows_by_source",
                                                 "similar_items_rows_by_source", "predicted_ratings",
                                                 "decisions", "seconds")}), flush=True)
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "holdout": a.holdout, "protocol": a.protocol, "cold_users": a.cold_users}
    previous = json.loads(a.out.read_text()) if a.out.is_file() else {}
    runs = [r for r in previous.get("runs", []) if r["meta"].get("protocol") != a.protocol or
            not set(x["seed"] for x in r["results"]) & set(a.seeds)]
    a.out.write_text(json.dumps({"runs": runs + [{"meta": meta, "results": results}]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
