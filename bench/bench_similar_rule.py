"""The similar-items rule on tuning holdouts: item-kNN (summed similarity over the user's items, 20 neighbours per
item) from co-rating similarities G_ij / (G_ii^a * G_jj^(1-a)), where G counts each rater with weight
1 / (their ratings)^α, with a minimum support of m co-raters, against plain cosine co-occurrence (α = 0,
a = 0.5, m = 1), on real ML-100k per-user random holdouts and global temporal cutoffs.

    .venv/bin/python bench/bench_similar_rule.py [--data ../shared/data/ml-100k] [--seeds 10 11]
        [--cutoffs 0.7 0.75] [--out bench/results/similar_rule.json]

tasks/publishing/item_similarity.py uses α = 1, a = 0.7 (ASYMMETRY) and m = 3: the rule with the best worst case over
these four tuning holdouts. Random seeds hold out 20 % of every user's ratings (bench_published_quality.py's
report seeds are 0-2, so seeds below 10 are refused); a cutoff q judges the ratings after the q quantile of
the rating times on the users who rated both before and after it (the report cutoff is 0.8). Prints one JSON
line per holdout, then the rules ranked by their worst ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_published_quality import DEFAULT_DATA, holdout, tuning_inputs_refused  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402

ALPHAS = (0.0, 0.5, 0.75, 1.0)              # rater weight 1 / n_u^α
ASYMMETRIES = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8)
SUPPORTS = (1, 3)


def top_lists(S: np.ndarray, k: int = 20) -> np.ndarray:
    """S [I, I] with each row's top-k kept (itself excluded) and every other cell 0."""
    S = S.copy()
    np.fill_diagonal(S, -np.inf)
    top = np.argpartition(-S, k, axis=1)[:, :k]
    rows = np.arange(len(S))[:, None]
    out = np.zeros_like(S)
    out[rows, top] = np.where(np.isfinite(S[rows, top]), S[rows, top], 0)
    return out


def splits(ratings: pd.DataFrame, seeds, cutoffs):
    """(name, kept, held out) for each random seed and temporal cutoff."""
    for seed in seeds:
        kept, held = holdout(ratings, 0.2, seed)
        yield f"random seed {seed}", kept, held
    for q in cutoffs:
        cut = ratings["t"].quantile(q)
        yield f"temporal {q:g}", ratings[ratings["t"] <= cut], ratings[ratings["t"] > cut]


def one_holdout(ratings: pd.DataFrame, kept: pd.DataFrame, held: pd.DataFrame) -> dict:
    X = np.zeros((ratings["u"].max() + 1, ratings["i"].max() + 1), np.float32)
    X[kept["u"], kept["i"]] = 1
    warm = np.intersect1d(held["u"].unique(), kept["u"].unique())
    relevant = held[held["u"].isin(warm)].groupby("u")["i"].apply(np.asarray)

    def ndcg(S):
        scores = X[warm] @ top_lists(S)
        scores[X[warm] > 0] = -np.inf
        return ev.ndcg_at_k(np.argsort(-scores, axis=1, kind="stable")[:, :10], [relevant[u] for u in warm], 10)

    co = X.T @ X
    per_user = np.maximum(X.sum(1), 1)[:, None]
    out = {}
    for alpha in ALPHAS:
        Xw = X / per_user ** (alpha / 2)
        G = Xw.T @ Xw
        d = np.diag(G).copy()
        for a in ASYMMETRIES:
            S = G / np.maximum(d[:, None] ** a * d[None, :] ** (1 - a), 1e-12)
            for m in SUPPORTS:
                out[f"alpha={alpha:g} a={a:g} m={m}"] = ndcg(np.where(co >= m, S, 0))
    plain = out["alpha=0 a=0.5 m=1"]
    return {"warm_users": len(warm), "plain_cosine_ndcg_at_10": round(plain, 4),
            "vs_plain": {k: round(v / plain, 4) for k, v in out.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="*", default=[10, 11])
    ap.add_argument("--cutoffs", type=float, nargs="*", default=[0.7, 0.75])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    refused = tuning_inputs_refused("bench_similar_rule", a.data, a.seeds)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    if not a.seeds and not a.cutoffs:
        print("bench_similar_rule: no holdout to judge on: give --seeds, --cutoffs or both", file=sys.stderr)
        return 2
    if any(not 0 < q < 1 for q in a.cutoffs):
        print("bench_similar_rule: a cutoff is a quantile of the rating times, strictly between 0 and 1",
              file=sys.stderr)
        return 2
    ratings = pd.read_csv(a.data / "u.data", sep="\t", names=["u", "i", "r", "t"])
    results = {}
    for name, kept, held in splits(ratings, a.seeds, a.cutoffs):
        results[name] = one_holdout(ratings, kept, held)
        print(json.dumps({"holdout": name, **results[name]}), flush=True)
    worst = {rule: min(r["vs_plain"][rule] for r in results.values()) for rule in next(iter(results.values()))["vs_plain"]}
    ranked = sorted(worst, key=lambda rule: -worst[rule])
    for rule in ranked[:10]:
        print(json.dumps({"rule": rule, "worst": worst[rule],
                          "by_holdout": {name: r["vs_plain"][rule] for name, r in results.items()}}))
    if a.out:
        a.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "results": results, "ranked_by_worst": ranked}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
