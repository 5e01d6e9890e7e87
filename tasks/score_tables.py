"""Scores for the published tables: top-n unrated items per user, top-k cosine neighbours per item.

Plain functions on an in-memory Recommender and contract frames; tasks.publish tags, stages and
checks what they return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models import scoring
from models.training_loop import pick_device
from tasks import contract as c
from tasks import popularity, settings

SOURCE_MODEL, SOURCE_SIDE_INFO, SOURCE_POPULARITY = c.SOURCES


def supports_side_info(rec) -> bool:
    """Whether the model scores unseen users from their features (trained with use_side_info and user features)."""
    return bool(getattr(rec.config, "use_side_info", False)) and "user_rows" in getattr(rec, "side", {})


def _frame(users, items, scores, source: str) -> pd.DataFrame:
    """Long rows (user, rank, item, score, source) from [u, n] arrays, dropping -inf padding."""
    n = items.shape[1]
    df = pd.DataFrame({
        c.USER_ID: np.repeat(np.asarray(users, dtype=np.int64), n),
        c.RANK: np.tile(np.arange(1, n + 1, dtype=np.int32), len(users)),
        c.ITEM_ID: items.reshape(-1).astype(np.int64),
        c.SCORE: scores.reshape(-1).astype(np.float32),
    })
    df = df[np.isfinite(df[c.SCORE].to_numpy())]
    df[c.SOURCE] = source
    return df


def score_recommendations(rec, ratings: pd.DataFrame, users: np.ndarray, n: int = 50,
                          users_df: pd.DataFrame | None = None,
                          popular: pd.Series | None = None) -> pd.DataFrame:
    """Top-n unrated items per user: model for known users, side info or popularity for the rest.

    Returns columns (user_id, rank, item_id, score, source) sorted by (user_id, rank).
    """
    users = np.unique(np.asarray(users, dtype=np.int64))
    exclude = (ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy())
    known = rec.known_users(users)
    parts = []
    if known.any():
        items, scores = rec.recommend(users[known], n, exclude=exclude)
        parts.append(_frame(users[known], items, scores, SOURCE_MODEL))
    cold = users[~known]
    if len(cold) and supports_side_info(rec) and users_df is not None:
        features = users_df[users_df[c.USER_ID].isin(cold)]
        items, scores = rec.recommend(cold, n, exclude=exclude, user_features=_user_features(features))
        parts.append(_frame(cold, items, scores, SOURCE_SIDE_INFO))
    elif len(cold):
        popular = popularity.bayesian_average(ratings) if popular is None else popular
        items, scores = popularity.recommend(popular, cold, ratings, n)
        parts.append(_frame(cold, items, scores, SOURCE_POPULARITY))
    df = pd.concat(parts, ignore_index=True)
    # -inf padding was dropped per user from the end, so ranks stay 1..m; re-sort once for the table.
    return df.sort_values([c.USER_ID, c.RANK], kind="stable", ignore_index=True)


def _user_features(users_df: pd.DataFrame) -> dict:
    """The feature dict models.features expects, from a users frame."""
    return {col: users_df[col].to_numpy() for col in (c.USER_ID, c.AGE, c.GENDER, c.OCCUPATION)
            if col in users_df.columns}


def cosine_neighbours(item_ids: np.ndarray, vectors, k: int = 20, device=None,
                      chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k cosine neighbours per item, itself excluded: (item_ids, neighbour_ids[I, k], sims[I, k])."""
    dev = pick_device(settings.device(device))  # the setting, else CUDA when present, else CPU
    v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32).to(dev)      # [I, d]
    v = torch.nn.functional.normalize(v, dim=1)  # zero rows stay zero: similarity 0, never NaN
    n_items = len(item_ids)
    diagonal = np.arange(n_items)
    exclude = scoring.csr_from_pairs(diagonal, diagonal, n_items)             # each item excludes itself
    cols, sims = scoring.topk(lambda a, b: v[a:b] @ v.T, n_items, n_items, k, exclude=exclude,
                              chunk_size=chunk_size, device=dev)               # [I, k]
    item_ids = np.asarray(item_ids, dtype=np.int64)
    return item_ids, item_ids[cols], np.clip(sims, -1.0, 1.0)


def score_similar_items(rec, k: int = 20, catalogue: np.ndarray | None = None, device=None) -> pd.DataFrame:
    """Top-k similar items per item (cosine of item embeddings): (item_id, rank, similar_item_id, similarity)."""
    ids, vectors = rec.item_embeddings()
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors)
    if catalogue is not None:  # only catalogue items may appear on either side
        keep = np.isin(ids, catalogue)
        ids, vectors = ids[keep], vectors[keep]
    ids, nbrs, sims = cosine_neighbours(ids, vectors, k, device=device)
    df = pd.DataFrame({
        c.ITEM_ID: np.repeat(ids, nbrs.shape[1]),
        c.RANK: np.tile(np.arange(1, nbrs.shape[1] + 1, dtype=np.int32), len(ids)),
        c.SIMILAR_ITEM_ID: nbrs.reshape(-1),
        c.SIMILARITY: sims.reshape(-1).astype(np.float32),
    })
    df = df[np.isfinite(df[c.SIMILARITY].to_numpy())]
    return df.sort_values([c.ITEM_ID, c.RANK], kind="stable", ignore_index=True)
