"""Evaluation: rating error and top-k quality of a Recommender, as plain functions.

Ranking conventions (all metrics at k):
- `recommended` is an int array [n_users, >= k] of item ids per user, best first; -1 pads short lists.
- `relevant` is a sequence of n_users arrays: the held-out items that count as hits for each user.
- Users without any relevant item are left out of the averages (their metrics are undefined).
- hits[u, j] = 1 when recommended[u, j] is in relevant[u], for the first k positions j = 0..k-1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.learning.popularity import MostRated
from tasks.learning.split import unix_seconds

# ---- rating error ---------------------------------------------------------------------------
def rmse(y_true, y_pred) -> float:
    """Root mean squared error sqrt(mean((y - ŷ)²))."""
    d = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error mean(|y - ŷ|)."""
    d = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(np.abs(d)))


def clip_rating(pred) -> np.ndarray:
    """Predictions on the rating scale (1-5): what a user can give, and what the tables publish."""
    return np.clip(np.asarray(pred, dtype=np.float32), c.RATING_MIN, c.RATING_MAX)


def rating_metrics(model, test: pd.DataFrame) -> dict[str, float]:
    """rmse and mae of a rating model's predictions (clipped to the scale) on the test ratings; a model with time
    input (config.time_features) is given each test rating's time, when the frame has them."""
    pairs = test[c.USER_ID].to_numpy(), test[c.ITEM_ID].to_numpy()
    if getattr(getattr(model, "config", None), "time_features", False) and c.RATED_AT in test:
        pred = clip_rating(model.predict(*pairs, times=unix_seconds(test[c.RATED_AT])))
    else:
        pred = clip_rating(model.predict(*pairs))
    return {"rmse": rmse(test[c.RATING].to_numpy(), pred), "mae": mae(test[c.RATING].to_numpy(), pred)}


# ---- top-k quality --------------------------------------------------------------------------
def _hits(recommended, relevant: Sequence, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hits bool [m, k], n_relevant [m]) for the m users with at least one relevant item."""
    rec = np.asarray(recommended, dtype=np.int64)[:, :k]
    if len(rec) != len(relevant):
        raise ValueError(f"recommended has {len(rec)} rows but relevant has {len(relevant)}")
    n_rel = np.array([len(np.unique(r)) for r in relevant], dtype=np.int64)
    rows = np.repeat(np.arange(len(relevant)), n_rel)
    items = np.concatenate([np.unique(np.asarray(r, dtype=np.int64)) for r in relevant] or [[]])
    # vectorised membership: one key per (row, item) pair
    width = int(max(rec.max(initial=0), items.max(initial=0))) + 2
    rel_keys = rows * width + items.astype(np.int64)
    rec_keys = np.arange(len(rec))[:, None] * width + rec
    hits = np.isin(rec_keys, rel_keys) & (rec >= 0)
    keep = n_rel > 0
    if k > hits.shape[1]:  # short lists count as misses in the missing positions
        hits = np.pad(hits, ((0, 0), (0, k - hits.shape[1])))
    return hits[keep], n_rel[keep]


def precision_at_k(recommended, relevant, k: int) -> float:
    """Mean over users of hits / k."""
    h, _ = _hits(recommended, relevant, k)
    return float(h.sum(1).mean() / k) if len(h) else float("nan")


def recall_at_k(recommended, relevant, k: int) -> float:
    """Mean over users of hits / |relevant| (plain recall: it cannot reach 1 when |relevant| > k)."""
    h, n = _hits(recommended, relevant, k)
    return float((h.sum(1) / n).mean()) if len(h) else float("nan")


def ndcg_at_k(recommended, relevant, k: int) -> float:
    """Mean over users of DCG/IDCG, binary relevance: DCG = Σ_j hits[j]/log2(j+2), IDCG over min(k, |rel|) hits."""
    h, n = _hits(recommended, relevant, k)
    if not len(h):
        return float("nan")
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (h * disc).sum(1)
    idcg = np.cumsum(disc)[np.minimum(n, k) - 1]
    return float((dcg / idcg).mean())


def map_at_k(recommended, relevant, k: int) -> float:
    """Mean over users of AP@k = Σ_j precision@(j+1)·hits[j] / min(k, |relevant|)."""
    h, n = _hits(recommended, relevant, k)
    if not len(h):
        return float("nan")
    prec = np.cumsum(h, 1) / np.arange(1, k + 1)
    return float(((prec * h).sum(1) / np.minimum(n, k)).mean())


def hit_rate_at_k(recommended, relevant, k: int) -> float:
    """Share of users with at least one hit in the top k."""
    h, _ = _hits(recommended, relevant, k)
    return float(h.any(1).mean()) if len(h) else float("nan")


def coverage(recommended, n_catalogue: int) -> float:
    """Distinct recommended items (ignoring -1 padding) / catalogue size."""
    rec = np.asarray(recommended)
    return float(len(np.unique(rec[rec >= 0])) / n_catalogue)


def gini(recommended, n_catalogue: int) -> float:
    """Gini coefficient of how often each catalogue item appears in the lists (0 = even, → 1 = concentrated).

    Counts x over all n_catalogue items (never-recommended items count 0), sorted ascending:
    G = Σ_i (2i − n − 1)·x_i / (n·Σ x), i = 1..n.
    """
    rec = np.asarray(recommended)
    _, counts = np.unique(rec[rec >= 0], return_counts=True)
    if len(counts) > n_catalogue:
        raise ValueError(f"{len(counts)} distinct recommended items exceed the catalogue of {n_catalogue}")
    x = np.sort(np.concatenate([np.zeros(n_catalogue - len(counts)), counts]))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


# ---- the popularity floor ------------------------------------------------------------------
def baseline_metrics(train: pd.DataFrame, test: pd.DataFrame, k: int = 10, max_users: int = 0) -> dict[str, float]:
    """`evaluate` of plain most-rated popularity fitted on `train` (tasks.learning.popularity.MostRated): ranking
    metrics of recommending the most-rated unseen items, rating metrics of each item's mean training rating."""
    return evaluate(MostRated(train), train, test, k=k, max_users=max_users)


EVAL_SAMPLE_SEED = 0  # one fixed sample of users, whatever the model's seed: every model is ranked on the same users


def ranking_users(test: pd.DataFrame, max_users: int = 0) -> np.ndarray:
    """The sorted test users whose lists the ranking metrics score: all, or a seeded sample of max_users."""
    users = np.sort(test[c.USER_ID].unique())
    if 0 < max_users < len(users):
        pick = np.random.default_rng(EVAL_SAMPLE_SEED).choice(len(users), size=max_users, replace=False)
        users = users[np.sort(pick)]
    return users


# ---- everything at once ---------------------------------------------------------------------
def evaluate(recommender, train: pd.DataFrame, test: pd.DataFrame, k: int = 10,
             min_rating: float | None = None, max_users: int = 0) -> dict[str, float]:
    """Rating error on test (a model that `rates`) and top-k quality of recommending test users, training items
    excluded.

    Relevant items of a user: their test items (with rating >= min_rating when given). Catalogue
    for coverage/gini: items in train ∪ test. Returns rmse, mae (rating models), precision_at_k, recall_at_k,
    ndcg_at_k, map_at_k, hit_rate_at_k, coverage_at_k, gini_at_k (k in the name, e.g. ndcg_at_10).
    max_users > 0: the ranking metrics score a fixed seeded sample of that many test users
    (`ranking_users`; the rating error still uses every test row), for catalogues where ranking every
    user against every item costs more than the training.
    """
    # a ranking model's scores are no ratings: it gets no rating error
    out = rating_metrics(recommender, test) if getattr(recommender, "rates", True) else {}
    n_catalogue = len(np.union1d(train[c.ITEM_ID].unique(), test[c.ITEM_ID].unique()))
    users = ranking_users(test, max_users)
    if len(users) < test[c.USER_ID].nunique():
        test = test[test[c.USER_ID].isin(users)]
        train = train[train[c.USER_ID].isin(users)]
    rel = test if min_rating is None else test[test[c.RATING] >= min_rating]
    groups = rel.groupby(c.USER_ID)[c.ITEM_ID].apply(np.asarray)
    relevant = [groups.get(u, np.empty(0, np.int64)) for u in users]
    recs, _ = recommender.recommend(users, k, exclude=(train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy()))
    out[f"precision_at_{k}"] = precision_at_k(recs, relevant, k)
    out[f"recall_at_{k}"] = recall_at_k(recs, relevant, k)
    out[f"ndcg_at_{k}"] = ndcg_at_k(recs, relevant, k)
    out[f"map_at_{k}"] = map_at_k(recs, relevant, k)
    out[f"hit_rate_at_{k}"] = hit_rate_at_k(recs, relevant, k)
    out[f"coverage_at_{k}"] = coverage(recs, n_catalogue)
    out[f"gini_at_{k}"] = gini(recs, n_catalogue)
    return out
