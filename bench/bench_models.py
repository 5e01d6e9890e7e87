"""Accuracy and speed of the models on the real MovieLens 100k.

    .venv/bin/python bench/bench_models.py [--data /work/shared/data/ml-100k] [--device cuda] [--only rating|ranking]

Needs only torch, numpy and pandas (no Prefect/MLflow/DuckDB). Results: bench/results/models.md.
Rating task: seeded random 80/20 split, validation MSE/RMSE (fastai book: dot 0.823 MSE, NN 0.865).
Ranking task: per-user random 75/25 split, every held-out item relevant, training items excluded,
top-10 metrics for popularity, EASE (λ=500) and both models with both objectives.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ease import fit_ease, recommend_ease  # noqa: E402

from models import features as fx  # noqa: E402
from models.recipes import FAST_RATING, for_kind  # noqa: E402
from models.recommender import Recommender  # noqa: E402
from tasks.core import contract as c  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
K = 10


def load(folder: Path):
    """(ratings frame with contract columns, user feature dict, item feature dict)."""
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=[c.USER_ID, c.ITEM_ID, c.RATING, c.RATED_AT])
    users = pd.read_csv(folder / "u.user", sep="|", names=[c.USER_ID, c.AGE, c.GENDER, c.OCCUPATION, c.ZIP_CODE])
    items = pd.read_csv(folder / "u.item", sep="|", encoding="latin-1", header=None)
    year = pd.to_datetime(items[2], format="%d-%b-%Y", errors="coerce").dt.year.to_numpy(dtype=float)
    user_f = {fx.USER_ID: users[c.USER_ID].to_numpy(), fx.AGE: users[c.AGE].to_numpy(),
              fx.GENDER: users[c.GENDER].to_numpy(), fx.OCCUPATION: users[c.OCCUPATION].to_numpy()}
    item_f = {fx.ITEM_ID: items[0].to_numpy(), fx.GENRES: items.iloc[:, 5:24].to_numpy(bool), fx.YEAR: year}
    return ratings, user_f, item_f


def random_split(df, test_fraction, seed):
    """Seeded random split of rows."""
    test = np.random.default_rng(seed).random(len(df)) < test_fraction
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def per_user_split(df, test_fraction, seed):
    """Each user's ratings split at random, test_fraction of them held out."""
    key = pd.Series(np.random.default_rng(seed).random(len(df)), index=df.index)
    pct = key.groupby(df[c.USER_ID]).rank(method="first", pct=True)
    test = (pct <= test_fraction).to_numpy()
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def arrays(df):
    return df[c.USER_ID].to_numpy(), df[c.ITEM_ID].to_numpy(), df[c.RATING].to_numpy(np.float32)


def fit(cfg, train, valid, feats, device, verbose=True):
    """Fit one model, printing per-epoch losses and times; returns (recommender, fit seconds)."""
    log = (lambda h: print(f"    epoch {h['epoch']}: train {h['train_loss']:.4f} valid {h['valid_loss']:.4f} "
                           f"{h['seconds']:.2f}s", flush=True)) if verbose else None
    uf, itf = feats if cfg.use_side_info else (None, None)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    rec = Recommender.fit(*arrays(train), cfg, valid=(*arrays(valid), valid[c.RATED_AT].to_numpy()),
                          times=train[c.RATED_AT].to_numpy(), user_features=uf, item_features=itf,
                          device=device, log=log)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return rec, time.perf_counter() - t0


RATING_MODELS = {
    "dot_bias (fastai book settings: 50 factors, wd 0.1, 5 epochs, lr 5e-3, bs 64)":
        for_kind("dot_bias", loss="mse", n_factors=50, wd=0.1, l2=0.0, epochs=5, lr=5e-3, batch_size=64,
                 rating_input=False, use_side_info=False),
    "dot_bias fast (side info, no rating input, bs 1024, lr 5e-3)": for_kind("dot_bias", **FAST_RATING["dot_bias"]),
    "dot_bias default without side info": for_kind("dot_bias", loss="mse", use_side_info=False),
    "dot_bias default": for_kind("dot_bias", loss="mse"),
    "embedding_nn without side info": for_kind("embedding_nn", use_side_info=False),
    "embedding_nn fast (100 hidden, bs 1024, lr 5e-3)": for_kind("embedding_nn", **FAST_RATING["embedding_nn"]),
    "embedding_nn default (with side info)": for_kind("embedding_nn"),
}
# Averaging the two defaults' rating predictions; weight from split seed 1 (0.5 and 0.6 tie there: 0.8782 / 0.8780).
BLEND = ("dot_bias default", "embedding_nn default (with side info)", 0.5)

RANKING_MODELS = {   # the NN's softmax row of earlier rounds is gone: the NN is the rating model now (mse only)
    "dot_bias mse": for_kind("dot_bias", loss="mse"),
    "dot_bias softmax (the ranking model, without the item-item blend)": for_kind("dot_bias", item_item_weight=0),
    "embedding_nn mse (side info)": for_kind("embedding_nn"),
}


def rating_bench(ratings, feats, device, seed):
    train, valid = random_split(ratings, 0.2, seed)
    print(f"\n## Rating accuracy: random 80/20 split (seed {seed}), {len(train)} train / {len(valid)} valid\n")
    rows, preds = [], {}
    for name, cfg in RATING_MODELS.items():
        print(f"  {name}", flush=True)
        rec, secs = fit(cfg, train, valid, feats, device)
        pred = preds[name] = rec.predict(valid[c.USER_ID].to_numpy(), valid[c.ITEM_ID].to_numpy(),
                                         times=valid[c.RATED_AT].to_numpy())
        rmse = ev.rmse(valid[c.RATING], pred)
        per_epoch = ", ".join(f"{h['seconds']:.2f}" for h in rec.history)
        rows.append((name, rmse ** 2, rmse, ev.mae(valid[c.RATING], pred), secs, per_epoch))
    a, b, w = BLEND
    pred = w * preds[a] + (1 - w) * preds[b]
    rmse = ev.rmse(valid[c.RATING], pred)
    rows.append((f"blend: {w} × {a} + {1 - w:.1f} × {b}", rmse ** 2, rmse, ev.mae(valid[c.RATING], pred),
                 float("nan"), "–"))
    print("\n| model | valid MSE | valid RMSE | MAE | fit s (incl. per-epoch validation) | per-epoch s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.2f} | {r[5]} |")


def ranking_bench(ratings, feats, device, seed):
    train, test = per_user_split(ratings, 0.25, seed)
    print(f"\n## Top-{K}: per-user random 75/25 split (seed {seed}), {len(train)} train / {len(test)} test,"
          " all held-out items relevant, training items excluded\n")
    users = np.sort(test[c.USER_ID].unique())
    groups = test.groupby(c.USER_ID)[c.ITEM_ID].apply(np.asarray)
    relevant = [groups[u] for u in users]
    item_ids = np.union1d(train[c.ITEM_ID].unique(), test[c.ITEM_ID].unique())
    n_cat = len(item_ids)

    def metrics(recs, secs, rmse=float("nan")):
        return dict(ndcg=ev.ndcg_at_k(recs, relevant, K), precision=ev.precision_at_k(recs, relevant, K),
                    recall=ev.recall_at_k(recs, relevant, K), map=ev.map_at_k(recs, relevant, K),
                    hit_rate=ev.hit_rate_at_k(recs, relevant, K), coverage=ev.coverage(recs, n_cat),
                    gini=ev.gini(recs, n_cat), rmse=rmse, secs=secs)

    rows = {}
    # popularity: most-rated training items the user has not rated
    t0 = time.perf_counter()
    uidx = {u: j for j, u in enumerate(users)}
    col = {it: j for j, it in enumerate(item_ids)}
    X = np.zeros((len(users), n_cat), np.float32)
    X[train[c.USER_ID].map(uidx).to_numpy(), train[c.ITEM_ID].map(col).to_numpy()] = 1.0
    pop = X.sum(0)
    pop_scores = np.where(X > 0, -np.inf, pop[None, :])
    rows["popularity"] = metrics(item_ids[np.argsort(-pop_scores, axis=1, kind="stable")[:, :K]],
                                 time.perf_counter() - t0)
    t0 = time.perf_counter()
    B = fit_ease(X, 500.0)
    rows["EASE λ=500"] = metrics(item_ids[recommend_ease(X, B, K)], time.perf_counter() - t0)
    for name, cfg in RANKING_MODELS.items():
        print(f"  {name}", flush=True)
        rec, secs = fit(cfg, train, test, feats, device)
        res = ev.evaluate(rec, train, test, k=K)
        rows[name] = dict(ndcg=res[f"ndcg_at_{K}"], precision=res[f"precision_at_{K}"],
                          recall=res[f"recall_at_{K}"], map=res[f"map_at_{K}"],
                          hit_rate=res[f"hit_rate_at_{K}"], coverage=res[f"coverage_at_{K}"],
                          gini=res[f"gini_at_{K}"], rmse=res["rmse"], secs=secs)
    print(f"\n| model | NDCG@{K} | P@{K} | R@{K} | MAP@{K} | HR@{K} | coverage | Gini | test RMSE | fit s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in rows.items():
        print(f"| {name} | {m['ndcg']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | {m['map']:.4f} | "
              f"{m['hit_rate']:.4f} | {m['coverage']:.3f} | {m['gini']:.3f} | {m['rmse']:.4f} | {m['secs']:.2f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", choices=["rating", "ranking"], default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# bench_models: torch {torch.__version__}, device {device} ({name}), "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    ratings, uf, itf = load(a.data)
    if a.only in (None, "rating"):
        rating_bench(ratings, (uf, itf), device, a.seed)
    if a.only in (None, "ranking"):
        ranking_bench(ratings, (uf, itf), device, a.seed)


if __name__ == "__main__":
    main()
