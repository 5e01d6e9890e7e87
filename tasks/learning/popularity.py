"""Plain most-rated popularity: the promotion floor, the fallback for users without a profile, a baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models import scoring
from tasks.core import contract as c


def recommend(popular: pd.Series, users: np.ndarray, ratings: pd.DataFrame, n: int,
              chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-n popular items per user with the user's rated items removed: (item_ids[u, n], scores[u, n]).

    `popular` is best first, so a user's list is the first n catalogue positions they have not rated:
    chunked top-n (models.scoring.topk) of the position order with the rated cells (CSR) excluded, in
    bounded memory at any catalogue size. Users with fewer than n unrated popular items get -inf
    padded slots, dropped by callers.
    """
    item_ids = popular.index.to_numpy()
    base = popular.to_numpy(dtype=np.float32)
    users = np.asarray(users)
    n = min(n, len(item_ids))
    by_user = np.argsort(users, kind="stable")
    sorted_users = users[by_user]
    by_item = np.argsort(item_ids, kind="stable")
    sorted_items = item_ids[by_item]
    ru, ri = ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy()
    if len(users) == 0 or len(item_ids) == 0:
        return np.empty((len(users), n), dtype=item_ids.dtype), np.empty((len(users), n), dtype=np.float32)
    pu = np.clip(np.searchsorted(sorted_users, ru), 0, len(users) - 1)
    pi = np.clip(np.searchsorted(sorted_items, ri), 0, len(item_ids) - 1)
    keep = (sorted_users[pu] == ru) & (sorted_items[pi] == ri)
    rated = scoring.csr_from_pairs(by_user[pu[keep]], by_item[pi[keep]], len(users))
    order = torch.as_tensor(-np.arange(len(item_ids), dtype=np.float32))   # distinct: no ties to break
    top, vals = scoring.topk(lambda a, b: order.expand(b - a, -1).clone(), len(users), len(item_ids), n,
                             exclude=rated, chunk_size=chunk, device="cpu")
    return item_ids[top], np.where(np.isneginf(vals), -np.inf, base[top]).astype(np.float32)


class MostRated:
    """Plain popularity as a recommender, the floor a model must beat to be promoted.

    Ranks items by how many ratings they have in `train` (ties by id); predicts an item's mean
    rating (the global mean for an item without ratings). Same `predict`/`recommend` interface as
    `models.recommender.Recommender`, so `tasks.learning.evaluate.evaluate` scores it like a model.
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
