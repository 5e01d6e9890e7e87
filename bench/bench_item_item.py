"""Choosing the dot model's item-item term (models/item_item.py): in-process fits on real ML-100k holdouts of
the published-quality protocol (20 % of the users held out entirely, then 20 % of every other user's ratings),
and on global temporal cutoffs (kept: the ratings up to a quantile of the rating times; judged: what the users
who rated before it rate after it), each ranking scored as NDCG@10 of the warm users' top-10 over unrated items,
divided by EASE's (λ = 500).

    .venv/bin/python bench/bench_item_item.py [--data ../shared/data/ml-100k] [--seeds 10 11 12 13 14]
        [--cutoffs 0.70 0.75] [--out bench/results/item_item.json]

A tuning tool: seeds 10+ and cutoffs other than 0.80 only (seeds 0-2 and the 0.80 cutoff are
bench_published_quality.py's report holdouts). Per holdout the dot-bias
softmax default is fitted once without the term; then each (weight, window) of the grid ranks with
Recommender.recommend, that model plus the term fitted on the same kept ratings. Prints one JSON line per holdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_published_quality import DEFAULT_DATA, holdout, tuning_inputs_refused  # noqa: E402
from ease import fit_ease  # noqa: E402
from models import item_item  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from models.recommender import Recommender, _index  # noqa: E402
from tasks import evaluate as ev  # noqa: E402

WEIGHTS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)
WINDOWS = (0, 1, 3, 5, 10, 30)
COLD_USERS = 0.2


def random_holdout(ratings: pd.DataFrame, seed: int, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    everyone = np.sort(ratings["u"].unique())
    cold = rng.choice(everyone, int(COLD_USERS * len(everyone)), replace=False)
    return holdout(ratings[~ratings["u"].isin(cold)], share, seed)


def temporal_holdout(ratings: pd.DataFrame, cutoff: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kept: the ratings up to the `cutoff` quantile of the rating times; held: those after, of users with
    ratings on both sides (the warm users the published-quality benchmark scores)."""
    t = ratings["t"].quantile(cutoff)
    kept, after = ratings[ratings["t"] <= t], ratings[ratings["t"] > t]
    return kept, after[after["u"].isin(kept["u"]) & after["i"].isin(kept["i"])]


def one_holdout(ratings: pd.DataFrame, name: str, kept: pd.DataFrame, held: pd.DataFrame) -> dict:
    rel = held.groupby("u")["i"].apply(np.asarray)
    users = np.array(sorted(rel.index))
    relevant = [rel[u] for u in users]
    ku, ki = kept["u"].to_numpy(), kept["i"].to_numpy()

    n_users, n_items = int(ratings["u"].max()), int(ratings["i"].max())
    X = np.zeros((n_users + 1, n_items + 1), np.float32)
    X[ku, ki] = 1
    S = X @ fit_ease(X, 500.0)
    S = np.where(X > 0, -np.inf, S)
    S[:, 0] = -np.inf
    ease = ev.ndcg_at_k(np.argsort(-S, axis=1, kind="stable")[users, :10], relevant, 10)

    t0 = time.perf_counter()
    config = ModelConfig.for_kind("dot_bias", loss="softmax", item_item_weight=0.0)
    rec = Recommender.fit(ku, ki, kept["r"].to_numpy(), config)
    fit_s = time.perf_counter() - t0
    ui, ii = _index(rec.user_ids, ku), _index(rec.item_ids, ki) - 1

    def ndcg(weight: float, part: dict | None) -> float:
        """The shipped ranking (Recommender.recommend) of the fitted dot model with this term and weight."""
        ranker = Recommender(dataclasses.replace(config, item_item_weight=weight), rec.model, rec.user_ids,
                             rec.item_ids, item_term=part)
        top, _ = ranker.recommend(users, 10, exclude=(ku, ki))
        return ev.ndcg_at_k(top, relevant, 10)

    out = {"holdout": name, "users": len(users), "ease_ndcg": round(ease, 4), "dot_fit_s": round(fit_s, 1),
           "dot alone": round(ndcg(0.0, None) / ease, 4)}
    for window in WINDOWS:
        t0 = time.perf_counter()
        part = item_item.fit_part(ui, ii, kept["t"].to_numpy(), len(rec.item_ids), window, config.item_item_items)
        out[f"term fit s, window {window}"] = round(time.perf_counter() - t0, 2)
        out[f"term alone, window {window}"] = round(ndcg(1e6, part) / ease, 4)   # the dot model's share ~ 0
        for w in WEIGHTS:
            out[f"dot + {w} term, window {window}"] = round(ndcg(w, part) / ease, 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--cutoffs", type=float, nargs="*", default=[0.70, 0.75],
                    help="temporal holdouts too, at these quantiles of the rating times (0.80 is a report cutoff)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "item_item.json")
    args = ap.parse_args(argv)
    if why := tuning_inputs_refused("bench_item_item.py", args.data, args.seeds):
        print(why, file=sys.stderr)
        return 2
    if any(not 0 < q < 1 or abs(q - 0.80) < 1e-9 for q in args.cutoffs):
        print("bench_item_item.py: cutoffs are quantiles in (0, 1), and 0.80 is the report cutoff", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    ratings = pd.read_csv(args.data / "u.data", sep="\t", names=["u", "i", "r", "t"])
    runs = []
    holdouts = [(f"random seed {seed}", lambda seed=seed: random_holdout(ratings, seed, args.holdout))
                for seed in args.seeds]
    holdouts += [(f"temporal cutoff {q}", lambda q=q: temporal_holdout(ratings, q)) for q in args.cutoffs]
    for name, make in holdouts:
        runs.append(one_holdout(ratings, name, *make()))
        print(json.dumps(runs[-1]), flush=True)
    meta = {"command": " ".join(["python", "bench/bench_item_item.py", *(argv or sys.argv[1:])]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    args.out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
