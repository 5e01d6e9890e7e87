"""Choosing the dot model's ranking recipe: side information or not, and the item-item term (models/item_item.py)
it blends in. In-process fits on real ML-100k holdouts of the published-quality protocol (20 % of the users held
out entirely, then 20 % of every other user's ratings) and on global temporal cutoffs (kept: the ratings up to a
quantile of the rating times; judged: what the users who rated before it rate after it), each ranking scored as
NDCG@10 of the warm users' top-10 over unrated items, divided by EASE's (λ = 500).

    .venv/bin/python bench/bench_item_item.py [--data ../shared/data/ml-100k] [--seeds 10 11 12 13 14]
        [--cutoffs 0.70 0.75] [--train-seeds 42 43 44] [--out bench/results/item_item.json]

A tuning tool: seeds 10+ and cutoffs other than 0.80 only (seeds 0-2 and the 0.80 cutoff are
bench_published_quality.py's report holdouts). Per holdout and training seed the dot-bias softmax default is
fitted twice without the term, with and without side information (user age, gender, occupation; item genres
and year, as the pipeline passes them); then every (window, term constants, weight) of the grid ranks with
Recommender.recommend, that model plus the term fitted on the same kept ratings. A figure is the mean over the
training seeds (one seed's luck moves a cutoff by 2 %). The rule that picks the default, applied at the end:
the best mean over the random holdouts among the recipes whose mean over the cutoffs is no lower than the
previous default's (no side information, window 1, weight 0.1, λ 200), so the daily run loses nothing.
"""

from __future__ import annotations

import argparse
import contextlib
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
from models.config import ItemItem
from models.recipes import for_kind  # noqa: E402
from models.recommender import Recommender  # noqa: E402
from models.vocabulary import index  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402
from tasks.sources import movielens
from tasks.learning import model_inputs

WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.3)
WINDOWS = (0, 1, 2, 3, 5, 10)
# the term's λ (ItemItem.l2, flat key item_item_l2) and module constants (item_item.POPULARITY, .DROPOUT) tried beside each
# window; the module constants as shipped where not named
CONSTANTS = ({"L2": 200.0}, {"L2": 400.0}, {"L2": 200.0, "POPULARITY": 0.0}, {"L2": 200.0, "DROPOUT": 0.5})
PREVIOUS = ("no side info", "window 1, L2 200", 0.1)   # the default before this tool chose side information
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


@contextlib.contextmanager
def term_constants(**values):
    """item_item's module constants set to `values` while the term is fitted."""
    old = {k: getattr(item_item, k) for k in values}
    for k, v in values.items():
        setattr(item_item, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(item_item, k, v)


def one_holdout(ratings: pd.DataFrame, features: tuple[dict, dict], name: str, kept: pd.DataFrame,
                held: pd.DataFrame, train_seeds) -> dict:
    """{model: {variant: {weight: [ratio per training seed]}}} for one holdout, plus its EASE figure."""
    rel = held.groupby("u")["i"].apply(np.asarray)
    users = np.array(sorted(rel.index))
    relevant = [rel[u] for u in users]
    ku, ki, kt = kept["u"].to_numpy(), kept["i"].to_numpy(), kept["t"].to_numpy()

    n_users, n_items = int(ratings["u"].max()), int(ratings["i"].max())
    X = np.zeros((n_users + 1, n_items + 1), np.float32)
    X[ku, ki] = 1
    S = X @ fit_ease(X, 500.0)
    S = np.where(X > 0, -np.inf, S)
    S[:, 0] = -np.inf
    ease = ev.ndcg_at_k(np.argsort(-S, axis=1, kind="stable")[users, :10], relevant, 10)

    out: dict = {"holdout": name, "users": len(users), "ease_ndcg": round(ease, 4), "fit_s": {}, "ratios": {},
                 "coverage": {}}
    user_ids, item_ids = np.unique(ku), np.unique(ki)                 # the vocabularies Recommender.fit makes
    ui, ii = index(user_ids, ku), index(item_ids, ki) - 1
    parts = {}                                                        # the term depends on the kept ratings only
    for window in WINDOWS:
        for constants in CONSTANTS:
            variant = ", ".join([f"window {window}"] + [f"{k} {v:g}" for k, v in constants.items()])
            with term_constants(**{k: v for k, v in constants.items() if k != "L2"}):
                parts[variant] = item_item.fit_part(ui, ii, kt, len(item_ids), window, ItemItem().items,
                                                    l2=constants["L2"])
    for model_name, side in (("no side info", False), ("side info", True)):
        ratios: dict = {}
        coverage: dict = {}
        for seed in train_seeds:
            t0 = time.perf_counter()
            config = for_kind("dot_bias", item_item_weight=0, use_side_info=side, seed=seed)
            rec = Recommender.fit(ku, ki, kept["r"].to_numpy(), config,
                                  user_features=features[0] if side else None,
                                  item_features=features[1] if side else None)
            out["fit_s"].setdefault(model_name, []).append(round(time.perf_counter() - t0, 1))

            def score(variant: str, weight: float, part: dict | None) -> None:
                """The shipped ranking (Recommender.recommend) of the fitted model with this term and weight."""
                blend = ItemItem(weight=weight) if weight else None   # only its weight is read when scoring
                ranker = Recommender(dataclasses.replace(config, item_item=blend), rec.model, rec.user_ids,
                                     rec.item_ids, side=rec.side, item_term=part if blend else None)
                top, _ = ranker.recommend(users, 10, exclude=(ku, ki))
                key = str(weight)
                ratios.setdefault(variant, {}).setdefault(key, []).append(
                    round(ev.ndcg_at_k(top, relevant, 10) / ease, 4))
                coverage.setdefault(variant, {}).setdefault(key, []).append(round(ev.coverage(top, n_items), 4))

            score("dot alone", 0, None)
            for variant, part in parts.items():
                for w in WEIGHTS:
                    score(variant, w, part)
        out["ratios"][model_name], out["coverage"][model_name] = ratios, coverage
    return out


def summary(runs: list[dict]) -> dict:
    """Means over training seeds and holdouts, per (model, variant, weight); and the rule's choice."""
    rows = []
    random_runs = [r for r in runs if r["holdout"].startswith("random")]
    cutoff_runs = [r for r in runs if r["holdout"].startswith("temporal")]
    for model, variants in runs[0]["ratios"].items():
        for variant, weights in variants.items():
            for w in weights:
                def mean(rs, what="ratios"):
                    return round(float(np.mean([np.mean(r[what][model][variant][w]) for r in rs])), 4) if rs else None
                rows.append({"model": model, "variant": variant, "weight": float(w),
                             "random_mean": mean(random_runs), "cutoff_mean": mean(cutoff_runs),
                             "random_coverage": mean(random_runs, "coverage")})
    previous = next((r for r in rows if (r["model"], r["variant"], r["weight"]) == PREVIOUS), None)
    floor = previous["cutoff_mean"] if previous and previous["cutoff_mean"] is not None else None
    allowed = [r for r in rows if floor is None or r["cutoff_mean"] >= floor]
    return {"previous": previous, "chosen": max(allowed, key=lambda r: r["random_mean"]), "rows": rows}


def dumps(record: dict) -> str:
    """JSON with one line per summary row and per holdout (the per-seed tables would take 20k lines indented)."""
    def lines(key, items):
        return f'"{key}": [\n' + ",\n".join(json.dumps(x) for x in items) + "\n]"
    summary = {k: v for k, v in record["summary"].items() if k != "rows"}
    return ("{\n" + f'"meta": {json.dumps(record["meta"])},\n"summary": {json.dumps(summary)},\n'
            + lines("rows", record["summary"]["rows"]) + ",\n" + lines("runs", record["runs"]) + "\n}\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--cutoffs", type=float, nargs="*", default=[0.70, 0.75],
                    help="temporal holdouts too, at these quantiles of the rating times (0.80 is a report cutoff)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[42, 43, 44],
                    help="each model is fitted once per training seed; figures are means over them")
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
    features = (model_inputs.user_features(movielens.parse_users(args.data / "u.user",
                                                             movielens.parse_occupations(args.data / "u.occupation"))),
                model_inputs.item_features(movielens.parse_items(args.data / "u.item")))
    holdouts = [(f"random seed {seed}", lambda seed=seed: random_holdout(ratings, seed, args.holdout))
                for seed in args.seeds]
    holdouts += [(f"temporal cutoff {q}", lambda q=q: temporal_holdout(ratings, q)) for q in args.cutoffs]
    runs = []
    for name, make in holdouts:
        runs.append(one_holdout(ratings, features, name, *make(), args.train_seeds))
        dot = {m: np.mean(runs[-1]["ratios"][m]["dot alone"]["0"]) for m in runs[-1]["ratios"]}
        print(json.dumps({"holdout": name, "ease_ndcg": runs[-1]["ease_ndcg"], "dot alone": dot}), flush=True)
    result = summary(runs)
    print(json.dumps({"previous": result["previous"], "chosen": result["chosen"]}), flush=True)
    meta = {"command": " ".join(["python", "bench/bench_item_item.py", *(argv or sys.argv[1:])]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "rule": "best random_mean among rows with cutoff_mean >= the previous default's (means over training seeds)"}
    args.out.write_text(dumps({"meta": meta, "summary": result, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
