"""Accuracy against reach of the ranking knobs on the real MovieLens 100k: popularity_boost and two re-ranks.

    .venv/bin/python bench/bench_popularity_boost.py [--data /work/shared/data/ml-100k] [--seeds 1,2,3,4]
        [--tune 1,2] [--noise/--no-noise] [--speed/--no-speed]

Protocol: per-user random holdout (tasks/learning/split.py `user_fraction`, 20 % of each user's ratings, no
validation part), every held-out item relevant, training items excluded. The pipeline's ranking model
(dot_bias softmax defaults, models/recipes.py) is fitted ONCE per split seed; `popularity_boost` only
changes `recommend`, so every boost is scored on that one fit. Two more levers on the same fit: a
penalty γ·log(1 + training rating count) subtracted from the boost-1 scores, and a greedy exposure cap
(no item in more than a share of users' top-10). Reach figures are tasks/publication_metrics.measure on
the top-10 lists (catalogue: u.item). The default is chosen on the tuning seeds only (rule in CHOICE_RULE)
and reported on the others. Writes bench/results/popularity_boost.{json,png}; bench/results/popularity_boost.md
holds the write-up. Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import dataclasses  # noqa: E402

from models.config import ModelConfig, flat
from models.recipes import for_kind  # noqa: E402
from models.recommender import Recommender  # noqa: E402
from tasks.core import contract as c  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402
from tasks.sources import movielens  # noqa: E402
from tasks.publishing import publication_metrics as pm  # noqa: E402
from tasks.publishing import narrowing
from tasks.learning import split as sp  # noqa: E402
from tasks.stores import split_store

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
RESULTS = ROOT / "bench" / "results"
K = 10
TEST_FRACTION = 0.2
BOOSTS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
PENALTIES = (0.1, 0.25, 0.5)          # γ of the log-popularity penalty, on the boost-1 scores
CAPS = (0.20, 0.10, 0.05)                  # exposure cap: largest share of users' top-10 an item may enter
CAP_CANDIDATES = 200                       # candidates per user the cap re-rank draws from
CHOICE_RULE = ("among the settings whose mean NDCG@10 on the tuning seeds is at least 99 % of the best "
               "setting's there, the one with the highest mean coverage@10")
REACH = (pm.COVERAGE_AT_10, pm.GINI_AT_10, pm.TOP1PCT_SHARE_AT_10, pm.TOP_ITEM_REACH_AT_10,
         pm.REC_POPULARITY_MEAN_AT_10, pm.POPULARITY_LIFT_AT_10)
def ranking_config(**overrides) -> ModelConfig:
    """What the pipeline trains for the top-N lists: the ranking model's recipe (models/recipes.py RANKING)."""
    return for_kind("dot_bias", **overrides)


def boosted(rec, boost: float):
    """rec ranking with the item bias weighted 1 + boost (the config says so, the model scores so)."""
    rec.config = dataclasses.replace(rec.config, popularity_boost=boost)
    rec.model.item_bias_weight = 1 + boost
    return rec


def top_frame(users: np.ndarray, items: np.ndarray) -> pd.DataFrame:
    """Top-k arrays [u, k] as recommendations rows (user, rank, item, source='model'), padding dropped."""
    k = items.shape[1]
    df = pd.DataFrame({c.USER_ID: np.repeat(users, k), c.RANK: np.tile(np.arange(1, k + 1), len(users)),
                       c.ITEM_ID: items.reshape(-1)})
    df[c.SOURCE] = c.SOURCE_MODEL
    return df[df[c.ITEM_ID] >= 0]


def rerank_penalty(items: np.ndarray, scores: np.ndarray, log_pop: np.ndarray, gamma: float) -> np.ndarray:
    """Top-K after subtracting γ·log(1 + n_i) (log_pop indexed by item id) from every candidate's score."""
    pen = log_pop[np.clip(items, 0, len(log_pop) - 1)]
    s = np.where(items >= 0, scores - gamma * pen, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(items, order, 1)


def rerank_cap(items: np.ndarray, cap_share: float, seed: int) -> np.ndarray:
    """Greedy exposure cap: users in a seeded random order take their best candidates not yet at the cap."""
    n_users = len(items)
    cap = max(1, int(np.floor(cap_share * n_users)))
    counts: dict[int, int] = {}
    out = np.full((n_users, K), -1, dtype=np.int64)
    for u in np.random.default_rng(seed).permutation(n_users):
        j = 0
        for it in items[u]:
            if it < 0 or counts.get(int(it), 0) >= cap:
                continue
            out[u, j] = it
            counts[int(it)] = counts.get(int(it), 0) + 1
            j += 1
            if j == K:
                break
    return out


def score_lists(name, items, users, relevant, train, movies, user_frame):
    """Accuracy (NDCG@10, recall@10) and reach (publication_metrics on the top-10 lists) of one setting."""
    top = items[:, :K]
    recs = top_frame(users, top)
    empty_sims = pd.DataFrame({c.ITEM_ID: [], c.RANK: [], c.SIMILAR_ITEM_ID: []}, dtype=np.int64)
    reach = pm.measure(recs, empty_sims, train, movies, user_frame)
    return {"setting": name, "ndcg_at_10": ev.ndcg_at_k(top, relevant, K),
            "recall_at_10": ev.recall_at_k(top, relevant, K), **{m: reach[m] for m in REACH}}


def run_seed(seed: int, s, device, verbose=True) -> list[dict]:
    split = sp.make_split(s.ratings, split_store.SplitSpec("user_fraction", test_fraction=TEST_FRACTION,
                                                  valid_fraction=0.0, seed=seed))
    train, test = split.train, split.test
    users = np.sort(test[c.USER_ID].unique())
    groups = test.groupby(c.USER_ID)[c.ITEM_ID].apply(np.asarray)
    relevant = [groups[u] for u in users]
    exclude = (train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy())
    user_frame = pd.DataFrame({c.USER_ID: users})
    t0 = time.perf_counter()
    rec = Recommender.fit(train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy(),
                          train[c.RATING].to_numpy(np.float32), ranking_config(), device=device)
    fit_s = time.perf_counter() - t0
    if verbose:
        print(f"  split seed {seed}: {len(train)} train / {len(test)} test, fit {fit_s:.1f} s", flush=True)
    rows = []
    for b in BOOSTS:
        items, _ = boosted(rec, b).recommend(users, K, exclude=exclude)
        rows.append(score_lists(f"boost {b:g}", items, users, relevant, train, s.movies, user_frame))
    boosted(rec, 1.0)
    all_items, all_scores = rec.recommend(users, len(rec.item_ids), exclude=exclude)
    counts = train[c.ITEM_ID].value_counts()
    log_pop = np.zeros(int(s.movies[c.ITEM_ID].max()) + 1)
    log_pop[counts.index.to_numpy()] = np.log1p(counts.to_numpy())
    for g in PENALTIES:
        items = rerank_penalty(all_items, all_scores, log_pop, g)
        rows.append(score_lists(f"boost 1 − {g:g}·log(1+n)", items, users, relevant, train, s.movies, user_frame))
    for cap in CAPS:
        items = rerank_cap(all_items[:, :CAP_CANDIDATES], cap, seed)
        rows.append(score_lists(f"boost 1, cap {cap:.0%} of users", items, users, relevant, train, s.movies,
                                user_frame))
    for r in rows:
        r.update(split_seed=seed, fit_seconds=fit_s)
    return rows


def similar_frame(rec, k: int = 20) -> pd.DataFrame:
    """Top-k cosine neighbours of the item embeddings, itself excluded (what publish stages as similar_items)."""
    ids, vectors = rec.item_embeddings()
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nbrs = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return pd.DataFrame({c.ITEM_ID: np.repeat(ids, k), c.RANK: np.tile(np.arange(1, k + 1), len(ids)),
                         c.SIMILAR_ITEM_ID: ids[nbrs].reshape(-1)})


def noise(s, device, boosts=(0.25, 1.0), seed: int = 1) -> list[dict]:
    """The same split refitted with another training seed: how far reach figures move with no data change."""
    split = sp.make_split(s.ratings, split_store.SplitSpec("user_fraction", test_fraction=TEST_FRACTION,
                                                  valid_fraction=0.0, seed=seed))
    train = split.train
    users = np.sort(train[c.USER_ID].unique())
    exclude = (train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy())
    figures = {}
    for training_seed in (42, 43):
        rec = Recommender.fit(train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy(),
                              train[c.RATING].to_numpy(np.float32), ranking_config(seed=training_seed),
                              device=device)
        sims = similar_frame(rec)
        for b in boosts:
            items, _ = boosted(rec, b).recommend(users, 50, exclude=exclude)
            recs = top_frame(users, items)
            figures[(training_seed, b)] = pm.measure(recs, sims, train, s.movies, pd.DataFrame({c.USER_ID: users}))
    out = []
    for b in boosts:
        a, z = figures[(42, b)], figures[(43, b)]
        for metric, _, mode, _ in narrowing.RULES:
            change = (z[metric] - a[metric]) / a[metric] if mode == "relative" else z[metric] - a[metric]
            out.append({"boost": b, "metric": metric, "seed_42": a[metric], "seed_43": z[metric],
                        "change": change, "mode": mode})
    return out


def speed(n_users=162_000, n_items=59_000, n=50, k=20, seed=0) -> dict:
    """Seconds of publication_metrics.measure on ML-25M-sized tables (synthetic rows, Zipf-like items)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=(n_users, n), p=weights / weights.sum()) + 1
    recs = pd.DataFrame({c.USER_ID: np.repeat(np.arange(1, n_users + 1), n),
                         c.RANK: np.tile(np.arange(1, n + 1), n_users), c.ITEM_ID: items.reshape(-1)})
    recs[c.SOURCE] = np.where(recs[c.USER_ID] % 50 == 0, c.SOURCE_POPULARITY, c.SOURCE_MODEL)
    sims = pd.DataFrame({c.ITEM_ID: np.repeat(np.arange(1, n_items + 1), k),
                         c.RANK: np.tile(np.arange(1, k + 1), n_items),
                         c.SIMILAR_ITEM_ID: rng.integers(1, n_items + 1, n_items * k)})
    ratings = pd.DataFrame({c.USER_ID: rng.integers(1, n_users + 1, 25_000_000),
                            c.ITEM_ID: rng.choice(n_items, 25_000_000, p=weights / weights.sum()) + 1})
    movies = pd.DataFrame({c.ITEM_ID: np.arange(1, n_items + 1)})
    users = pd.DataFrame({c.USER_ID: np.arange(1, n_users + 1)})
    t0 = time.perf_counter()
    pm.measure(recs, sims, ratings, movies, users)
    return {"rows": len(recs), "similar_rows": len(sims), "ratings": len(ratings),
            "seconds": time.perf_counter() - t0}


def summarise(rows: list[dict], seeds) -> pd.DataFrame:
    df = pd.DataFrame([r for r in rows if r["split_seed"] in seeds])
    cols = ["ndcg_at_10", "recall_at_10", *REACH]
    return df.groupby("setting", sort=False)[cols].mean()


def choose(tuning: pd.DataFrame) -> str:
    best = tuning["ndcg_at_10"].max()
    eligible = tuning[tuning["ndcg_at_10"] >= 0.99 * best]
    return str(eligible[pm.COVERAGE_AT_10].idxmax())


def markdown(table: pd.DataFrame) -> str:
    head = "| setting | NDCG@10 | recall@10 | coverage@10 | Gini@10 | top-1 % share | top item reach | " \
           "mean pop. (ratings) | pop. lift |"
    lines = [head, "| --- |" + " --- |" * 8]
    for name, r in table.iterrows():
        lines.append(f"| {name} | {r['ndcg_at_10']:.4f} | {r['recall_at_10']:.4f} | {r[pm.COVERAGE_AT_10]:.3f} | "
                     f"{r[pm.GINI_AT_10]:.3f} | {r[pm.TOP1PCT_SHARE_AT_10]:.3f} | {r[pm.TOP_ITEM_REACH_AT_10]:.3f} | "
                     f"{r[pm.REC_POPULARITY_MEAN_AT_10]:.1f} | {r[pm.POPULARITY_LIFT_AT_10]:.2f} |")
    return "\n".join(lines)


def plot(report: pd.DataFrame, chosen: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    plain = [n for n in report.index if n.startswith("boost ") and "·" not in n and "cap" not in n]
    groups = {"popularity_boost": plain,
              "boost 1 − γ·log(1+n)": [n for n in report.index if "·log" in n],
              "boost 1 + exposure cap": [n for n in report.index if "cap" in n]}
    for ax, (x, xlabel) in zip(fig.subplots(1, 2), ((pm.COVERAGE_AT_10, "catalogue coverage@10"),
                                                    (pm.REC_POPULARITY_MEAN_AT_10,
                                                     "mean rating count of recommended items"))):
        for (label, names), marker in zip(groups.items(), ("o-", "s--", "^:")):
            sub = report.loc[names]
            ax.plot(sub[x], sub["ndcg_at_10"], marker, label=label)
            for name, r in sub.iterrows():
                short = name.replace("boost 1 − ", "γ ").replace("·log(1+n)", "").replace("boost 1, cap ", "cap ")
                short = short.replace(" of users", "").replace("boost ", "b ")
                ax.annotate(short, (r[x], r["ndcg_at_10"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        r = report.loc[chosen]
        ax.plot([r[x]], [r["ndcg_at_10"]], "*", markersize=14, color="black", label=f"chosen: {chosen}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("NDCG@10 (held-out ratings)")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("ML-100k, per-user 20 % holdout, report seeds (mean): accuracy against reach", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def print_noise(rows: list[dict]) -> list[dict]:
    print("\n## Refit with another training seed, same split (seed 1), all train users' top-50, top-20 neighbours\n")
    print("| boost | metric | seed 42 | seed 43 | change |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        ch = f"{r['change']:+.1%}" if r["mode"] == "relative" else f"{r['change']:+.4f}"
        print(f"| {r['boost']:g} | {r['metric']} | {r['seed_42']:.4f} | {r['seed_43']:.4f} | {ch} |")
    return rows


def print_speed(res: dict) -> dict:
    print(f"\nmeasure() on {res['rows']:,} recommendation rows, {res['similar_rows']:,} similar rows, "
          f"{res['ratings']:,} ratings: {res['seconds']:.2f} s")
    return res


def partial(a, s, device) -> int:
    """Run only the noise or speed section and merge it into the existing results JSON."""
    section = print_noise(noise(s, device)) if a.part == "noise" else print_speed(speed())
    path = a.out / "popularity_boost.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result[a.part] = section
    result[f"{a.part}_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    a.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", default="1,2,3,4")
    p.add_argument("--tune", default="1,2", help="split seeds the default is chosen on (the others report)")
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--speed", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--part", choices=("all", "noise", "speed"), default="all",
                   help="noise / speed: only that section, printed and merged into an existing JSON")
    a = p.parse_args(argv)
    if not (a.data / "u.data").is_file():
        print(f"skipped: MovieLens 100k files not found at {a.data} (licence forbids shipping them)")
        return 0
    seeds = [int(x) for x in a.seeds.split(",")]
    tune = [int(x) for x in a.tune.split(",")]
    report_seeds = [x for x in seeds if x not in tune]
    device = torch.device("cpu")
    started = time.perf_counter()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# bench_popularity_boost: torch {torch.__version__}, {platform.processor() or 'cpu'}, "
          f"{torch.get_num_threads()} threads, {when}", flush=True)
    s = movielens.read_sources(a.data)
    if a.part != "all":
        return partial(a, s, device)
    rows = [r for seed in seeds for r in run_seed(seed, s, device)]
    tuning, report = summarise(rows, tune), summarise(rows, report_seeds)
    chosen = choose(tuning)
    print(f"\n## Tuning seeds {tune} (mean)\n\n{markdown(tuning)}")
    print(f"\n## Report seeds {report_seeds} (mean)\n\n{markdown(report)}")
    print(f"\nchosen on the tuning seeds ({CHOICE_RULE}): {chosen}")
    result = {"date": when, "machine": f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} "
              f"torch threads, torch {torch.__version__}", "command": "bench/bench_popularity_boost.py " +
              " ".join(argv or sys.argv[1:]), "config": flat(ranking_config()), "test_fraction": TEST_FRACTION,
              "tune_seeds": tune, "report_seeds": report_seeds, "rule": CHOICE_RULE, "chosen": chosen,
              "rows": rows}
    if a.noise:
        result["noise"] = print_noise(noise(s, device))
    if a.speed:
        result["speed"] = print_speed(speed())
    result["total_seconds"] = time.perf_counter() - started
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "popularity_boost.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    plot(report, chosen, a.out / "popularity_boost.png")
    print(f"\ntotal {result['total_seconds']:.0f} s; wrote {a.out / 'popularity_boost.json'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
