"""A rating's time as model input (the NN's `time_features`): where it falls in its user's training history.

The features of a (user, time t) pair, from the user's training timestamps (unix seconds) only:
- position: the share of the user's training ratings before t, centred (-0.5 .. 0.5); users rate films they
  like first (on ML-100k the last tenth of a user's ratings is ~0.1 star below the bias model, the first ~0.05
  above);
- log(1 + days since the user's first training rating) / 3;
- log(1 + hours to the user's nearest training rating) / 3: a rating in one of the user's sessions, or apart;
- days since the first training rating of all, / 365: the data set's own drift;
- for each window in WINDOWS, the user's training ratings less than that many seconds from t: the sum of their
  residuals (`residuals`: stars minus the global mean and a shrunk item mean) over (count + SHRINK), and
  log(1 + count) / 3. Koren's day-specific user bias, as an input, and finer: on ML-100k users rate in quick runs
  whose residuals go together. Added to the bias model on per-user random holdouts (split seed 1), a user-day
  offset takes its RMSE from 0.948 to 0.940, a ±3 min one to 0.919 (±1 min 0.922, ±10 min 0.925);
- the same residual mean over all the user's training ratings (a window's offset is the difference).
The gain is for ratings at known times inside the training period (as the per-user random holdouts are), not for
the future: a rating asked for "now" has no training ratings around it. So a prediction without a time reads all
zeros ("time unknown"), which the model learns while training: `time_dropout` of the training ratings, and every
rating whose user id is hidden (`id_dropout`), are shown with zero time features (models/collab.py). Asked for
"now" with features (one second after the last training rating), the model scored far worse than without
(bench/results/rating.md). A training rating leaves itself out (its position among its user's other ratings, its
nearest other one, its own residual). An unknown user has all-zero features.
"""

from __future__ import annotations

import numpy as np

DAY, HOUR = 86_400.0, 3_600.0
WINDOWS = (20, 60, 180, 600, 1_800, 86_400)   # half-widths in seconds of the residual windows around t
WIDTH = 4 + 2 * len(WINDOWS) + 1
SHRINK = 5.0                           # pseudo-count of the window means (they shrink towards 0)
ITEM_SHRINK = 25.0                     # pseudo-count of the item means the residuals take off
_SHIFT = np.int64(1) << np.int64(34)   # key = user index << 34 | seconds: unix times below 2^34 (year 2514)


def residuals(ii: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Each training rating's stars minus the global mean and its item's mean offset (shrunk by ITEM_SHRINK) [N]."""
    r = np.asarray(ratings, dtype=np.float64) - float(np.mean(ratings))
    n = np.bincount(ii)
    offset = np.bincount(ii, r, minlength=len(n)) / (n + ITEM_SHRINK)
    return r - offset[ii]


def fit_times(ui: np.ndarray, times: np.ndarray, n_users: int, values: np.ndarray) -> dict:
    """What the features need of the training ratings: sorted (user, time) keys, the running sum of their values
    (`residuals`) in that order, per-user counts and first times."""
    t = np.asarray(times, dtype=np.float64)
    if len(t) != len(ui) or not np.isfinite(t).all() or (t < 0).any() or (t >= float(_SHIFT)).any():
        raise ValueError("time_features needs one finite unix time in seconds (>= 0) per training rating")
    secs = np.floor(t).astype(np.int64)
    order = np.argsort(ui.astype(np.int64) * _SHIFT + secs, kind="stable")
    keys = (ui.astype(np.int64) * _SHIFT + secs)[order]
    centred = np.asarray(values, dtype=np.float64)[order]
    counts = np.bincount(ui, minlength=n_users)
    first = np.zeros(n_users, np.int64)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    first[has] = keys[starts[has]] - np.arange(n_users)[has] * _SHIFT
    return {"time_keys": keys, "time_counts": counts.astype(np.int64), "time_first": first,
            "time_range": np.array([secs.min(), secs.max()], np.int64),
            "time_cumsum": np.concatenate([[0.0], np.cumsum(centred)])}   # [N + 1]: running sums of the values


def pair_features(side: dict, ui: np.ndarray, times, own=None) -> np.ndarray:
    """Features float32 [n, WIDTH] of (model user index ui[n], unix time times[n]).

    own [n]: the pairs are the training ratings themselves, with these values (each one leaves itself out)."""
    train = own is not None
    keys, counts, first = side["time_keys"], side["time_counts"], side["time_first"]
    start = int(side["time_range"][0])
    ui = np.asarray(ui, dtype=np.int64)
    t = np.floor(np.asarray(times, np.float64)).astype(np.int64)
    t = np.clip(t, 0, int(_SHIFT) - 1)
    n = counts[ui].astype(np.float64) - (1 if train else 0)                     # the user's other ratings
    lo = np.searchsorted(keys, ui * _SHIFT)                                      # the user's first key
    before = np.searchsorted(keys, ui * _SHIFT + t) - lo                         # strictly earlier ratings
    hi = lo + counts[ui]
    at = lo + before                                                             # first key >= t
    # nearest other rating: the one before t, and the first after t (a training rating skips itself)
    nxt = at + (1 if train else 0)
    gap = np.full(len(ui), np.inf)
    prev_ok = before > 0
    gap[prev_ok] = t[prev_ok] - (keys[at[prev_ok] - 1] - ui[prev_ok] * _SHIFT)
    next_ok = nxt < hi
    gap[next_ok] = np.minimum(gap[next_ok], (keys[nxt[next_ok]] - ui[next_ok] * _SHIFT) - t[next_ok])
    gap = np.where(np.isfinite(gap), gap, 0.0)
    known = (ui > 0) & (n > 0)
    out = np.zeros((len(ui), WIDTH), np.float32)
    out[:, 0] = np.where(known, before / np.maximum(n, 1) - 0.5, 0.0)
    out[:, 1] = np.where(known, np.log1p(np.maximum(t - first[ui], 0) / DAY) / 3, 0.0)
    out[:, 2] = np.where(known, np.log1p(np.maximum(gap, 0) / HOUR) / 3, 0.0)
    out[:, 3] = np.where(ui > 0, (t - start) / DAY / 365, 0.0)
    cum = side["time_cumsum"]
    own = 0.0 if own is None else np.asarray(own, dtype=np.float64)
    base = ui * _SHIFT
    for j, w in enumerate(WINDOWS):                                             # less than w seconds from t
        a = np.searchsorted(keys, base + np.maximum(t - w + 1, 0))
        b = np.searchsorted(keys, base + t + w - 1, side="right")
        w_n = np.maximum((b - a) - (1 if train else 0), 0)
        w_sum = cum[b] - cum[a] - own
        out[:, 4 + 2 * j] = np.where(known, w_sum / (w_n + SHRINK), 0.0)
        out[:, 5 + 2 * j] = np.where(known, np.log1p(w_n) / 3, 0.0)
    all_sum = cum[hi] - cum[lo] - own
    out[:, -1] = np.where(known, all_sum / (n + SHRINK), 0.0)
    return out
