"""What closes the gap to EASE? In-process fits on real ML-100k per-user random holdouts (the published-quality
protocol's warm part), each scored as NDCG@10 of the top-10 over unrated items, divided by EASE's (λ = 500).

    .venv/bin/python bench/bench_ease_gap.py [--data ../shared/data/ml-100k] [--seeds 10 11] [--holdout 0.2]
        [--out bench/results/ease_gap.json]

A tuning tool: run it on tuning seeds (10+), never on the report seeds 0-2 of bench_published_quality.py.
Candidates: EASE's own λ; the dot-bias softmax default and one-change variants of it; the mean of three training
seeds; blends of per-user standardised scores, dot + a·EASE; kernel ridge regression in user space with a linear
and a ReLU neural-tangent kernel (the ∞-AE idea); and a time-local popularity term added to EASE (each item's
ratings near the user's own rating days). Prints one JSON line per seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_published_quality import DEFAULT_DATA, holdout, tuning_inputs_refused  # noqa: E402
from ease import fit_ease  # noqa: E402
from models.recipes import for_kind  # noqa: E402
from models.recommender import Recommender  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402

DOT_VARIANTS = {  # one change each from the ranking recipe, without its item-item blend
    "dot": {}, "dot n_factors=512": {"n_factors": 512}, "dot l2=0.015": {"l2": 0.015}, "dot l2=0.05": {"l2": 0.05},
    "dot epochs=10": {"epochs": 10}, "dot popularity_boost=0": {"popularity_boost": 0.0},
    "dot popularity_boost=0.5": {"popularity_boost": 0.5}, "dot popularity_boost=1": {"popularity_boost": 1.0},
    "dot seed=43": {"seed": 43}, "dot seed=44": {"seed": 44},
}


def top10(S: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Top-10 columns per user row of S [U, I], the user's kept items and column 0 (no item) excluded."""
    S = np.where(X > 0, -np.inf, S)
    S[:, 0] = -np.inf
    return np.argsort(-S, axis=1, kind="stable")[:, :10]


UNSCORED = -1e9   # a model's score for an item it never saw (no kept rating): never recommended


def standardised(S: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Each user's scores over their unrated, scored items as z-scores (so differently scaled models add up)."""
    unscored = S <= UNSCORED
    m = np.where((X > 0) | unscored, np.nan, S)
    m[:, 0] = np.nan
    with warnings.catch_warnings():   # row 0 (no user) has nothing to standardise
        warnings.simplefilter("ignore", RuntimeWarning)
        z = (S - np.nanmean(m, 1, keepdims=True)) / (np.nanstd(m, 1, keepdims=True) + 1e-9)
    return np.where(unscored, UNSCORED, z)


def ntk(G: np.ndarray) -> np.ndarray:
    """ReLU neural-tangent kernel of a one-hidden-layer net from the Gram matrix G [U, U] of the users' rows."""
    n = np.sqrt(np.maximum(np.diag(G), 1e-12))
    u = np.clip(G / np.outer(n, n), -1, 1)
    a = np.arccos(u)
    return G * (np.pi - a) / np.pi + np.outer(n, n) * (u * (np.pi - a) + np.sqrt(1 - u * u)) / np.pi


def one_seed(ratings: pd.DataFrame, seed: int, share: float) -> dict:
    kept, held = holdout(ratings, share, seed)
    n_users, n_items = int(ratings["u"].max()), int(ratings["i"].max())
    X = np.zeros((n_users + 1, n_items + 1), np.float32)
    X[kept["u"], kept["i"]] = 1
    relevant = held.groupby("u")["i"].apply(np.asarray)
    users = np.array(sorted(relevant.index))

    def ndcg(S):
        return ev.ndcg_at_k(top10(S, X)[users], [relevant[u] for u in users], 10)

    def ease(lam):
        E = np.zeros_like(X)
        E[1:, 1:] = X[1:, 1:] @ fit_ease(X[1:, 1:], lam)
        return E

    E = ease(500.0)
    base = ndcg(E)
    out = {f"EASE λ={lam:g}": ndcg(ease(lam)) / base for lam in (100, 200, 300, 800)}
    dots, seconds = {}, {}
    for name, change in DOT_VARIANTS.items():
        t0 = time.perf_counter()
        cfg = for_kind("dot_bias", **{"item_item_weight": 0, **change})
        rec = Recommender.fit(kept["u"].to_numpy(), kept["i"].to_numpy(), kept["r"].to_numpy(), cfg)
        S = np.full_like(X, UNSCORED)
        S[np.ix_(rec.user_ids, rec.item_ids)] = rec.scores(rec.user_ids, rec.item_ids)
        dots[name], seconds[name] = S, round(time.perf_counter() - t0, 1)
        out[name] = ndcg(S) / base
    zE, zd = standardised(E, X), standardised(dots["dot"], X)
    seeds3 = sum(standardised(dots[n], X) for n in ("dot", "dot seed=43", "dot seed=44")) / 3
    out["mean of dot seeds 42-44"] = ndcg(seeds3) / base
    for a in (0.3, 0.5, 1.0):
        out[f"dot + {a:g}·EASE"] = ndcg(zd + a * zE) / base
        out[f"mean of 3 dot seeds + {a:g}·EASE"] = ndcg(seeds3 + a * zE) / base
    Xu = X[1:, 1:].astype(np.float64)
    G = Xu @ Xu.T
    for name, K in (("linear", G), ("ReLU NTK", ntk(G))):
        for lam in (300.0, 1000.0):
            P = np.zeros_like(X)
            P[1:, 1:] = K @ np.linalg.solve(K + lam * np.eye(len(K)), Xu)
            out[f"user-space kernel ridge, {name}, λ={lam:g}"] = ndcg(P) / base
    day = ((kept["t"] - ratings["t"].min()) // 86400).to_numpy()
    C = np.zeros((n_items + 1, day.max() + 1))
    np.add.at(C, (kept["i"].to_numpy(), day), 1)
    H = np.zeros((n_users + 1, day.max() + 1))
    np.add.at(H, (kept["u"].to_numpy(), day), 1)
    d = np.arange(day.max() + 1)
    local = (H / np.maximum(H.sum(1, keepdims=True), 1)) @ np.exp(-np.abs(d[:, None] - d[None, :]) / 30.0) @ C.T
    for a in (0.1, 0.3):
        out[f"EASE + {a:g}·time-local popularity (30 days)"] = ndcg(zE + a * standardised(np.log1p(local), X)) / base
    return {"seed": seed, "ease_ndcg_at_10": base, "vs_ease": {k: round(v, 4) for k, v in out.items()},
            "dot_fit_seconds": seconds, "users_scored": len(users)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11])
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    refused = tuning_inputs_refused("bench_ease_gap", a.data, a.seeds)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    ratings = pd.read_csv(a.data / "u.data", sep="\t", names=["u", "i", "r", "t"])
    results = []
    for seed in a.seeds:
        r = one_seed(ratings, seed, a.holdout)
        print(json.dumps(r), flush=True)
        results.append(r)
    if a.out:
        a.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "machine": f"{platform.machine()} {platform.processor()}, torch {torch.__version__}",
                                     "holdout": a.holdout, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
