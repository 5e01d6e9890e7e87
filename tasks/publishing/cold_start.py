"""Cold start: lists for users without ratings, from the people most like them; plain popularity otherwise.

A user the model has not learnt (a new sign-up in u.user) is scored by demographic popularity: every rating
counts with the weight of its rater's likeness to the new user,
    exp(-|age gap| / AGE_SCALE) * (1 + GENDER_WEIGHT * same gender) * (1 + OCCUPATION_WEIGHT * same occupation),
so two new users of different age, gender or occupation get different lists. Chosen on holdout seeds 10-14
(all ratings of 20 % of the users held out: 1.064 x the NDCG@10 of plain most-rated there), reported on other
seeds in bench/results/published_quality.md. A user without usable side information gets plain most-rated
popularity, the baseline the demographic lists are measured against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.learning import popularity

AGE_SCALE = 8.0          # years: a rater 8 years apart counts exp(-1) as much
GENDER_WEIGHT = 2.0      # a rater of the same gender counts 3 x
OCCUPATION_WEIGHT = 2.0  # a rater of the same occupation counts 3 x
_PROFILE = [c.AGE, c.GENDER, c.OCCUPATION]


def has_profile(users_df: pd.DataFrame) -> np.ndarray:
    """True where a user row has age, gender and occupation."""
    if not set(_PROFILE) <= set(users_df.columns):
        return np.zeros(len(users_df), bool)
    return users_df[_PROFILE].notna().all(axis=1).to_numpy() & (users_df[c.GENDER].astype(str) != "").to_numpy()


def likeness(new: pd.DataFrame, raters: pd.DataFrame) -> np.ndarray:
    """Weights [len(new), len(raters)] of rater profiles for new-user profiles (age, gender, occupation)."""
    age = np.abs(new[c.AGE].to_numpy(np.float64)[:, None] - raters[c.AGE].to_numpy(np.float64)[None, :])
    same_gender = new[c.GENDER].astype(str).to_numpy()[:, None] == raters[c.GENDER].astype(str).to_numpy()[None, :]
    same_job = (new[c.OCCUPATION].astype(str).to_numpy()[:, None]
                == raters[c.OCCUPATION].astype(str).to_numpy()[None, :])
    return np.exp(-age / AGE_SCALE) * (1 + GENDER_WEIGHT * same_gender) * (1 + OCCUPATION_WEIGHT * same_job)


def _top(scores: np.ndarray, item_ids: np.ndarray, users: np.ndarray, ratings: pd.DataFrame,
         n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n columns per row of scores [u, I] with each user's rated items removed; -1 / -inf pads."""
    scores = scores.astype(np.float32, copy=True)
    mine = ratings[ratings[c.USER_ID].isin(users)]
    if len(mine):
        row = pd.Series(np.arange(len(users)), index=users)[mine[c.USER_ID]].to_numpy()
        col = np.searchsorted(item_ids, mine[c.ITEM_ID].to_numpy(np.int64))
        ok = (col < len(item_ids)) & (item_ids[np.clip(col, 0, len(item_ids) - 1)] == mine[c.ITEM_ID].to_numpy())
        scores[row[ok], col[ok]] = -np.inf
    n = min(n, len(item_ids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    vals = np.take_along_axis(scores, top, 1)
    return np.where(np.isneginf(vals), -1, item_ids[top]), vals


def demographic_recommend(ratings: pd.DataFrame, users_df: pd.DataFrame, users: np.ndarray,
                          n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n items per user in `users` (each with a profile in users_df) by demographic popularity.

    Scores are the likeness-weighted rating counts divided by the total likeness (a share of like raters).
    """
    users = np.asarray(users, dtype=np.int64)
    item_ids = np.unique(ratings[c.ITEM_ID].to_numpy(np.int64))
    profiles = users_df.drop_duplicates(c.USER_ID).set_index(c.USER_ID)[_PROFILE]
    rated = ratings[[c.USER_ID, c.ITEM_ID]].join(profiles, on=c.USER_ID).dropna(subset=_PROFILE)
    # ratings collapse to (profile cell, item) counts: a few thousand cells, not every rater
    cells = rated.groupby(_PROFILE, observed=True).size().rename("raters").reset_index()
    cell_of = rated.merge(cells[_PROFILE].reset_index(names="cell"), on=_PROFILE)
    counts = np.zeros((len(cells), len(item_ids)), np.float32)                  # [cells, I]
    np.add.at(counts, (cell_of["cell"].to_numpy(), np.searchsorted(item_ids, cell_of[c.ITEM_ID].to_numpy())), 1)
    raters_per_cell = rated.drop_duplicates(c.USER_ID).groupby(_PROFILE, observed=True).size()
    weight_of_cell = raters_per_cell.reindex(pd.MultiIndex.from_frame(cells[_PROFILE])).fillna(0).to_numpy()
    mine = profiles.reindex(users)
    asks, ask_of = np.unique(mine.astype(str).agg("|".join, axis=1).to_numpy(), return_inverse=True)
    first = pd.Series(np.arange(len(users))).groupby(ask_of).first().to_numpy()  # one row per distinct profile
    w = likeness(mine.iloc[first], cells)                                        # [profiles, cells]
    scores = (w @ counts) / np.maximum(w @ weight_of_cell, 1e-12)[:, None]       # [profiles, I]
    return _top(scores[ask_of], item_ids, users, ratings, n)


def most_rated_recommend(ratings: pd.DataFrame, users: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain most-rated popularity, the user's rated items removed (ties: lower id first)."""
    return popularity.MostRated(ratings).recommend(np.asarray(users, np.int64), n,
                                                   exclude=(ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy()))
