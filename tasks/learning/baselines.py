"""The floors a model must beat before it is promoted: plain popularity for ranking, user and item biases for rating.

Both have the `predict` / `recommend` interface of `models.recommender.Recommender`, so `tasks.learning.evaluate.evaluate`
scores them like models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.learning.popularity import MostRated

# Regularisation of the bias baseline (Koren, "Factor in the neighbors", 2008: λ2 = 25 for items, λ3 = 10 for
# users): an item rated a few times keeps most of its rating near the global mean.
ITEM_SHRINK, USER_SHRINK = 25.0, 10.0
SWEEPS = 3   # alternate item and user biases this many times (the change after three is < 1e-4 RMSE)


class BiasBaseline:
    """Rating = global mean + user bias + item bias, each bias a shrunk mean of what the others leave over.

    The classic rating floor (RMSE about 0.94 on ML-100k): a rating model that cannot beat it has learnt
    nothing beyond who rates high and what is rated high. It only rates (`rates`); it ranks nothing.
    """

    rates = True

    def __init__(self, train: pd.DataFrame, item_shrink: float = ITEM_SHRINK, user_shrink: float = USER_SHRINK):
        users, items = train[c.USER_ID].to_numpy(np.int64), train[c.ITEM_ID].to_numpy(np.int64)
        r = train[c.RATING].to_numpy(np.float64)
        self.mean = float(r.mean()) if len(r) else 0.0
        self.user_ids, ui = np.unique(users, return_inverse=True)
        self.item_ids, ii = np.unique(items, return_inverse=True)
        bu, bi = np.zeros(len(self.user_ids)), np.zeros(len(self.item_ids))
        n_u, n_i = np.bincount(ui, minlength=len(bu)), np.bincount(ii, minlength=len(bi))
        for _ in range(SWEEPS):
            bi = np.bincount(ii, r - self.mean - bu[ui], len(bi)) / (item_shrink + n_i)
            bu = np.bincount(ui, r - self.mean - bi[ii], len(bu)) / (user_shrink + n_u)
        self.user_bias, self.item_bias = bu, bi

    def _bias(self, vocab: np.ndarray, bias: np.ndarray, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        if len(vocab) == 0:
            return np.zeros(len(ids))
        pos = np.clip(np.searchsorted(vocab, ids), 0, len(vocab) - 1)
        return np.where(vocab[pos] == ids, bias[pos], 0.0)   # an id never rated: no bias

    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings float32 [n] of (user, item) pairs."""
        return (self.mean + self._bias(self.user_ids, self.user_bias, users)
                + self._bias(self.item_ids, self.item_bias, items)).astype(np.float32)


__all__ = ["BiasBaseline", "MostRated"]
