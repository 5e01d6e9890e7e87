"""Rating accuracy of the embedding NN on per-user random 80/20 holdouts of the real MovieLens 100k.

    PYTHONPATH=. .venv/bin/python bench/bench_rating.py [--seeds 10,11,12] [--data ../shared/data/ml-100k]
        [--models nn,dot,baseline] [--nn-config '{"epochs": 6}'] [--cold-users 50] [--threads 2]

Needs only torch, numpy and pandas (no Prefect/MLflow/DuckDB). Results: bench/results/rating.md.
Each split holds out 20 % of every user's ratings at random (the same rule as bench_models.per_user_split).
Models: the NN rating recipe (`models.recipes.for_kind("embedding_nn")`, plus --nn-config overrides), the dot-bias
MSE default, and a classic baseline (global mean + regularised user and item biases). Fit seconds are the whole
`Recommender.fit` (side-feature encoding included), without per-epoch validation. Imports are not: torch.optim
imports torch._dynamo on an optimizer's first step (about 1.5 s, once per process), so it is imported up front, as
torch is, and every fit is timed alike. Every fit gets the ratings' times
and every prediction the held-out rating's time (u.data's timestamps); only a model with time input reads them.
Cold check (--cold-users N > 0): N held-out users per split are scored as unknown ids from their side features
alone (the NN's cold-start path; their training ratings stay in the fit), against the item-mean baseline
(global mean + item bias) on the same ratings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch._dynamo  # noqa: F401  (see the docstring: timed fits leave out imports)

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from models import features as fx  # noqa: E402
from models.config import flat
from models.recipes import for_kind  # noqa: E402
from models.recommender import Recommender  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
U, I, R = "user_id", "item_id", "rating"


def load(folder: Path):
    """(ratings frame [user_id, item_id, rating, ts], user feature dict, item feature dict)."""
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=[U, I, R, "ts"])
    users = pd.read_csv(folder / "u.user", sep="|", names=[U, "age", "gender", "occupation", "zip"])
    items = pd.read_csv(folder / "u.item", sep="|", encoding="latin-1", header=None)
    year = pd.to_datetime(items[2], format="%d-%b-%Y", errors="coerce").dt.year.to_numpy(dtype=float)
    user_f = {fx.USER_ID: users[U].to_numpy(), fx.AGE: users["age"].to_numpy(),
              fx.GENDER: users["gender"].to_numpy(), fx.OCCUPATION: users["occupation"].to_numpy()}
    item_f = {fx.ITEM_ID: items[0].to_numpy(), fx.GENRES: items.iloc[:, 5:24].to_numpy(bool), fx.YEAR: year}
    return ratings, user_f, item_f


def per_user_split(df, test_fraction, seed):
    """Each user's ratings split at random, test_fraction of them held out (as bench_models.per_user_split)."""
    key = pd.Series(np.random.default_rng(seed).random(len(df)), index=df.index)
    pct = key.groupby(df[U]).rank(method="first", pct=True)
    test = (pct <= test_fraction).to_numpy()
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def arrays(df):
    return df[U].to_numpy(), df[I].to_numpy(), df[R].to_numpy(np.float32)


def rmse(y, p):
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - p) ** 2)))


def mae(y, p):
    return float(np.mean(np.abs(np.asarray(y, np.float64) - p)))


class Baseline:
    """Global mean + regularised item and user biases (Koren's baseline predictor, alternating least squares)."""

    def __init__(self, lam_item=25.0, lam_user=10.0, sweeps=5):
        self.lam_item, self.lam_user, self.sweeps = lam_item, lam_user, sweeps

    def fit(self, users, items, ratings):
        self.mu = float(np.mean(ratings))
        self.uids, ui = np.unique(users, return_inverse=True)
        self.iids, ii = np.unique(items, return_inverse=True)
        bu, bi = np.zeros(len(self.uids)), np.zeros(len(self.iids))
        res = ratings - self.mu
        for _ in range(self.sweeps):
            bi = np.bincount(ii, res - bu[ui], len(self.iids)) / (self.lam_item + np.bincount(ii, None, len(self.iids)))
            bu = np.bincount(ui, res - bi[ii], len(self.uids)) / (self.lam_user + np.bincount(ui, None, len(self.uids)))
        self.bu, self.bi = bu, bi
        return self

    def _lookup(self, vocab, bias, ids):
        pos = np.clip(np.searchsorted(vocab, ids), 0, len(vocab) - 1)
        return np.where(vocab[pos] == ids, bias[pos], 0.0)

    def predict(self, users, items, use_users=True):
        p = self.mu + self._lookup(self.iids, self.bi, items)
        if use_users:
            p = p + self._lookup(self.uids, self.bu, users)
        return np.clip(p, 1.0, 5.0)


def timed_fit(cfg, train, feats):
    uf, itf = feats if cfg.use_side_info else (None, None)
    t0, c0 = time.perf_counter(), time.process_time()
    rec = Recommender.fit(*arrays(train), cfg, user_features=uf, item_features=itf, device="cpu",
                          times=train["ts"].to_numpy())
    rec.cpu_seconds = time.process_time() - c0    # CPU time of this process (all threads): load-independent-ish
    return rec, time.perf_counter() - t0


def cold_check(rec, base, test, user_f, n_users, seed):
    """(users, ratings, RMSE as unknown users from side features, item-mean RMSE, warm RMSE) on n_users' test rows."""
    rng = np.random.default_rng(seed + 1000)
    chosen = rng.choice(np.unique(test[U]), n_users, replace=False)
    rows = test[test[U].isin(chosen)]
    fake = int(max(user_f[fx.USER_ID].max(), rows[U].max())) + 1 + rows[U].to_numpy()   # ids the model never saw
    pos = np.searchsorted(user_f[fx.USER_ID], chosen)
    given = {k: np.asarray(v)[pos] for k, v in user_f.items()}
    given[fx.USER_ID] = int(max(user_f[fx.USER_ID].max(), rows[U].max())) + 1 + chosen
    assert not rec.known_users(fake).any()
    cold = rec.predict(fake, rows[I].to_numpy(), user_features=given)
    warm = rec.predict(rows[U].to_numpy(), rows[I].to_numpy(), times=rows["ts"].to_numpy())
    item_mean = base.predict(rows[U].to_numpy(), rows[I].to_numpy(), use_users=False)
    y = rows[R].to_numpy()
    return len(chosen), len(rows), rmse(y, cold), rmse(y, item_mean), rmse(y, warm)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", default="10,11,12", help="split seeds, comma-separated (tuning: 1,2,3)")
    p.add_argument("--models", default="nn,dot,baseline", help="any of nn, dot, baseline")
    p.add_argument("--nn-config", default="{}", help="JSON overrides of the embedding_nn MSE default")
    p.add_argument("--cold-users", type=int, default=0, help="held-out users scored as unknown (NN only)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--jsonl", type=Path, default=None, help="append one JSON line per fit here")
    a = p.parse_args(argv)
    if not (a.data / "u.data").is_file():
        sys.exit(f"bench_rating: no MovieLens 100k at {a.data} (u.data missing); pass --data /path/to/ml-100k")
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    models = [m.strip() for m in a.models.split(",")]
    nn_cfg = for_kind("embedding_nn", **json.loads(a.nn_config))
    configs = {"nn": nn_cfg, "dot": for_kind("dot_bias", loss="mse")}
    print(f"# bench_rating: torch {torch.__version__}, {platform.processor() or 'cpu'}, {torch.get_num_threads()} "
          f"threads, load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# nn config: {json.dumps(flat(nn_cfg))}", flush=True)
    ratings, uf, itf = load(a.data)
    rows = []
    for seed in seeds:
        train, test = per_user_split(ratings, 0.2, seed)
        ut, it, yt = arrays(test)
        t0 = time.perf_counter()
        base = Baseline().fit(*arrays(train))
        secs = time.perf_counter() - t0
        if "baseline" in models:
            pred = base.predict(ut, it)
            rows.append(dict(seed=seed, model="baseline", rmse=rmse(yt, pred), mae=mae(yt, pred), fit_s=secs))
            print(f"  seed {seed} baseline: RMSE {rows[-1]['rmse']:.4f} MAE {rows[-1]['mae']:.4f} {secs:.2f}s",
                  flush=True)
        for name in ("nn", "dot"):
            if name not in models:
                continue
            rec, secs = timed_fit(configs[name], train, (uf, itf))
            pred = rec.predict(ut, it, times=test["ts"].to_numpy())   # the rating's time (ignored without time input)
            row = dict(seed=seed, model=name, rmse=rmse(yt, pred), mae=mae(yt, pred), fit_s=secs,
                       cpu_s=rec.cpu_seconds, load=os.getloadavg()[0])
            msg = (f"  seed {seed} {name}: RMSE {row['rmse']:.4f} MAE {row['mae']:.4f} fit {secs:.2f}s "
                   f"(CPU {rec.cpu_seconds:.1f}s, load {row['load']:.1f})")
            if getattr(rec.config, "time_features", False):   # as served: asked without the rating's time
                untimed = rec.predict(ut, it)
                row.update(rmse_untimed=rmse(yt, untimed), mae_untimed=mae(yt, untimed))
                msg += f" | without times RMSE {row['rmse_untimed']:.4f} MAE {row['mae_untimed']:.4f}"
            if name == "nn" and a.cold_users > 0:
                n_u, n_r, cold, item_mean, warm = cold_check(rec, base, test, uf, a.cold_users, seed)
                row.update(cold_users=n_u, cold_ratings=n_r, cold_rmse=cold, item_mean_rmse=item_mean, warm_rmse=warm)
                msg += (f" | cold ({n_u} users, {n_r} ratings): as unknown {cold:.4f}, item mean {item_mean:.4f},"
                        f" known {warm:.4f}")
            print(msg, flush=True)
            rows.append(row)
            if a.jsonl:
                with open(a.jsonl, "a") as fh:
                    fh.write(json.dumps(dict(row, config=json.loads(a.nn_config) if name == "nn" else "dot")) + "\n")
    frame = pd.DataFrame(rows)
    print("\n| split seed | model | RMSE | MAE | fit s |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {r['model']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['fit_s']:.2f} |")
    for name, g in frame.groupby("model", sort=False):
        print(f"| mean | {name} | {g['rmse'].mean():.4f} | {g['mae'].mean():.4f} | {g['fit_s'].mean():.2f} |")
    if "rmse_untimed" in frame:
        g = frame[frame["model"] == "nn"]
        print(f"NN asked without the rating's time (as served): mean RMSE {g['rmse_untimed'].mean():.4f}, "
              f"MAE {g['mae_untimed'].mean():.4f}")


if __name__ == "__main__":
    main()
