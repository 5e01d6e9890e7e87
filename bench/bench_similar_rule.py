"""The similar-items rule on other holdouts: item-kNN (summed similarity over the user's items, 20 neighbours per
item) from co-rating cosines with each rater weighted 1 / (their ratings)^α and a minimum support of m co-raters,
against plain cosine co-occurrence (α = 0, m = 1), on real ML-100k global temporal cutoffs.

    .venv/bin/python bench/bench_similar_rule.py [--data ../shared/data/ml-100k] [--cutoffs 0.7 0.75 0.8]

tasks/item_similarity.py uses α = 1 and m = 3 (chosen on random holdout seeds 10-11). The published-quality
benchmark's temporal protocol cuts at the 0.8 quantile of the rating times; 0.7 and 0.75 are other days T.
Scored on the users who rated both before and after T. Prints one JSON line per cutoff.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_published_quality import DEFAULT_DATA  # noqa: E402
from tasks import evaluate as ev  # noqa: E402


def top_lists(S: np.ndarray, k: int = 20) -> np.ndarray:
    """S [I, I] with each row's top-k kept (itself excluded) and every other cell 0."""
    S = S.copy()
    np.fill_diagonal(S, -np.inf)
    top = np.argpartition(-S, k, axis=1)[:, :k]
    rows = np.arange(len(S))[:, None]
    out = np.zeros_like(S)
    out[rows, top] = np.where(np.isfinite(S[rows, top]), S[rows, top], 0)
    return out


def one_cutoff(ratings: pd.DataFrame, q: float) -> dict:
    cut = ratings["t"].quantile(q)
    kept, held = ratings[ratings["t"] <= cut], ratings[ratings["t"] > cut]
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
    for alpha in (0.0, 0.5, 1.0):
        Xw = X / per_user ** (alpha / 2)
        G = Xw.T @ Xw
        n = np.diag(G).copy()
        cos = G / np.sqrt(np.maximum(np.outer(n, n), 1e-12))
        for m in (1, 3, 5):
            out[f"alpha={alpha:g} m={m}"] = ndcg(np.where(co >= m, cos, 0))
    plain = out["alpha=0 m=1"]
    return {"cutoff_quantile": q, "warm_users": len(warm), "plain_cosine_ndcg_at_10": round(plain, 4),
            "vs_plain": {k: round(v / plain, 3) for k, v in out.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cutoffs", type=float, nargs="+", default=[0.7, 0.75, 0.8])
    a = ap.parse_args()
    if not (a.data / "u.data").is_file():
        print(f"bench_similar_rule: {a.data / 'u.data'} not found (the real MovieLens 100k is needed)", file=sys.stderr)
        return 2
    ratings = pd.read_csv(a.data / "u.data", sep="\t", names=["u", "i", "r", "t"])
    for q in a.cutoffs:
        print(json.dumps(one_cutoff(ratings, q)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
