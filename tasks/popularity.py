"""Plain most-rated popularity: the promotion floor, the fallback for users without a profile, a baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks import contract as c


def recommend(popular: pd.Series, users: np.ndarray, ratings: pd.DataFrame, n: int,
              chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-n popular items per user with the user's rated items removed: (item_ids[u, n], scores[u, n]).

    Vectorised per chunk of users: a (chunk, n_items) score matrix with rated cells set to -inf, then a
    stable top-n. Users with fewer than n unrated popular items get -inf padded slots, dropped by callers.
    """
    item_ids = popular.index.to_numpy()
    base = popular.to_numpy(dtype=np.float32)
    users = np.asarray(users)
    n = min(n, len(item_ids))
    col = pd.Series(np.arange(len(item_ids)), index=item_ids)
    out_items = np.empty((len(users), n), dtype=item_ids.dtype)
    out_scores = np.empty((len(users), n), dtype=np.float32)
    rated = ratings[ratings[c.USER_ID].isin(users) & ratings[c.ITEM_ID].isin(item_ids)]
    row_of = pd.Series(np.arange(len(users)), index=users)
    for start in range(0, len(users), chunk):
        stop = min(start + chunk, len(users))
        scores = np.broadcast_to(base, (stop - start, len(base))).copy()       # (chunk, n_items)
        mine = rated[rated[c.USER_ID].isin(users[start:stop])]
        scores[row_of[mine[c.USER_ID]].to_numpy() - start, col[mine[c.ITEM_ID]].to_numpy()] = -np.inf
        # base is sorted best-first, so a stable argsort keeps the popularity order among ties.
        top = np.argsort(-scores, axis=1, kind="stable")[:, :n]                  # (chunk, n)
        out_items[start:stop] = item_ids[top]
        out_scores[start:stop] = np.take_along_axis(scores, top, axis=1)
    return out_items, out_scores


class MostRated:
    """Plain popularity as a recommender, the floor a model must beat to be promoted.

    Ranks items by how many ratings they have in `train` (ties by id); predicts an item's mean
    rating (the global mean for an item without ratings). Same `predict`/`recommend` interface as
    `models.recommender.Recommender`, so `tasks.evaluate.evaluate` scores it like a model.
    """

    def __init__(self, train: pd.DataFrame):
        stats = train.groupby(c.ITEM_ID)[c.RATING].agg(["count", "mean"]).reset_index()
        stats = stats.sort_values(["count", c.ITEM_ID], ascending=[False, True])
        self.item_ids = stats[c.ITEM_ID].to_numpy(np.int64)
        self.counts = stats["count"].to_numpy(np.float32)
        self.means = pd.Series(stats["mean"].to_numpy(np.float64), index=self.item_ids)
        self.global_mean = float(train[c.RATING].mean()) if len(train) else 0.0

    def predict(self, users, items) -> np.ndarray:
        """The item's mean training rating (global mean for unknown items) for each pair."""
        got = self.means.reindex(np.asarray(items, dtype=np.int64)).to_numpy()
        return np.where(np.isnan(got), self.global_mean, got).astype(np.float32)

    def recommend(self, users, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k most-rated items per user, `exclude` (users, items) pairs removed; -1 / -inf pads."""
        popular = pd.Series(self.counts, index=self.item_ids)
        eu, ei = exclude if exclude is not None else (np.empty(0, np.int64), np.empty(0, np.int64))
        seen = pd.DataFrame({c.USER_ID: np.asarray(eu, np.int64), c.ITEM_ID: np.asarray(ei, np.int64)})
        ids, scores = recommend(popular, np.asarray(users, np.int64), seen, k)
        return np.where(np.isneginf(scores), -1, ids), scores
